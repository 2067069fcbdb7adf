#!/usr/bin/env bash
# Runs every *.test.ts under packages/*/src and test/src with node:test through tsx.
# Files run two at a time (the CI machine has 2 cores); each test cleans up its own processes.
set -euo pipefail
cd "$(dirname "$0")/.."
# LONG files mostly wait (test/src/cert-renewal.test.ts keeps mTLS up across three lifetimes of 2-minute
# certificates, about 7 minutes, sending a request every 2 s), so they run beside the others with their own
# timeout (LONG_TIMEOUT_MS, default 10 minutes), while every other file keeps TEST_TIMEOUT_MS.
LONG='test/src/cert-renewal.test.ts'
mapfile -t files < <(find packages/*/src test/src -name '*.test.ts' -not -path '*/node_modules/*' | sort |
  grep -vxF "$LONG")
if [ "${#files[@]}" -eq 0 ]; then echo "no test files" >&2; exit 1; fi
long_log=$(mktemp)
node --import tsx --test --test-timeout="${LONG_TIMEOUT_MS:-600000}" "$LONG" >"$long_log" 2>&1 &
long_pid=$!
trap 'kill "$long_pid" 2>/dev/null || true; rm -f "$long_log"' EXIT
rc=0
node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout="${TEST_TIMEOUT_MS:-240000}" \
  "${files[@]}" || rc=$?
long_rc=0
wait "$long_pid" || long_rc=$?
echo "# ---- $LONG (ran beside the others) ----"
cat "$long_log"
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
exit "$long_rc"
