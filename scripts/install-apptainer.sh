#!/usr/bin/env bash
# Installs Apptainer on Debian 12 (bookworm), which has no package for it, by
# taking sid's apptainer and the newer glibc it needs into a private library
# directory (recipe and reasons: ../shared/apptainer-facts.md). Also installs
# what the tests and the example need (busybox-static, debootstrap), and
# slirp4netns, which gives every stack a network of its own.
# Does nothing beyond the helper packages when apptainer or singularity works.
set -euo pipefail

LIBDIR=/opt/apptainer-libc
SID_SOURCE="deb http://deb.debian.org/debian sid main"

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "install-apptainer: must run as root (apt-get, dpkg -x onto /)" >&2
    exit 1
  fi
}

runtime_works() {
  for r in apptainer singularity; do
    if command -v "$r" >/dev/null 2>&1 && "$r" --version >/dev/null 2>&1; then
      return 0
    fi
  done
  return 1
}

helpers_present() {
  command -v busybox >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 &&
    command -v mksquashfs >/dev/null 2>&1 && command -v slirp4netns >/dev/null 2>&1 &&
    command -v nsenter >/dev/null 2>&1
}

# Without systemd as init, Apptainer's default `systemd cgroups = yes`
# makes every resource limit (--memory, --cpus, ...) fail with "systemd not
# running as init"; its cgroupfs manager works (as root). Idempotent, and
# run even when Apptainer was already installed.
configure_cgroups() {
  local conf
  conf=$(apptainer buildcfg APPTAINER_CONF_FILE 2>/dev/null || echo /etc/apptainer/apptainer.conf)
  [ -f "$conf" ] || return 0
  [ -d /run/systemd/system ] && return 0 # systemd is init: keep its manager
  grep -Eq '^[[:space:]]*systemd cgroups[[:space:]]*=[[:space:]]*yes' "$conf" || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "install-apptainer: systemd is not init here; as root, set 'systemd cgroups = no' in $conf for cgroup limits to work" >&2
    return 0
  fi
  sed -i -E 's/^([[:space:]]*systemd cgroups[[:space:]]*=[[:space:]]*)yes/\1no/' "$conf"
  echo "install-apptainer: systemd is not init here: set 'systemd cgroups = no' in $conf (cgroupfs manager, for resource limits)"
}

if runtime_works && helpers_present; then
  echo "install-apptainer: $(apptainer --version 2>/dev/null || singularity --version) already works"
  configure_cgroups
  exit 0
fi

need_root
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq patchelf squashfs-tools uidmap busybox-static debootstrap slirp4netns util-linux fuse2fs >/dev/null 2>&1 ||
  apt-get install -y -qq patchelf squashfs-tools uidmap busybox-static debootstrap slirp4netns util-linux >/dev/null

if runtime_works; then
  echo "install-apptainer: $(apptainer --version 2>/dev/null || singularity --version) already works"
  configure_cgroups
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/debs"
echo "$SID_SOURCE" >"$work/sid.list"
aptopts=(-o Dir::Etc::SourceList="$work/sid.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$work/lists" -o Debug::NoLocking=1)
apt-get "${aptopts[@]}" update -qq
(cd "$work/debs" && apt-get "${aptopts[@]}" download apptainer libc6 libseccomp2 libsqlite3-0 >/dev/null)

mkdir -p "$LIBDIR"
for pkg in libc6 libseccomp2 libsqlite3-0; do
  rm -rf "$work/x"
  dpkg -x "$work"/debs/${pkg}_*.deb "$work/x"
  cp -a "$work"/x/usr/lib/x86_64-linux-gnu/. "$LIBDIR/"
  # libc6 ships the dynamic loader under /usr/lib64 as a link on some builds.
  if [ -e "$work/x/usr/lib64/ld-linux-x86-64.so.2" ] && [ ! -e "$LIBDIR/ld-linux-x86-64.so.2" ]; then
    cp -aL "$work/x/usr/lib64/ld-linux-x86-64.so.2" "$LIBDIR/"
  fi
done

dpkg -x "$work"/debs/apptainer_*.deb /
for bin in /usr/bin/apptainer /usr/lib/x86_64-linux-gnu/apptainer/bin/starter; do
  # --force-rpath: a RUNPATH would not apply to libsqlite's own libm dependency.
  patchelf --set-interpreter "$LIBDIR/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$LIBDIR" "$bin"
done
[ -e /usr/bin/singularity ] || ln -s apptainer /usr/bin/singularity

# The sandbox withholds CAP_SYS_RESOURCE; "full" makes every root container fail.
conf=/etc/apptainer/apptainer.conf
if grep -q '^root default capabilities = full' "$conf"; then
  sed -i 's/^root default capabilities = full/root default capabilities = file/' "$conf"
fi

configure_cgroups
apptainer --version
