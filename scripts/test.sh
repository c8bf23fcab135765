#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this): formatting and lints,
# unit tests, and the integration tests that drive the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test

step "all tests passed"
