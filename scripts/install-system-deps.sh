#!/usr/bin/env bash
# Install Debian/Ubuntu packages the project needs (ffmpeg; chromium and node for the browser tests;
# e2fsprogs and mount for the tests that make outputs immutable or fill a small tmpfs).
# Usage: scripts/install-system-deps.sh PACKAGE...
#
# Without network it fails within a minute and says so: apt's own retries are off and its network
# timeouts short. Waiting for another apt/dpkg to release its lock is apt's job (DPkg::Lock::Timeout).
set -euo pipefail
if [ "$#" -eq 0 ]; then echo "usage: $0 PACKAGE..." >&2; exit 2; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "abrpipe: please install: $* (with your system's package manager; FFmpeg must be >= 5.1)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "abrpipe: run as root or install: apt-get install $*" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=120 -o Acquire::Retries=0
     -o Acquire::http::Timeout=15 -o Acquire::https::Timeout=15 -o Acquire::ftp::Timeout=15)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

unreachable() {
  grep -qiE "Temporary failure resolving|Could not resolve|Could not connect|Network is unreachable|Connection timed out|Connection refused|Failed to fetch|Unable to connect" "$log"
}

fail() {
  echo "abrpipe: apt-get could not install $*" >&2
  grep -E "^(E|W|Err):" "$log" | tail -n 4 | sed 's/^/abrpipe:   /' >&2 || true
  if unreachable || grep -q "Unable to locate package" "$log"; then
    echo "abrpipe: the package servers cannot be reached (no network?): give this machine network access," \
         "or install the packages by hand: apt-get install $*" >&2
  fi
  exit 1
}

# An index that cannot be fetched is only a warning for apt-get update; the install then says
# whether the packages can be had (from an index fetched earlier) or not.
timeout 120 $SUDO "${APT[@]}" update -qq >"$log" 2>&1 || true
$SUDO "${APT[@]}" install -y -qq --no-install-recommends "$@" >>"$log" 2>&1 || fail "$@"
echo "installed: $*"
