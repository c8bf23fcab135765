#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). It installs (apt) and
# starts what the tests need on loopback — PostgreSQL, MariaDB, Virtuoso, unixODBC with its
# drivers, Dovecot's doveadm — runs formatting, lints, unit and integration tests against
# them, then the fault tests that stop and kill those servers one at a time, the static
# release builds (default and SQLite-only) against the integration suite, the real MTAs end
# to end (scripts/mta-test.sh), the fault matrix, a smoke run of the benchmark harness, and
# stops everything again.
#
#   scripts/test.sh              everything (needs root for apt-get and the servers)
#   SKIP_SERVERS=1 scripts/test.sh   only what needs no server (SQLite; no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A test that needs a server and finds none must fail, not skip, here.
export CI=${CI:-true}

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }
started=$(date +%s)

if [[ ${SKIP_SERVERS:-} == 1 ]]; then
    export CI=false
    features=(--no-default-features --features sqlite)
else
    step "install and start the database servers"
    scripts/servers.sh install
    scripts/servers.sh start
    trap 'scripts/servers.sh stop >/dev/null 2>&1 || true' EXIT
    # shellcheck disable=SC1091
    source "${VM_RUN_DIR:-/tmp/virt_mail-servers}/env.sh"
    features=(--all-features)
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy ${features[*]} --all-targets -- -D warnings"
cargo clippy "${features[@]}" --all-targets -- -D warnings

step "cargo test ${features[*]}"
cargo test "${features[@]}"

if [[ ${SKIP_SERVERS:-} != 1 ]]; then
    step "fault tests (stop and kill servers, one at a time)"
    cargo test "${features[@]}" --test it -- --ignored --test-threads=1

    # The build to install (static, non-PIE; docs/PERFORMANCE.md) must pass what the
    # debug build passed: the integration suite again, but for the ODBC tests (that build
    # has no ODBC) and the three that need the debug builds' crash and panic hooks.
    step "static release build (scripts/build-release.sh) against the integration suite"
    release_bin=$(scripts/build-release.sh --quiet | tail -n 1)
    VIRT_MAIL_TEST_BIN=$release_bin cargo test "${features[@]}" --test it -- --skip odbc \
        --skip a_redelivery_after_a_crash_past_commit_stores_once \
        --skip a_crash_at_any_step_never_leaves_a_partial_message_in_new \
        --skip a_panic_defers_with_the_mailer_temporary_code

    # The smaller build the README offers to SQLite-only sites, against the SQLite tests.
    step "static SQLite-only release build against the integration suite"
    sqlite_bin=$(CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/sqlite-only \
        scripts/build-release.sh --quiet --no-default-features --features sqlite | tail -n 1)
    VIRT_MAIL_TEST_BIN=$sqlite_bin cargo test --no-default-features --features sqlite \
        --test it -- \
        --skip a_redelivery_after_a_crash_past_commit_stores_once \
        --skip a_crash_at_any_step_never_leaves_a_partial_message_in_new \
        --skip a_panic_defers_with_the_mailer_temporary_code

    step "MTAs end to end: Postfix, Exim, sendmail, procmail, qmail, courier"
    VIRT_MAIL_BIN=$release_bin scripts/mta-test.sh

    # Every fault on every backend under the mailer profiles, and parallel deliveries, on
    # servers of their own (docs/RELIABILITY.md; `scripts/fault-matrix.sh --full` for all).
    step "fault matrix and concurrency, CI variant"
    scripts/fault-matrix.sh --ci

    # The benchmark harness must keep working: ten deliveries per row of ours and the
    # original, 2 KiB, no chart. Timings are not judged (docs/PERFORMANCE.md, bench/run.sh).
    step "benchmark harness, smoke run"
    BENCH_STRICT=1 BENCH_RUNS=10 BENCH_SIZES=2048 BENCH_PARALLEL=0 BENCH_SVG= \
        BENCH_BIN=$release_bin \
        BENCH_ONLY="/bin/true,virt_mail sqlite,virt_mail postgres socket,virt_mail postgres pgbouncer socket,virt_mail mariadb socket,virt_mail virtuoso,virt_mail odbc virtuoso,original virt_mail virtuoso" \
        cargo bench "${features[@]}" --bench deliver
fi

step "all tests passed in $(( $(date +%s) - started )) s"
