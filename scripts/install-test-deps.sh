#!/usr/bin/env bash
# Installs what the integration tests need beyond Apptainer: a real OCI
# registry and the tools that fill it offline (docker-registry, skopeo,
# umoci, all from Debian 12), used by the pull tests through
# scripts/registry.sh; and Prometheus (Debian's prometheus, 2.42, with
# promtool) for the alert rule tests and the test that queries a stack's
# metrics through a real Prometheus. Does nothing when they are present.
set -euo pipefail

present() {
  command -v docker-registry >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 &&
    command -v umoci >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 &&
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

if present; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: docker-registry, skopeo, umoci, curl or prometheus is missing; run this script as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq docker-registry skopeo umoci curl >/dev/null
# --no-install-recommends: prometheus alone, not its exporters.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package's service would listen on :9090; the tests start their own.
if [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
present
