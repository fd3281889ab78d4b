#!/usr/bin/env bash
# Install Debian/Ubuntu packages the project needs (ffmpeg; chromium and node for browser tests).
# Usage: scripts/install-system-deps.sh PACKAGE...
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
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
echo "installed: $*"
