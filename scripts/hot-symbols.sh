#!/usr/bin/env bash
# scripts/hot-symbols.sh — regenerates scripts/hot-symbols.txt, the functions one delivery
# into SQLite runs, which scripts/build-release.sh asks the linker to place first.
#
# Why: a process touches each page of code it runs once, and the kernel maps 64 KiB around
# every page fault; with the delivery's ~1,400 functions spread over 5 MB of text that is 3.7
# MiB of resident binary and ~200 faults per delivery. Placed together they fit in a few
# hundred KiB (docs/PERFORMANCE.md, "Code layout").
#
# How: valgrind's callgrind lists every function that ran (no sampling, so none is missed)
# during one delivery of examples/message.eml with examples/sqlite/virt_mail.ini. Rust
# symbol names lose their hash (`17h<16 hex digits>E`), which changes with the compiler and
# the dependencies; build-release.sh maps the list back to the names of the binary it built.
# Run it after large changes to the delivery path; a stale list only orders less well.
#
# Needs: valgrind, sqlite3. Usage: scripts/hot-symbols.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for cmd in valgrind sqlite3; do
    command -v "$cmd" >/dev/null || { echo "hot-symbols.sh: $cmd is needed (apt-get install $cmd)" >&2; exit 1; }
done

bin=$(scripts/build-release.sh | tail -n 1)
dir=$(mktemp -d /tmp/virt_mail-hot.XXXXXX)
trap 'rm -rf "$dir"' EXIT
sqlite3 "$dir/mail.db" <examples/sqlite/schema.sql
sqlite3 "$dir/mail.db" "INSERT INTO mailbox (local, domain) VALUES ('alice', 'example.com');"
sed "s|sqlite:/var/mail/virt_mail.db|sqlite:$dir/mail.db|" examples/sqlite/virt_mail.ini >"$dir/virt_mail.ini"
chmod 600 "$dir/virt_mail.ini"

# Twice: the first delivery creates the WAL, the second is the usual one.
for run in 1 2; do
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/cg.$run" \
        "$bin" -c "$dir/virt_mail.ini" -l alice -h example.com -s bob@example.org \
        <examples/message.eml 2>"$dir/valgrind.$run" \
        || { cat "$dir/valgrind.$run" >&2; exit 1; }
done

# `fn=(id) name` and `cfn=(id) name` name each function once; `'2` marks recursion depth;
# addresses are functions without a symbol.
{
    echo "# Functions one SQLite delivery runs: scripts/hot-symbols.sh wrote this; see there."
    sed -nE "s/^c?fn=\([0-9]+\) (.+)$/\1/p" "$dir"/cg.* |
        sed -E "s/'[0-9]+$//; s/17h[0-9a-f]{16}E$//" |
        grep -v -e '^0x' -e '^(below main)' | LC_ALL=C sort -u
} >scripts/hot-symbols.txt
echo "scripts/hot-symbols.txt: $(($(wc -l <scripts/hot-symbols.txt) - 1)) functions" >&2
