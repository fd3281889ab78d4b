#!/usr/bin/env bash
# Set up the real-player browser tests (idempotent; safe to run every time).
#
#  1. Debian's chromium (/usr/bin/chromium) via apt-get, if missing
#  2. node + npm via apt-get (nodejs npm), if missing
#  3. a check that this Node satisfies every pinned package's "engines" (npm runs with
#     engine-strict=true, .npmrc): the pins support Debian 12's nodejs 18 and later
#  4. `npm ci` here, if node_modules is missing, incomplete or older than
#     package-lock.json
#
# Needs root only when something has to be apt-installed; otherwise it prints
# what to install and exits non-zero. Without network the apt step fails within a
# minute, saying so (scripts/install-system-deps.sh). ABRPIPE_CHROMIUM overrides
# the browser.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHROMIUM="${ABRPIPE_CHROMIUM:-/usr/bin/chromium}"

say() { echo "tests/browser/setup.sh: $*" >&2; }

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
    say "installing ${pkgs[*]} with apt-get"
    "$HERE/../../scripts/install-system-deps.sh" "${pkgs[@]}" || { say "could not install ${pkgs[*]} (see above)"; exit 1; }
fi

if [ ! -x "$CHROMIUM" ]; then
    say "$CHROMIUM still missing after install"
    exit 1
fi

# Every pinned package's "engines".node (from package-lock.json) against this Node, before npm
# refuses it (engine-strict): one line per package that needs a newer Node, and what to do.
too_old="$(cd "$HERE" && node -e '
  const lock = require("./package-lock.json");
  const have = process.versions.node.split(".").map(Number);
  const bad = [];
  for (const [where, p] of Object.entries(lock.packages || {})) {
    const range = (p.engines && p.engines.node) || "*";
    for (const part of range.split("||").map((s) => s.trim())) {
      const m = /^>=\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(part);
      if (!m) continue;
      const need = [Number(m[1]), Number(m[2] || 0), Number(m[3] || 0)];
      const ok = have[0] !== need[0] ? have[0] > need[0] : have[1] !== need[1] ? have[1] > need[1] : have[2] >= need[2];
      if (!ok && !range.includes("||")) bad.push(`${where.replace("node_modules/", "") || "(this package)"} ${p.version || ""} needs node ${range}`);
    }
  }
  console.log(bad.join("\n"));
')"
if [ -n "$too_old" ]; then
    say "node $(node --version) is too old for the pinned players:"
    while IFS= read -r line; do say "  $line"; done <<<"$too_old"
    say "install a newer Node.js (or pin versions that support this one in tests/browser/package.json)"
    exit 1
fi

cd "$HERE"
marker="node_modules/.package-lock.json"   # written by npm ci / npm install
need_ci=0
if [ ! -f "$marker" ] || [ package-lock.json -nt "$marker" ]; then
    need_ci=1
fi
for f in hls.js/dist/hls.min.js dashjs/dist/dash.all.min.js \
         shaka-player/dist/shaka-player.compiled.js playwright-core/package.json; do
    [ -f "node_modules/$f" ] || need_ci=1
done
if [ "$need_ci" -eq 1 ]; then
    say "npm ci in $HERE"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$marker"
fi

say "ready: $("$CHROMIUM" --version 2>/dev/null | head -n1), node $(node --version)"
