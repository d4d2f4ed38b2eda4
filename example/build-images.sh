#!/usr/bin/env bash
# Builds the example's images offline into example/images/, as root:
#
#   images/redis_7.sif       Debian bookworm minbase + redis-server (debootstrap
#                            from deb.debian.org, the only network it needs)
#   images/busybox_1.35.sif  the host's static busybox with its applet links
#
# Each SIF is named the way `apptainer pull docker://NAME:TAG` names it
# (NAME_TAG.sif), because sstack resolves the compose file's `image: redis:7`
# to IMAGE_DIR/redis_7.sif.
#
# No definition file with %post is used: as root, %post fails on these
# machines (CAP_SYS_RESOURCE is withheld, see ../../shared/apptainer-facts.md).
# Each root filesystem is prepared on the host and converted with
# `apptainer build out.sif ROOTFS/`; a /.singularity.d/runscript written into
# the rootfs survives the build and mimics the Docker image's
# ENTRYPOINT/CMD (arguments given to `apptainer run` replace CMD).
#
# Idempotent: an image that exists and is newer than this script is skipped
# (FORCE=1 rebuilds everything). Downloaded .deb files are kept in
# rootfs-cache/ so a rebuild does not fetch them again.
#
# Also chmods secrets/redis_password.txt to 600: git does not keep mode 600,
# and sstack refuses a secret file that group or others can read.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SELF="$HERE/$(basename "$0")"
IMAGES="$HERE/images"
CACHE="$HERE/rootfs-cache"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
FORCE=${FORCE:-0}

log() { printf 'build-images: %s\n' "$*" >&2; }

# --- the secret (cheap, always done, even when the images are up to date) ---
chmod 600 "$HERE/secrets/redis_password.txt"

if [ "$(id -u)" != 0 ]; then
  log "must run as root (debootstrap, apptainer build of a root-owned rootfs)"
  exit 1
fi

need_build() { # need_build SIF
  if [ "$FORCE" != 1 ] && [ -s "$1" ] && [ "$1" -nt "$SELF" ]; then
    log "$(basename "$1") is up to date, skipping"
    return 1
  fi
  return 0
}

runtime=apptainer
command -v apptainer >/dev/null 2>&1 || runtime=singularity
if ! command -v "$runtime" >/dev/null 2>&1; then
  log "apptainer is not installed: run scripts/install-apptainer.sh first"
  exit 1
fi

mkdir -p "$IMAGES" "$CACHE"

# write_runscript ROOTFS ENTRYPOINT CMD
# Docker semantics: run ENTRYPOINT followed by the arguments of
# `apptainer run`, or by CMD when there are none. The OCI_ENTRYPOINT/OCI_CMD
# lines have the same form as in images apptainer converts from OCI.
write_runscript() {
  local rootfs=$1 entrypoint=$2 cmd=$3
  mkdir -p "$rootfs/.singularity.d/env"
  {
    echo '#!/bin/sh'
    if [ -n "$entrypoint" ]; then echo "OCI_ENTRYPOINT='\"$entrypoint\"'"; else echo "OCI_ENTRYPOINT=''"; fi
    echo "OCI_CMD='\"$cmd\"'"
    echo "if [ \$# -eq 0 ]; then set -- '$cmd'; fi"
    if [ -n "$entrypoint" ]; then
      echo "exec '$entrypoint' \"\$@\""
    else
      echo 'exec "$@"'
    fi
  } >"$rootfs/.singularity.d/runscript"
  chmod 755 "$rootfs/.singularity.d/runscript"
}

# to_sif ROOTFS SIF: build through a temporary file so an interrupted build
# never leaves a SIF that looks up to date.
to_sif() {
  "$runtime" -s build -F "$2.tmp" "$1/"
  mv -f "$2.tmp" "$2"
  log "built $(basename "$2") ($(du -h "$2" | cut -f1))"
}

# --- redis:7 ---------------------------------------------------------------
build_redis() {
  local sif="$IMAGES/redis_7.sif" rootfs="$HERE/rootfs-redis"
  need_build "$sif" || return 0
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  rm -rf "$rootfs"
  log "debootstrap $SUITE minbase + redis-server from $MIRROR (about a minute)"
  if ! debootstrap --variant=minbase --include=redis-server --cache-dir="$CACHE" \
    "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
    log "debootstrap failed; last lines of $CACHE/debootstrap.log:"
    tail -n 20 "$CACHE/debootstrap.log" >&2
    exit 1
  fi
  # Smaller image: no package lists, docs or man pages.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  # Like the official image: /data is the working/data directory, and an
  # entrypoint that turns `redis:7 --option ...` into `redis-server --option ...`.
  # (The official entrypoint also drops root to the redis user with gosu;
  # under Apptainer the process runs as the user who runs sstack.)
  mkdir -p "$rootfs/data"
  cat >"$rootfs/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# first arg is `-f` or `--some-option`, or a `something.conf` file
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
exec "$@"
EOF
  chmod 755 "$rootfs/usr/local/bin/docker-entrypoint.sh"
  write_runscript "$rootfs" /usr/local/bin/docker-entrypoint.sh redis-server
  to_sif "$rootfs" "$sif"
  rm -rf "$rootfs"
}

# --- busybox:1.35 (the host's busybox-static) ------------------------------
build_busybox() {
  local sif="$IMAGES/busybox_1.35.sif" rootfs="$HERE/rootfs-busybox" bb=""
  need_build "$sif" || return 0
  for c in /bin/busybox /usr/bin/busybox; do [ -x "$c" ] && bb=$c && break; done
  if [ -z "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
    log "installing busybox-static (need a statically linked busybox)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
    bb=/bin/busybox
  fi
  rm -rf "$rootfs"
  mkdir -p "$rootfs"/{bin,etc,home,root,tmp,var/www,usr/bin,usr/sbin,sbin}
  chmod 1777 "$rootfs/tmp"
  chmod 700 "$rootfs/root"
  cp "$bb" "$rootfs/bin/busybox"
  local applet
  for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
  done
  cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
  cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
EOF
  write_runscript "$rootfs" "" sh
  to_sif "$rootfs" "$sif"
  rm -rf "$rootfs"
}

start=$(date +%s)
build_redis
build_busybox
log "done in $(($(date +%s) - start))s: $(cd "$IMAGES" && echo *.sif)"
