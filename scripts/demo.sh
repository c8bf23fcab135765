#!/usr/bin/env bash
# The quick start: build virt_mail, create a SQLite mail store, deliver examples/message.eml
# to alice@example.com exactly as an MTA would (message on stdin, envelope as flags), and
# show the stored row. Everything happens in a temporary directory; nothing is installed
# except the sqlite3 shell (Debian package sqlite3) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v sqlite3 >/dev/null; then
    echo "== installing the sqlite3 shell (to create the schema and show the row)"
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null; }
    else
        echo "please install sqlite3 (sudo apt-get install sqlite3)" >&2
        exit 1
    fi
fi

echo "== building virt_mail (release)"
cargo build --release --quiet
bin=target/release/virt_mail

dir=$(mktemp -d /tmp/virt_mail-demo.XXXXXX)
db="$dir/mail.db"
sqlite3 "$db" < examples/sqlite/schema.sql
sqlite3 "$db" "INSERT INTO mailbox (local, domain) VALUES ('alice', 'example.com');"
sed "s|sqlite:/var/mail/virt_mail.db|sqlite:$db|" examples/sqlite/virt_mail.ini > "$dir/virt_mail.ini"
chmod 600 "$dir/virt_mail.ini"

echo "== delivering examples/message.eml to alice@example.com"
set +e
"$bin" -c "$dir/virt_mail.ini" -l alice -h example.com -s bob@example.org < examples/message.eml
status=$?
set -e
echo "exit status: $status (0 = delivered)"

echo "== delivering to nobody@example.com (unknown: bounce text on stdout, exit 67)"
set +e
"$bin" -c "$dir/virt_mail.ini" -l nobody -h example.com -s bob@example.org < examples/message.eml
echo "exit status: $?"
set -e

echo "== the stored row"
sqlite3 -header -column "$db" \
    "SELECT m.id, b.local || '@' || b.domain AS mailbox, m.folder, m.sender, m.received,
            length(m.body) AS bytes, replace(substr(CAST(m.body AS TEXT), 1, 40), char(10), ' ') AS start
       FROM message m JOIN mailbox b ON b.id = m.mailbox_id;"
echo
echo "Try it yourself:  $bin -c $dir/virt_mail.ini -l alice -h example.com -s you@example.org < examples/message.eml"
exit "$status"
