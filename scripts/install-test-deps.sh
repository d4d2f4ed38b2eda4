#!/usr/bin/env bash
# Installs what the integration tests need beyond Apptainer: a real OCI
# registry and the tools that fill it offline (docker-registry, skopeo,
# umoci, all from Debian 12), used by the pull tests through
# scripts/registry.sh. Does nothing when they are present.
set -euo pipefail

present() {
  command -v docker-registry >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 &&
    command -v umoci >/dev/null 2>&1 && command -v curl >/dev/null 2>&1
}

if present; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: docker-registry, skopeo, umoci and curl are missing; run this script as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq docker-registry skopeo umoci curl >/dev/null
present
