#!/usr/bin/env bash
# A real OCI registry on 127.0.0.1 for the pull tests (and for trying pulls
# by hand), from Debian's docker-registry package (the CNCF distribution
# registry; ../shared/apptainer-facts.md, "A real registry, offline").
#
#   scripts/registry.sh up PORT DIR     start it (storage, config, log and pid in DIR)
#   scripts/registry.sh down PORT DIR   stop it
#
# Both are idempotent: up does nothing when the registry of DIR already
# answers on PORT, down nothing when it is not running. Pull from it with
# APPTAINER_NOHTTPS=1 (or apptainer pull --no-https): it speaks plain HTTP.
set -euo pipefail

usage() { echo "usage: $0 up|down PORT DIR" >&2; exit 2; }
[ $# -eq 3 ] || usage
cmd=$1 port=$2 dir=$3
case $port in '' | *[!0-9]*) usage ;; esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pidfile=$dir/registry.pid

answers() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/v2/" 2>/dev/null; }
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case $cmd in
up)
  if running && answers; then
    exit 0
  fi
  command -v docker-registry >/dev/null || {
    echo "registry.sh: docker-registry is not installed; run scripts/install-test-deps.sh as root" >&2
    exit 1
  }
  if answers; then
    echo "registry.sh: something else answers on 127.0.0.1:$port; choose another port" >&2
    exit 1
  fi
  mkdir -p "$dir/storage"
  cat >"$dir/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: sstack-test-registry
YAML
  # setsid: the registry outlives this script, not the caller's terminal
  # signals (a Ctrl-C of the tests must not leave it half-stopped).
  setsid docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if answers; then
      exit 0
    fi
    if ! running; then
      break
    fi
    sleep 0.1
  done
  echo "registry.sh: the registry did not come up on 127.0.0.1:$port:" >&2
  cat "$dir/registry.log" >&2
  exit 1
  ;;
down)
  if running; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  ;;
*)
  usage
  ;;
esac
