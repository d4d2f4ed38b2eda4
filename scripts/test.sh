#!/usr/bin/env bash
# Runs every test, unit and integration (real Apptainer instances), with the
# race detector. Installs Apptainer first when it is missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { command -v apptainer || command -v singularity; } >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then
  bash scripts/install-apptainer.sh
fi
# The pull tests' registry, and the three-node Slurm cluster of the
# multi-node tests (both skipped without them when not root, except in CI).
# A cluster this script started is stopped at its end; one already up stays.
# proctrack/cgroup, what most sites run: a step's processes die with it.
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-test-deps.sh
  # The tests also run sstack as an unprivileged user they create, whose
  # stack networks need /dev/net/tun: 0666 on normal distributions, 0600
  # on some VMs without udev (this one).
  if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    echo "test.sh: chmod 0666 /dev/net/tun (as normal distributions ship it) for the unprivileged-user tests"
    chmod 0666 /dev/net/tun
  fi
  if ! bash scripts/slurm-cluster.sh status >/dev/null 2>&1; then
    SLURM_CLUSTER_PROCTRACK=cgroup bash scripts/slurm-cluster.sh up
    trap 'bash scripts/slurm-cluster.sh down' EXIT
  fi
fi
export PATH=$PATH:/usr/local/go/bin
go vet ./...
go test -race -count=1 -timeout 40m "$@" ./...
# A bounded fuzz run of the compose loader: no panic, and every plan it
# accepts passes up's pre-start checks (compose/fuzz_test.go). Go fuzzes one
# target per invocation; SSTACK_FUZZTIME=0 skips it.
if [ "${SSTACK_FUZZTIME:-60s}" != 0 ]; then
  go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime "${SSTACK_FUZZTIME:-60s}" -fuzzminimizetime 10s ./compose/
fi
