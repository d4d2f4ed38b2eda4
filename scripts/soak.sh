#!/usr/bin/env bash
# Soak test (not part of the default test run): repeats, for a given time,
#   1. up (foreground) then Ctrl-C of a 10-service stack,
#   2. SIGKILL of sstack at a random point of start-up, then `down` at once,
#      checking that nothing is left and nothing appears afterwards,
#   3. a large stack (SOAK_LARGE services, default 200) up -d then down,
# and prints the figures of each kind of cycle. Exits 1 at the first
# cycle that leaves anything behind.
#   scripts/soak.sh            # 10 minutes
#   SOAK_SECONDS=3600 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
seconds=${SOAK_SECONDS:-600}
large=${SOAK_LARGE:-200}
work=$(mktemp -d /tmp/sstack-soak.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/sstack" .
# A busybox image, built offline.
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for a in sh sleep echo; do ln -s busybox "$work/rootfs/bin/$a"; done
apptainer -s build "$work/bb.sif" "$work/rootfs" >/dev/null
img=$work/bb.sif
export SSTACK_STATE_DIR=$work/state
stack() { # n -> compose file
  local f=$work/compose-$1.yml
  { echo "services:"
    for i in $(seq 1 "$1"); do
      printf '  s%d:\n    image: %s\n    command: ["sh", "-c", "trap '"'"'exit 0'"'"' TERM; echo up; while true; do sleep 1; done"]\n' "$i" "$img"
    done; } > "$f"
  echo "$f"
}
small=$(stack 10)
big=$(stack "$large")
left() { apptainer instance list --json "$1.*" | grep -c '"instance"' || true; }
now() { date +%s.%N; }
declare -A count total worst
record() { # kind seconds
  count[$1]=$(( ${count[$1]:-0} + 1 ))
  total[$1]=$(echo "${total[$1]:-0} + $2" | bc)
  if [ -z "${worst[$1]:-}" ] || [ "$(echo "$2 > ${worst[$1]}" | bc)" = 1 ]; then worst[$1]=$2; fi
}
fail() { echo "soak: $*" >&2; exit 1; }
end=$(( $(date +%s) + seconds ))
cycle=0
while [ "$(date +%s)" -lt "$end" ]; do
  cycle=$((cycle + 1)); p=soak$cycle
  # 1. up, then Ctrl-C once every service has started.
  t0=$(now)
  : > "$work/err" # emptied before the start: the wait below must not read the last cycle's
  "$work/sstack" -f "$small" -n "$p" --metrics-addr '' up > "$work/out" 2> "$work/err" & pid=$!
  until [ "$(grep -c '  Started' "$work/err" || true)" -ge 10 ]; do
    kill -0 $pid 2>/dev/null || fail "cycle $cycle: up exited early: $(tail -3 "$work/err")"
    sleep 0.05
  done
  kill -INT $pid; wait $pid || fail "cycle $cycle: up exit code $? after Ctrl-C"
  record "up+ctrl-c (10)" "$(echo "$(now) - $t0" | bc)"
  [ "$(left "$p")" = 0 ] || fail "cycle $cycle: instances left after Ctrl-C"
  # 2. SIGKILL during start-up, then down at once.
  p=soakk$cycle
  "$work/sstack" -f "$small" -n "$p" --metrics-addr '' up > /dev/null 2>&1 & pid=$!
  sleep "0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))"
  kill -KILL $pid; wait $pid 2>/dev/null || true
  t0=$(now)
  "$work/sstack" -n "$p" down > /dev/null 2>&1 || fail "cycle $cycle: down failed after SIGKILL"
  record "down after SIGKILL (10)" "$(echo "$(now) - $t0" | bc)"
  [ "$(left "$p")" = 0 ] || fail "cycle $cycle: instances right after down"
  sleep 2
  [ "$(left "$p")" = 0 ] || fail "cycle $cycle: instances appeared after down"
  # 3. every fifth cycle, the large stack.
  if [ $((cycle % 5)) = 1 ]; then
    p=soakl$cycle
    t0=$(now)
    "$work/sstack" -f "$big" -n "$p" --metrics-addr '' up -d > "$work/err" 2>&1 || fail "cycle $cycle: up -d of $large: $(tail -3 "$work/err")"
    record "up -d ($large)" "$(echo "$(now) - $t0" | bc)"
    t0=$(now)
    "$work/sstack" -n "$p" down > /dev/null 2>&1 || fail "cycle $cycle: down of $large failed"
    record "down ($large)" "$(echo "$(now) - $t0" | bc)"
    [ "$(left "$p")" = 0 ] || fail "cycle $cycle: instances left after down of $large"
  fi
done
echo "soak: $cycle cycles in ${seconds}s, nothing left behind"
printf '%-26s %6s %10s %10s\n' cycle runs "mean s" "worst s"
for k in "${!count[@]}"; do
  printf '%-26s %6d %10.2f %10.2f\n' "$k" "${count[$k]}" "$(echo "${total[$k]} / ${count[$k]}" | bc -l)" "${worst[$k]}"
done
