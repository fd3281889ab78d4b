#!/usr/bin/env bash
# Set up the real-player browser tests (idempotent; safe to run every time).
#
#  1. Debian's chromium (/usr/bin/chromium) via apt-get, if missing
#  2. node + npm via apt-get (nodejs npm), if missing
#  3. `npm ci` here, if node_modules is missing, incomplete or older than
#     package-lock.json
#
# Needs root only when something has to be apt-installed; otherwise it prints
# what to install and exits non-zero.  ABRPIPE_CHROMIUM overrides the browser.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHROMIUM="${ABRPIPE_CHROMIUM:-/usr/bin/chromium}"
NODE_MIN_MAJOR=18  # playwright-core 1.57 (pinned for Debian 12's nodejs 18) needs >= 18

say() { echo "tests/browser/setup.sh: $*" >&2; }

apt_retry() {
    # Another apt/dpkg may hold the lock (e.g. a parallel install): wait for it.
    local i
    for i in $(seq 1 60); do
        if apt-get -o DPkg::Lock::Timeout=120 "$@"; then
            return 0
        fi
        say "apt-get $1 failed (try $i), retrying in 10 s"
        sleep 10
    done
    return 1
}

pkgs=()
[ -x "$CHROMIUM" ] || pkgs+=(chromium)
if ! command -v node >/dev/null 2>&1; then
    pkgs+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
    pkgs+=(npm)
fi

if [ "${#pkgs[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing ${pkgs[*]}: as root run: apt-get install -y ${pkgs[*]}"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    say "installing ${pkgs[*]} with apt-get"
    apt_retry update -qq
    apt_retry install -y -q "${pkgs[@]}"
fi

if [ ! -x "$CHROMIUM" ]; then
    say "$CHROMIUM still missing after install"
    exit 1
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt "$NODE_MIN_MAJOR" ]; then
    # Debian 12's own nodejs is 18, which playwright-core 1.57 supports.
    say "WARNING: node $(node --version) is older than playwright-core's engines (>= $NODE_MIN_MAJOR);" \
        "if play.mjs fails to start, install Node.js $NODE_MIN_MAJOR+"
fi

cd "$HERE"
marker="node_modules/.package-lock.json"   # written by npm ci / npm install
need_ci=0
if [ ! -f "$marker" ] || [ package-lock.json -nt "$marker" ]; then
    need_ci=1
fi
for f in hls.js/dist/hls.min.js dashjs/dist/modern/umd/dash.all.min.js \
         shaka-player/dist/shaka-player.compiled.js playwright-core/package.json; do
    [ -f "node_modules/$f" ] || need_ci=1
done
if [ "$need_ci" -eq 1 ]; then
    say "npm ci in $HERE"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$marker"
fi

say "ready: $("$CHROMIUM" --version 2>/dev/null | head -n1), node $(node --version)"
