#!/usr/bin/env bash
# Runs the performance benchmarks: sstack against the raw Apptainer floor
# measured in the same run (see bench_test.go and README "Performance").
# Installs Apptainer first when it is missing (needs root).
#   scripts/bench.sh                      # both benchmarks, 10 iterations each
#   BENCHTIME=5x scripts/bench.sh -bench Up10
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { command -v apptainer || command -v singularity; } >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then
  bash scripts/install-apptainer.sh
fi
export PATH=$PATH:/usr/local/go/bin
go test -run '^$' -bench . -benchtime "${BENCHTIME:-10x}" -timeout 120m "$@" .
