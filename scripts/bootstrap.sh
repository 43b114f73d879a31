#!/usr/bin/env bash
# Installs what building and testing Plane for Swift needs on a fresh Debian machine (as
# root). Idempotent: packages already present are not installed again.
set -euo pipefail

# Programs the tests and `plane dev` start, with the Debian package that provides each.
declare -A PACKAGES=(
  [nats-server]=nats-server
  [openssl]=openssl
  [python3]=python3
  [dockerd]=docker.io
  [curl]=curl
  [tar]=tar
  [ldd]=libc-bin
  [chroot]=coreutils
  [docker-registry]=docker-registry
  [htpasswd]=apache2-utils
  [dig]=dnsutils
  [dnsperf]=dnsperf
  [nsd]=nsd
  [runc]=runc
  [crun]=crun
  [skopeo]=skopeo
  [ip]=iproute2
  [unshare]=util-linux
  [iptables]=iptables
  [mkfs.btrfs]=btrfs-progs
  [pebble]=pebble
  [setpriv]=util-linux
  [dpkg-deb]=dpkg
  [systemd-analyze]=systemd
  [adduser]=adduser
  [chromium]=chromium
)

missing=()
for program in "${!PACKAGES[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${PACKAGES[$program]}")
done
# Headers the build compiles against: SQLite (GRDB, the drone's store); zlib, zstd and
# libseccomp (the OCI runtime's layer decompression and seccomp profiles).
declare -A HEADERS=(
  [sqlite3.h]=libsqlite3-dev
  [zlib.h]=zlib1g-dev
  [zstd.h]=libzstd-dev
  [seccomp.h]=libseccomp-dev
  [linux/btrfs.h]=linux-libc-dev
)
for header in "${!HEADERS[@]}"; do
  [ -f "/usr/include/$header" ] || missing+=("${HEADERS[$header]}")
done
# Python's venv module (for the nats-py reference benchmark) comes from its own package on Debian.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: run as root (or install: ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  for candidate in /opt/swift/usr/bin /opt/swift/bin; do
    if [ -x "$candidate/swift" ]; then
      echo "bootstrap: swift is in $candidate; add it to PATH (export PATH=$candidate:\$PATH)" >&2
      exit 1
    fi
  done
  echo "bootstrap: no Swift toolchain found; install Swift 6.x (https://www.swift.org/install/linux/) and put it on PATH" >&2
  exit 1
fi
echo "bootstrap: ok ($(swift --version 2>/dev/null | head -n 1); $(nats-server --version))"
