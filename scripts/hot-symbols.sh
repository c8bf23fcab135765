#!/usr/bin/env bash
# scripts/hot-symbols.sh — regenerates scripts/hot-symbols.txt, the functions one delivery
# runs, which scripts/build-release.sh asks the linker to place first: those of a delivery
# into SQLite, then those that one into PostgreSQL, MariaDB and Virtuoso add (with the
# servers of scripts/servers.sh; source its env.sh first, or only SQLite is traced).
#
# Why: a process touches each page of code it runs once, and the kernel maps 64 KiB around
# every page fault; with the delivery's ~1,400 functions spread over 5 MB of text that is 3.7
# MiB of resident binary and ~200 faults per delivery. Placed together they fit in a few
# hundred KiB (docs/PERFORMANCE.md, "Code layout").
#
# How: valgrind's callgrind lists every function that ran (no sampling, so none is missed)
# during deliveries of examples/message.eml (SQLite: examples/sqlite/virt_mail.ini). Rust
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

# trace NAME CONFIG: callgrind's list of the functions deliveries with CONFIG ran, into
# $dir/NAME.syms. `fn=(id) name` and `cfn=(id) name` name each function once; `'2` marks
# recursion depth; addresses are functions without a symbol. Twice: the first delivery
# may set the store up (SQLite's WAL), the second is the usual one.
trace() {
    local name=$1 config=$2 run
    for run in 1 2; do
        valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/$name.cg.$run" \
            "$bin" -c "$config" -l alice -h example.com -s bob@example.org \
            <examples/message.eml 2>"$dir/$name.log" \
            || { cat "$dir/$name.log" >&2; exit 1; }
    done
    sed -nE "s/^c?fn=\([0-9]+\) (.+)$/\1/p" "$dir/$name".cg.* |
        sed -E "s/'[0-9]+$//; s/17h[0-9a-f]{16}E$//" |
        grep -v -e '^0x' -e '^(below main)' | LC_ALL=C sort -u >"$dir/$name.syms"
}
# server_config NAME DSN: a configuration for the hot_* tables (made by the caller).
server_config() {
    printf '[Options]\nDSN = %s\n%s\n%s\n' "$2" \
        "Verify = SELECT id FROM hot_mailbox WHERE local = '\$local'" \
        "Deliver = INSERT INTO hot_message (mailbox_id, sender, body) VALUES (\$1, '\$sender', \$message)" \
        >"$dir/$1.ini"
    chmod 600 "$dir/$1.ini"
}

trace sqlite "$dir/virt_mail.ini"
names=(sqlite)
if [[ -n ${VIRT_MAIL_TEST_PG_PEER_URL:-} ]]; then
    pg() { psql -X -q -v ON_ERROR_STOP=1 "$VIRT_MAIL_TEST_PG_PEER_URL" -c "SET client_min_messages = warning; $1"; }
    pg "DROP TABLE IF EXISTS hot_message, hot_mailbox;
        CREATE TABLE hot_mailbox (id serial PRIMARY KEY, local text NOT NULL);
        CREATE TABLE hot_message (id bigserial PRIMARY KEY, mailbox_id int NOT NULL,
            sender text NOT NULL, body bytea NOT NULL);
        INSERT INTO hot_mailbox (local) VALUES ('alice');"
    server_config postgres "$VIRT_MAIL_TEST_PG_PEER_URL"
    trace postgres "$dir/postgres.ini"
    pg "DROP TABLE hot_message, hot_mailbox;"
    names+=(postgres)
fi
if [[ -n ${VIRT_MAIL_TEST_MYSQL_SOCKET:-} ]]; then
    my() { mariadb --no-defaults -S "$VIRT_MAIL_TEST_MYSQL_SOCKET" -uvirt -pvirtpw mail -e "$1"; }
    my "DROP TABLE IF EXISTS hot_message, hot_mailbox;
        CREATE TABLE hot_mailbox (id INT AUTO_INCREMENT PRIMARY KEY, local VARCHAR(200) NOT NULL);
        CREATE TABLE hot_message (id BIGINT AUTO_INCREMENT PRIMARY KEY, mailbox_id INT NOT NULL,
            sender VARCHAR(700) NOT NULL, body LONGBLOB NOT NULL);
        INSERT INTO hot_mailbox (local) VALUES ('alice');"
    server_config mariadb "mysql://virt:virtpw@localhost/mail?socket=$VIRT_MAIL_TEST_MYSQL_SOCKET"
    trace mariadb "$dir/mariadb.ini"
    my "DROP TABLE hot_message, hot_mailbox;"
    names+=(mariadb)
fi
if [[ -n ${VIRT_MAIL_TEST_VIRTUOSO_HOST:-} ]] && command -v isql-vt >/dev/null; then
    vt() { isql-vt "$VIRT_MAIL_TEST_VIRTUOSO_HOST" dba dba "exec=$1" >/dev/null; }
    vt "DROP TABLE hot_message; DROP TABLE hot_mailbox;" 2>/dev/null || true
    vt "CREATE TABLE hot_mailbox (id INTEGER PRIMARY KEY, local VARCHAR(200) NOT NULL);
        CREATE TABLE hot_message (id INTEGER IDENTITY PRIMARY KEY, mailbox_id INTEGER NOT NULL,
            sender VARCHAR(700) NOT NULL, body LONG VARBINARY NOT NULL);
        INSERT INTO hot_mailbox (id, local) VALUES (1, 'alice');"
    server_config virtuoso "virtuoso://dba:dba@$VIRT_MAIL_TEST_VIRTUOSO_HOST"
    trace virtuoso "$dir/virtuoso.ini"
    vt "DROP TABLE hot_message; DROP TABLE hot_mailbox;"
    names+=(virtuoso)
fi

# One group per backend, each without the functions an earlier group has: a delivery's
# code stays together, and SQLite's (the default) comes first.
{
    echo "# Functions deliveries run (${names[*]}, in groups, in this order): written by"
    echo "# scripts/hot-symbols.sh; see there."
    : >"$dir/seen"
    for name in "${names[@]}"; do
        LC_ALL=C comm -23 "$dir/$name.syms" "$dir/seen"
        LC_ALL=C sort -u "$dir/seen" "$dir/$name.syms" -o "$dir/seen"
    done
} >scripts/hot-symbols.txt
echo "scripts/hot-symbols.txt: $(grep -vc '^#' scripts/hot-symbols.txt) functions (${names[*]})" >&2
