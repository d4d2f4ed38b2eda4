#!/usr/bin/env bash
# A real Slurm cluster of three nodes, n1..n3, on this one machine, from
# Debian's packages (recipe: ../shared/apptainer-facts.md, "A real Slurm
# cluster on one machine"; issue 10). Each node is its own `slurmd -N nX` on
# its own port, with its NodeAddr on its own loopback address (127.0.0.11-13),
# so which node a step landed on is observable from inside it.
#
#   scripts/slurm-cluster.sh up      install if needed, start, wait until n[1-3] are idle
#   scripts/slurm-cluster.sh down    stop every daemon `up` started (only those)
#   scripts/slurm-cluster.sh status  the daemons and `sinfo`; exit 1 unless all are up
#
# Both up and down are idempotent. Runs as root, without systemd (the daemons
# are started directly, not through init). Everything it writes is under
# $SLURM_CLUSTER_DIR (default /var/lib/sstack-slurm) except
# /etc/slurm/slurm.conf, where Slurm's commands look, and munge's own
# /etc/munge/munge.key, /run/munge, /var/lib/munge and /var/log/munge.
# SLURM_CLUSTER_WAIT (seconds, default 60) bounds the wait for the nodes.
#
# SLURM_CLUSTER_PROCTRACK=cgroup (default linuxproc) runs the cluster with
# proctrack/cgroup, what most sites run: a step's processes, an Apptainer
# instance started in it included, are killed when the step ends. It adds
# /etc/slurm/cgroup.conf (cgroup/v1 when /sys/fs/cgroup/freezer is mounted,
# as here; else autodetect, untested). With linuxproc an instance started by
# a step outlives it.
set -euo pipefail

DIR=${SLURM_CLUSTER_DIR:-/var/lib/sstack-slurm}
WAIT=${SLURM_CLUSTER_WAIT:-60}
CONF=/etc/slurm/slurm.conf
CGCONF=/etc/slurm/cgroup.conf
PROCTRACK=${SLURM_CLUSTER_PROCTRACK:-linuxproc}
case "$PROCTRACK" in linuxproc | cgroup) ;; *)
  echo "slurm-cluster: SLURM_CLUSTER_PROCTRACK must be linuxproc or cgroup, not '$PROCTRACK'" >&2
  exit 2
  ;;
esac
MARK="# Written by sstack scripts/slurm-cluster.sh"
NODES=(n1 n2 n3)
declare -A ADDR=([n1]=127.0.0.11 [n2]=127.0.0.12 [n3]=127.0.0.13)
declare -A PORT=([n1]=17001 [n2]=17002 [n3]=17003)

say() { echo "slurm-cluster: $*"; }
die() {
  echo "slurm-cluster: $*" >&2
  exit 1
}

need_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts slurmctld/slurmd as SlurmUser=root, munged as munge)"
}

# alive PID WORD: PID is a live (not zombie: PID 1 here reaps slowly)
# process whose command line contains WORD.
alive() {
  local pid=$1 word=$2 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$word"
}

pidof_file() { if [ -s "$1" ]; then tr -dc 0-9 <"$1"; fi; }

# The daemons this script started, by the pid files it owns. munged's pid
# is copied into $DIR/run/munged.pid only when this script started it.
slurmctld_pid() { pidof_file "$DIR/run/slurmctld.pid"; }
slurmd_pid() { pidof_file "$DIR/run/slurmd-$1.pid"; }
munged_pid() { pidof_file "$DIR/run/munged.pid"; }
ctld_up() { alive "$(slurmctld_pid)" slurmctld; }
slurmd_up() { alive "$(slurmd_pid "$1")" "slurmd -N $1"; }
any_slurm_up() {
  local n
  ctld_up && return 0
  for n in "${NODES[@]}"; do slurmd_up "$n" && return 0; done
  return 1
}
ours_munged_up() { alive "$(munged_pid)" munged; }
munge_works() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# stop PID WORD NAME: SIGTERM, then SIGKILL after 15 s; returns once the
# process is gone or a zombie.
stop() {
  local pid=$1 word=$2 name=$3
  alive "$pid" "$word" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    alive "$pid" "$word" || {
      say "stopped $name (pid $pid)"
      return 0
    }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    alive "$pid" "$word" || break
    sleep 0.1
  done
  say "killed $name (pid $pid): it did not stop within 15 s of SIGTERM"
}

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v srun >/dev/null && command -v sinfo >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null && command -v munge >/dev/null || missing+=(munge)
  [ ${#missing[@]} = 0 ] && return 0
  say "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  # The packages' maintainer scripts would start the daemons through init;
  # this script starts them itself (and must know which ones it started).
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$DIR/log/apt.log" 2>&1 || rc=$?
  [ -z "$made_policy" ] || rm -f "$policy"
  [ $rc = 0 ] || {
    tail -20 "$DIR/log/apt.log" >&2
    die "apt-get install ${missing[*]} failed (log: $DIR/log/apt.log)"
  }
}

setup_munge() {
  id munge >/dev/null 2>&1 || die "no user munge: the munge package did not create it"
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    say "created /etc/munge/munge.key"
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
}

start_munged() {
  if ours_munged_up; then
    return 0
  fi
  if munge_works; then
    say "munged already runs (not started by this script: down leaves it)"
    rm -f "$DIR/run/munged.pid"
    return 0
  fi
  rm -f /run/munge/munged.pid
  su -s /bin/sh munge -c /usr/sbin/munged >>"$DIR/log/munged.out" 2>&1 ||
    die "munged did not start: $(tail -3 "$DIR/log/munged.out"; tail -3 /var/log/munge/munged.log 2>/dev/null)"
  for _ in $(seq 100); do
    munge_works && break
    sleep 0.1
  done
  munge_works || die "munged started but 'munge -n | unmunge' fails (log: /var/log/munge/munged.log)"
  pidof_file /run/munge/munged.pid >"$DIR/run/munged.pid"
  say "started munged as munge (pid $(munged_pid))"
}

conf_text() {
  local host n
  host=$(hostname -s)
  cat <<EOF
$MARK: a three-node virtual
# cluster on this host (n1..n3, each its own 'slurmd -N nX'). Its files: $DIR.
ClusterName=sstack
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/$PROCTRACK
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmctldPort=6817
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
EOF
  for n in "${NODES[@]}"; do
    echo "NodeName=$n NodeHostname=$host NodeAddr=${ADDR[$n]} Port=${PORT[$n]} CPUs=2 RealMemory=4000 State=UNKNOWN"
  done
  echo "PartitionName=main Nodes=n[1-3] Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
}

cgconf_text() {
  local plugin=autodetect
  [ -d /sys/fs/cgroup/freezer ] && plugin=cgroup/v1
  cat <<EOF
$MARK (SLURM_CLUSTER_PROCTRACK=cgroup).
CgroupPlugin=$plugin
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
}

# replaceable FILE NEW [HINT]: returns 1 when FILE already holds NEW; dies,
# adding HINT, when FILE exists and this script did not write it.
replaceable() {
  [ -e "$1" ] || return 0
  [ "$(cat "$1")" != "$2" ] || return 1
  head -1 "$1" | grep -qF "$MARK" ||
    die "$1 exists and was not written by this script: refusing to replace it${3:-}"
}

# Writes (or, for linuxproc, removes its own) cgroup.conf; returns 0 when it
# changed.
write_cgconf() {
  if [ "$PROCTRACK" = cgroup ]; then
    local new
    new=$(cgconf_text)
    replaceable "$CGCONF" "$new" || return 1
    install -d -m 0755 /etc/slurm
    printf '%s\n' "$new" >"$CGCONF"
    say "wrote $CGCONF"
    return 0
  fi
  if [ -e "$CGCONF" ] && head -1 "$CGCONF" | grep -qF "$MARK"; then
    rm -f "$CGCONF"
    say "removed $CGCONF (proctrack/linuxproc)"
    return 0
  fi
  return 1
}

# Writes slurm.conf; returns 0 when it changed.
write_conf() {
  local new
  new=$(conf_text)
  replaceable "$CONF" "$new" " (move it away to use the virtual cluster)" || return 1
  if [ -e "$CONF" ]; then
    local old
    old=$(sed -n 's|^StateSaveLocation=\(.*\)/state$|\1|p' "$CONF")
    if [ -n "$old" ] && [ "$old" != "$DIR" ] && alive "$(pidof_file "$old/run/slurmctld.pid")" slurmctld; then
      die "a cluster with its files in $old runs: stop it first (SLURM_CLUSTER_DIR=$old $0 down)"
    fi
  fi
  install -d -m 0755 /etc/slurm
  printf '%s\n' "$new" >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
  say "wrote $CONF"
  return 0
}

stop_slurm_daemons() {
  local n stepd
  if ctld_up && command -v squeue >/dev/null; then
    local jobs
    mapfile -t jobs < <(timeout 10 squeue -h -o %A 2>/dev/null || true)
    if [ ${#jobs[@]} -gt 0 ]; then
      say "cancelling jobs: ${jobs[*]}"
      timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
      for _ in $(seq 100); do
        [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  for n in "${NODES[@]}"; do
    stop "$(slurmd_pid "$n")" slurmd "slurmd -N $n"
    rm -f "$DIR/run/slurmd-$n.pid"
  done
  # A step left running (slurmctld was not there to cancel its job): its
  # slurmstepd holds this cluster's slurmd log open, which tells it from any
  # other Slurm's. slurmstepd ignores SIGTERM; its tasks would outlive it
  # (proctrack/linuxproc), so they go first.
  for stepd in $(our_stepds); do
    kill_tree "$stepd"
    say "killed a leftover slurmstepd (pid $stepd) and its tasks"
  done
  stop "$(slurmctld_pid)" slurmctld slurmctld
  rm -f "$DIR/run/slurmctld.pid"
}

# kill_tree PID: SIGKILL PID and every descendant of it (from /proc: a
# fresh machine may have no ps).
kill_tree() {
  local st p
  for st in /proc/[0-9]*/stat; do
    p=$(sed -E 's/^([0-9]+) \(.*\) [A-Za-z] ([0-9]+) .*/\1 \2/' "$st" 2>/dev/null) || continue
    [ "${p#* }" = "$1" ] && kill_tree "${p%% *}"
  done
  kill -KILL "$1" 2>/dev/null || true
}

# holds_log /proc/PID: PID has one of this cluster's slurmd logs open.
holds_log() {
  local fd
  for fd in "$1"/fd/*; do
    case "$(readlink "$fd" 2>/dev/null)" in "$DIR"/log/slurmd-*) return 0 ;; esac
  done
  return 1
}

our_stepds() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q '^slurmstepd' || continue
    holds_log "$p" || continue
    alive "${p#/proc/}" slurmstepd && echo "${p#/proc/}"
  done
}

start_slurm() {
  local n
  install -d -m 0755 "$DIR/state" "$DIR/spool"
  for n in "${NODES[@]}"; do install -d -m 0755 "$DIR/spool/$n"; done
  if ! ctld_up; then
    # -c: a fresh cluster each time it starts (no jobs or node states from
    # an earlier run).
    slurmctld -c >>"$DIR/log/slurmctld.out" 2>&1 || die "slurmctld did not start: $(tail -5 "$DIR/log/slurmctld.log" 2>/dev/null)"
    for _ in $(seq 100); do
      ctld_up && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' && break
      sleep 0.1
    done
    ctld_up || die "slurmctld exited at once: $(tail -5 "$DIR/log/slurmctld.log" 2>/dev/null)"
    say "started slurmctld (pid $(slurmctld_pid))"
  fi
  for n in "${NODES[@]}"; do
    slurmd_up "$n" && continue
    slurmd -N "$n" >>"$DIR/log/slurmd.out" 2>&1 || die "slurmd -N $n did not start: $(tail -5 "$DIR/log/slurmd-$n.log" 2>/dev/null)"
    for _ in $(seq 50); do
      slurmd_up "$n" && break
      sleep 0.1
    done
    slurmd_up "$n" || die "slurmd -N $n exited at once: $(tail -5 "$DIR/log/slurmd-$n.log" 2>/dev/null)"
    say "started slurmd -N $n on ${ADDR[$n]}:${PORT[$n]} (pid $(slurmd_pid "$n"))"
  done
}

# Nodes whose state sinfo does not show as usable (idle, or mix/alloc when
# jobs already run); a trailing * (not responding) or ~ etc. is not usable.
unready_nodes() {
  local out
  out=$(timeout 5 sinfo -h -N -o '%N %t' 2>/dev/null) || {
    echo "${NODES[*]}"
    return
  }
  local n st
  for n in "${NODES[@]}"; do
    st=$(awk -v n="$n" '$1 == n { print $2; exit }' <<<"$out")
    case "$st" in idle | mix | alloc) ;; *) echo "$n(${st:-absent})" ;; esac
  done
}

wait_ready() {
  local deadline=$((SECONDS + WAIT)) bad
  while :; do
    bad=$(unready_nodes)
    [ -z "$bad" ] && return 0
    [ $SECONDS -lt $deadline ] || break
    sleep 0.5
  done
  {
    echo "slurm-cluster: nodes not idle after ${WAIT} s: ${bad//$'\n'/ }"
    timeout 5 sinfo -N -l 2>&1 || true
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd-n*.log; do
      [ -e "$f" ] && { echo "--- tail $f"; tail -5 "$f"; }
    done
  } >&2
  exit 1
}

cmd_up() {
  need_root
  install -d -m 0755 "$DIR" "$DIR/run" "$DIR/log"
  install_packages
  setup_munge
  local changed=
  if write_conf; then changed=1; fi
  if write_cgconf; then changed=1; fi
  start_munged
  if [ -n "$changed" ] && any_slurm_up; then
    say "configuration changed: restarting this script's Slurm daemons"
    stop_slurm_daemons
  fi
  start_slurm
  wait_ready
  say "up (proctrack/$PROCTRACK): $(timeout 5 sinfo -h -o '%P %D %t %N' | tr '\n' ' ')"
}

cmd_down() {
  need_root
  [ -d "$DIR/run" ] || {
    say "down: nothing started here"
    return 0
  }
  stop_slurm_daemons
  if ours_munged_up; then
    stop "$(munged_pid)" munged munged
  fi
  rm -f "$DIR/run/munged.pid"
  say "down"
}

cmd_status() {
  local ok=0 n
  if ours_munged_up; then
    echo "munged     pid $(munged_pid)"
  elif munge_works; then
    echo "munged     running, not started by this script"
  else
    echo "munged     not running"
    ok=1
  fi
  if ctld_up; then echo "slurmctld  pid $(slurmctld_pid)"; else
    echo "slurmctld  not running"
    ok=1
  fi
  for n in "${NODES[@]}"; do
    if slurmd_up "$n"; then echo "slurmd $n  pid $(slurmd_pid "$n") on ${ADDR[$n]}:${PORT[$n]}"; else
      echo "slurmd $n  not running"
      ok=1
    fi
  done
  if [ $ok = 0 ]; then
    timeout 5 sinfo || ok=1
    [ -z "$(unready_nodes)" ] || ok=1
  fi
  return $ok
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
  echo "usage: $0 up|down|status" >&2
  exit 2
  ;;
esac
