#!/usr/bin/env bash
# scripts/build-release.sh [cargo build options...] — the virt_mail to install, printed as
# its path on the last line of stdout.
#
# On a GNU/Linux host, without the `odbc` feature, this is a statically linked, non-PIE
# executable (`-C target-feature=+crt-static -C relocation-model=static`): an MTA starts
# virt_mail once per recipient, and a dynamically linked PIE spends about a third of a small
# delivery's CPU in the dynamic loader (symbol lookups, relocations and the page faults they
# cause). docs/PERFORMANCE.md has the measurements. glibc's `files` and `dns` name services
# are built into the static binary, so host names in a DSN resolve as before.
#
# With `--features odbc` (or `--all-features`) the build stays dynamic: unixODBC loads its
# drivers with dlopen(3), which a static executable cannot do reliably. Set
# VIRT_MAIL_DYNAMIC=1 to get the plain `cargo build --release` binary anyway.
#
# Examples:
#   scripts/build-release.sh                          # SQLite, PostgreSQL, MySQL (default)
#   scripts/build-release.sh --no-default-features --features sqlite
#   scripts/build-release.sh --all-features           # + ODBC: dynamic
#   install -m 755 "$(scripts/build-release.sh | tail -n 1)" /usr/bin/virt_mail
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$PWD/$target_dir   # cargo reads it from here too
static=1
[[ $host == *-linux-gnu ]] || static=0
[[ ${VIRT_MAIL_DYNAMIC:-} == 1 ]] && static=0
for arg in "$@"; do
    case $arg in
        --all-features | *odbc*) static=0 ;;
    esac
done

if ((static)); then
    # An explicit --target keeps these flags off build scripts and proc macros (clap's
    # derive), which must stay dynamic libraries.
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --target "$host" "$@" >&2
    echo "$target_dir/$host/release/virt_mail"
else
    cargo build --release "$@" >&2
    echo "$target_dir/release/virt_mail"
fi
