#!/usr/bin/env bash
# bench/run.sh — one full delivery benchmark run: installs what the rows need (Debian
# packages), starts private PostgreSQL/MariaDB/Virtuoso servers with scripts/servers.sh, and
# runs `cargo bench --all-features --bench deliver`, which prints one markdown table and
# writes docs/perf.svg. The output is also kept in $BENCH_OUT (target dir, bench-deliver.md).
#
# Usage: bench/run.sh [--no-install] [--keep-servers]
#   --no-install     skip apt-get (everything is already there)
#   --keep-servers   leave the servers running afterwards (they are stopped otherwise,
#                    unless they were already running before)
# Environment: everything bench/deliver.rs reads (BENCH_RUNS, BENCH_SIZES, BENCH_ONLY, ...),
#   plus VM_RUN_DIR (/var/tmp/virt_mail-bench-servers) and VM_PG_PORT (17432),
#   VM_MARIADB_PORT (15306), VM_VIRTUOSO_PORT (13111): the bench's servers are its own, apart
#   from the test servers (scripts/servers.sh defaults), so fault tests cannot kill them
#   mid-run.
# Root is needed for apt-get and for the servers (runuser/setpriv).
set -euo pipefail

cd "$(dirname "$0")/.."
install=1 keep=0
for arg in "$@"; do
  case $arg in
    --no-install) install=0 ;;
    --keep-servers) keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

export VM_RUN_DIR=${VM_RUN_DIR:-/var/tmp/virt_mail-bench-servers}
export VM_PG_PORT=${VM_PG_PORT:-17432}
export VM_MARIADB_PORT=${VM_MARIADB_PORT:-15306}
export VM_VIRTUOSO_PORT=${VM_VIRTUOSO_PORT:-13111}

# The rows' programs: GNU time (peak RSS), pgbench (connection floor), the original
# virt_mail, and the MDAs to compare with. Their services are never started.
PACKAGES=(time postgresql-client virtuoso-opensource-7-bin procmail maildrop dovecot-core)

if ((install)); then
  missing=()
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "bench/run.sh: installing ${missing[*]}"
    policy=/usr/sbin/policy-rc.d saved=""
    if [[ -e $policy ]]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
    restore() { if [[ -n $saved ]]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi; }
    trap restore EXIT
    printf '#!/bin/sh\n# temporary, written by virt_mail bench/run.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    apt_install() {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
    }
    apt_install "${missing[@]}" || { apt-get update -q && apt_install "${missing[@]}"; }
    restore
    trap - EXIT
  fi
  scripts/servers.sh install
fi

was_running=0
if scripts/servers.sh status 2>/dev/null | grep -q ' up'; then was_running=1; fi
scripts/servers.sh start
# shellcheck disable=SC1091
source "$VM_RUN_DIR/env.sh"
stop_servers() {
  if ((!keep && !was_running)); then scripts/servers.sh stop || true; fi
}
trap stop_servers EXIT

# The rows of ours measure the build to install, scripts/build-release.sh (default
# features, static and non-PIE); the ODBC row uses the --all-features build that cargo bench
# makes (dynamic: unixODBC loads its drivers with dlopen). The plain `cargo build --release`
# binary (dynamic PIE) runs the SQLite, PostgreSQL and MariaDB rows too, as "dynamic", so
# that the run shows what the static build saves, and a static build with SQLite alone runs
# the SQLite row, as "sqlite-only" (what building only the databases one uses saves), and so
# does the installed build linked without scripts/hot-symbols.txt's code layout, as
# "unordered" (what that layout saves). Where the installed build links against musl, the
# same build against glibc runs the SQLite, PostgreSQL, MariaDB and Virtuoso rows, as
# "glibc" (what skipping glibc's start-up saves).
if [[ -z ${BENCH_BIN:-} ]]; then
  BENCH_BIN=$(scripts/build-release.sh --quiet | tail -n 1)
  export BENCH_BIN
fi
if [[ -z ${BENCH_EXTRA+set} ]]; then
  cargo build --release --quiet
  sqlite_only=$(CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/sqlite-only \
    scripts/build-release.sh --quiet --no-default-features --features sqlite | tail -n 1)
  unordered=$(VIRT_MAIL_NO_ORDER=1 CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/unordered \
    scripts/build-release.sh --quiet | tail -n 1)
  dynamic=${CARGO_TARGET_DIR:-$PWD/target}/release/virt_mail
  export BENCH_EXTRA="dynamic=$dynamic:sqlite+postgres socket+mariadb socket,sqlite-only=$sqlite_only:sqlite,unordered=$unordered:sqlite"
  if [[ $BENCH_BIN == */x86_64-unknown-linux-musl/* ]]; then
    glibc=$(VIRT_MAIL_LIBC=gnu scripts/build-release.sh --quiet | tail -n 1)
    BENCH_EXTRA+=",glibc=$glibc:sqlite+postgres socket+mariadb socket+virt_mail virtuoso"
  fi
fi

out=${BENCH_OUT:-${CARGO_TARGET_DIR:-target}/bench-deliver.md}
mkdir -p "$(dirname "$out")"
echo "bench/run.sh: $(date -Is); nproc $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
cargo bench --all-features --bench deliver | tee "$out"
echo "bench/run.sh: done in $((SECONDS - start)) s (load now: $(cut -d' ' -f1-3 /proc/loadavg)); table in $out"
