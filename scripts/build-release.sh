#!/usr/bin/env bash
# scripts/build-release.sh [cargo build options...] — the virt_mail to install, printed as
# its path on the last line of stdout.
#
# On a GNU/Linux host, without the `odbc` feature, this is a statically linked, non-PIE
# executable (`-C target-feature=+crt-static -C relocation-model=static`): an MTA starts
# virt_mail once per recipient, and a dynamically linked PIE spends about a third of a small
# delivery's CPU in the dynamic loader (symbol lookups, relocations and the page faults they
# cause). docs/PERFORMANCE.md has the measurements.
#
# On x86_64, when the musl target and musl-gcc are installed (`rustup target add
# x86_64-unknown-linux-musl`, Debian `musl-tools`; scripts/servers.sh install adds both), it
# is linked against musl instead of glibc: glibc's start-up detects the CPU's features and
# cache sizes with dozens of `cpuid` instructions, each a trap to the hypervisor in a virtual
# machine, which cost 0.45 ms of every process on the bench's VM (an empty static C program:
# 0.63 ms of CPU, three quarters of it there); musl asks nothing at start-up. Host names in a
# DSN resolve through musl's own resolver (/etc/hosts, then DNS per /etc/resolv.conf; no NSS
# modules). VIRT_MAIL_LIBC=gnu keeps glibc (its `files` and `dns` name services are built
# into the static binary).
#
# Where the linker is LLD (rustc 1.90 and later on x86_64 GNU/Linux), the functions a
# delivery runs (scripts/hot-symbols.txt, from scripts/hot-symbols.sh) are placed first, so
# that a delivery faults in a few hundred KiB of code instead of pages spread over 5 MB:
# peak RSS 3.9 -> 2.1 MiB at 2 KiB. The list names functions without their Rust hashes; the
# names of this build are looked up after linking, and if they changed, the binary is linked
# once more with them (about 30 s). VIRT_MAIL_NO_ORDER=1 skips it.
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

rustc_version=$(rustc -vV)
host=$(sed -n 's/^host: //p' <<<"$rustc_version")
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

# The binary's text symbols that scripts/hot-symbols.txt names, hashes aside, in its order.
hot_symbols_of() {
    nm --defined-only "$1" | awk '
        NR == FNR { if ($0 !~ /^#/) want[$0] = NR; next }
        $2 ~ /^[tTwW]$/ { k = $3; sub(/17h[0-9a-f]{16}E$/, "", k); if (k in want) print want[k] "\t" $3 }
    ' scripts/hot-symbols.txt - | sort -n -k1,1 -s | cut -f2
}

if ((static)); then
    target=$host
    sysroot=$(rustc --print sysroot)
    # rust-lld through its gcc wrapper: the linker rustc uses itself on x86_64 GNU/Linux.
    lld="-C link-arg=-B$sysroot/lib/rustlib/$host/bin/gcc-ld -C link-arg=-fuse-ld=lld"
    if [[ $host == x86_64-unknown-linux-gnu && ${VIRT_MAIL_LIBC:-musl} == musl ]] \
        && [[ -d $sysroot/lib/rustlib/x86_64-unknown-linux-musl/lib \
            && -d $sysroot/lib/rustlib/$host/bin/gcc-ld && $sysroot != *[[:space:]]* ]] \
        && command -v musl-gcc >/dev/null; then
        target=x86_64-unknown-linux-musl
    elif [[ $host == x86_64-unknown-linux-gnu && ${VIRT_MAIL_LIBC:-musl} == musl ]]; then
        echo "build-release.sh: linking against glibc: for musl, rustup target add" \
            "x86_64-unknown-linux-musl and apt-get install musl-tools" >&2
    fi
    # An explicit --target keeps these flags off build scripts and proc macros (clap's
    # derive), which must stay dynamic libraries.
    flags="-C target-feature=+crt-static -C relocation-model=static"
    [[ $target == *-musl ]] && flags+=" $lld"
    order=""
    minor=$(sed -n 's/^release: 1\.\([0-9]*\)\..*/\1/p' <<<"$rustc_version")
    # (RUSTFLAGS is split at spaces: a target directory with one cannot be named in it.)
    if [[ $host == x86_64-unknown-linux-gnu && ${minor:-0} -ge 90 && ${VIRT_MAIL_NO_ORDER:-} != 1 ]] \
        && [[ -f scripts/hot-symbols.txt && $target_dir != *[[:space:]]* ]] \
        && command -v nm >/dev/null; then
        mkdir -p "$target_dir"
        order=$target_dir/virt_mail.$target.symbol-order
        [[ -f $order ]] || : >"$order"
        flags+=" -C link-arg=-Wl,--symbol-ordering-file=$order -C link-arg=-Wl,--no-warn-symbol-ordering"
    fi
    build() { RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --target "$target" "$@" >&2; }
    build "$@"
    bin=$target_dir/$target/release/virt_mail
    if [[ -n $order ]]; then
        hot_symbols_of "$bin" >"$order.new"
        if ! cmp -s "$order.new" "$order"; then
            mv "$order.new" "$order"
            touch src/main.rs   # cargo does not track the ordering file: relink
            build "$@"
        fi
        rm -f "$order.new"
    fi
    echo "$bin"
else
    cargo build --release "$@" >&2
    echo "$target_dir/release/virt_mail"
fi
