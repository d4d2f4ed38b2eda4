#!/usr/bin/env bash
# Runs every test, unit and integration (real Apptainer instances), with the
# race detector. Installs Apptainer first when it is missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { command -v apptainer || command -v singularity; } >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then
  bash scripts/install-apptainer.sh
fi
# The pull tests' registry (skipped without it when not root).
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-test-deps.sh
fi
export PATH=$PATH:/usr/local/go/bin
go vet ./...
go test -race -count=1 -timeout 40m "$@" ./...
