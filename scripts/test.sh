#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and end-to-end tests, fuzz smoke runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# The API-mode tests run against a real API server built from Debian's Go packages (cached).
testenv/build.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# Fuzz smoke run: every fuzz target for 10 s from its committed seeds (docs/fuzzing.md).
scripts/fuzz.sh 10
