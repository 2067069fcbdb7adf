#!/usr/bin/env bash
# Runs every *.test.ts under packages/*/src and test/src with node:test through tsx.
# Files run two at a time (the CI machine has 2 cores); each test cleans up its own processes.
set -euo pipefail
cd "$(dirname "$0")/.."
# Long files go first so they overlap with the rest: test/src/cert-renewal.test.ts runs about 7 minutes (three
# lifetimes of 2-minute certificates), which is also why a file may take up to TEST_TIMEOUT_MS (default 10 minutes).
mapfile -t files < <(find packages/*/src test/src -name '*.test.ts' -not -path '*/node_modules/*' | sort |
  awk '/cert-renewal\.test\.ts$/ { print; next } { rest[n++] = $0 } END { for (i = 0; i < n; i++) print rest[i] }')
if [ "${#files[@]}" -eq 0 ]; then echo "no test files" >&2; exit 1; fi
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout="${TEST_TIMEOUT_MS:-600000}" "${files[@]}"
