#!/usr/bin/env bash
# Runs the example stack in the foreground: installs Apptainer when missing
# (needs root), builds the example's images from Debian's mirror, builds
# sstack into bin/sstack, and starts example/docker-compose.yml as project
# "example" (the README's first screen names both). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { command -v apptainer || command -v singularity; } >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  bash scripts/install-apptainer.sh
fi
export PATH=$PATH:/usr/local/go/bin
bash example/build-images.sh
go build -o bin/sstack .
exec ./bin/sstack -f example/docker-compose.yml -n example "$@"
