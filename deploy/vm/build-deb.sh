#!/usr/bin/env bash
# Builds fedmesh-vm-agent_<version>_<arch>.deb (pnpm package:vm). Usage: deploy/vm/build-deb.sh [--no-build] [OUT_DIR]
# (default: dist/ at the repository root). Prints the .deb's path on its last line. --no-build packages the compiled
# dist/ as it is, without running tsc first (the test suite runs `tsc -b` before its tests).
#
# Layout: the agent and the proxy with their production node_modules (pnpm deploy --prod, offline: from the store
# `pnpm install` filled) in /usr/lib/fedmesh-vm-agent, a launcher in /usr/local/bin, the unit in /lib/systemd/system,
# /etc/fedmesh/agent.env as a conffile. Nothing in it is native code, so the package is Architecture: all unless a
# native addon shows up (then it is built for this machine's architecture).
set -euo pipefail
build=1
if [ "${1:-}" = --no-build ]; then build=0; shift; fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)
cd "$repo"

version=$(node -p "require('./packages/vm-agent/package.json').version")
stage=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-vm-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
app="$root/usr/lib/fedmesh-vm-agent"

if [ "$build" = 1 ]; then
  echo "== building the agent" >&2
  pnpm exec tsc -b packages/vm-agent >&2
fi

echo "== bundling runtime dependencies (pnpm deploy --prod --offline)" >&2
pnpm --filter @fedmesh/vm-agent deploy --prod --offline --legacy "$app" >&2
# Only what runs: no TypeScript (sources, declarations; ours and what dependencies ship), source maps, build info
# or our tests.
rm -rf "$app/src" "$app/tsconfig.json"
find "$app/node_modules/.pnpm" -maxdepth 5 -path '*/node_modules/@fedmesh/*/src' -type d -prune -exec rm -rf {} +
find "$app" \( -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' -o -name '*.tsbuildinfo' \
  -o -name '*.test.js' \) -type f -delete
test -f "$app/dist/main.js" || { echo "build-deb: $app/dist/main.js missing" >&2; exit 1; }

if [ -n "$(find "$app" -name '*.node' -type f -print -quit)" ]; then arch=$(dpkg --print-architecture); else arch=all; fi

install -D -m 0755 "$here/fedmesh-vm-agent.sh" "$root/usr/local/bin/fedmesh-vm-agent"
install -D -m 0644 "$here/fedmesh-vm-agent.service" "$root/lib/systemd/system/fedmesh-vm-agent.service"
install -D -m 0644 "$here/agent.env" "$root/etc/fedmesh/agent.env"
install -d -m 0755 "$root/DEBIAN"
install -m 0644 "$here/debian/conffiles" "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/debian/$s" "$root/DEBIAN/$s"; done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/debian/control.in" >"$root/DEBIAN/control"

deb="$out/fedmesh-vm-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
