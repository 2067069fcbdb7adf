#!/usr/bin/env bash
# Runs every *.test.ts under packages/*/src and test/src with node:test through tsx.
# Files run two at a time (the CI machine has 2 cores); each test cleans up its own processes.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find packages/*/src test/src -name '*.test.ts' -not -path '*/node_modules/*' | sort)
if [ "${#files[@]}" -eq 0 ]; then echo "no test files" >&2; exit 1; fi
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout="${TEST_TIMEOUT_MS:-240000}" "${files[@]}"
