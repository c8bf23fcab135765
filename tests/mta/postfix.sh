#!/usr/bin/env bash
# Postfix end to end: a private Postfix instance (postfix -c DIR/etc) from the unpacked Debian
# package, SMTP on 127.0.0.1:$MTA_PORT_BASE+1, delivering example.com through the pipe service
# of examples/mta/postfix/master.cf.snippet (virt_mail as user mail), routed by
# examples/mta/postfix/transport. Bounces to the sender domain bounce.test go to a file sink.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
MTA_NAME=postfix
MTA_FAILED=0
T=$MTA_PKGROOT/root
D=$MTA_RUN/postfix
PORT=$((MTA_PORT_BASE + 1))
export LD_LIBRARY_PATH=$T/usr/lib/postfix
PF=(env LD_LIBRARY_PATH="$LD_LIBRARY_PATH")

# Postfix needs its own accounts: mail_owner and setgid_group (as the package would make).
getent group postdrop >/dev/null || groupadd --system postdrop
getent passwd postfix >/dev/null ||
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin postfix

rm -rf "$D" && mkdir -p "$D/etc" "$D/spool" "$D/data"
chown postfix "$D/data" && chmod 700 "$D/data"
STORE_DB=$D/store/db/mail.db
new_store "$D/store" mail
make_sink "$D/sink" nobody

postconf_() { "${PF[@]}" "$T/usr/sbin/postconf" -c "$D/etc" "$@"; }
postqueue_() { "${PF[@]}" "$T/usr/sbin/postqueue" -c "$D/etc" "$@"; }
postfix_() { "${PF[@]}" "$T/usr/sbin/postfix" -c "$D/etc" "$@"; }

# --- the private instance: everything of its own under $D, binaries from the package tree
cat >"$D/etc/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $D/etc
queue_directory = $D/spool
data_directory = $D/data
command_directory = $T/usr/sbin
daemon_directory = $T/usr/lib/postfix/sbin
shlib_directory = $T/usr/lib/postfix
meta_directory = $D/etc
mail_owner = postfix
setgid_group = postdrop
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH
maillog_file = $D/maillog
maillog_file_prefixes = $MTA_RUN
myhostname = mta-test.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
disable_dns_lookups = yes
smtp_host_lookup = native
message_size_limit = 10240000
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
delay_warning_time = 0
# the bounce sink's transport (test only)
sink_destination_recipient_limit = 1
EOF
# the example's main.cf lines, with the map's path moved into the private config directory
substitute "$MTA_EXAMPLES/postfix/main.cf.snippet" "s|/etc/postfix/|$D/etc/|g" >>"$D/etc/main.cf"
cp "$T/usr/share/postfix/dynamicmaps.cf" "$T/etc/postfix/postfix-files" "$D/etc/"
mkdir -p "$D/etc/dynamicmaps.cf.d" "$D/etc/postfix-files.d"
: >"$D/etc/main.cf.proto"
: >"$D/etc/master.cf.proto"
cp "$T/usr/share/postfix/makedefs.out" "$D/etc/"

cat >"$D/etc/master.cf" <<EOF
127.0.0.1:$PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
sink      unix  -       n       n       -       -       pipe
  flags=FR user=nobody argv=$D/sink/sink.sh
EOF
substitute "$MTA_EXAMPLES/postfix/master.cf.snippet" \
    "s|/usr/bin/virt_mail|$VIRT_MAIL|" "s|/etc/odbc_mail.ini|$D/store/odbc_mail.ini|" >>"$D/etc/master.cf"
{
    cat "$MTA_EXAMPLES/postfix/transport"
    echo "bounce.test     sink:"
} >"$D/etc/transport"
"${PF[@]}" "$T/usr/sbin/postmap" -c "$D/etc" "$D/etc/transport" || die "postmap failed"

stop_postfix() { postfix_ stop >/dev/null 2>&1 || true; sleep 1; }
trap stop_postfix EXIT

if ! postfix_ start >"$D/start.log" 2>&1 || ! wait_port "$PORT"; then
    fail "0 start" "$(tr '\n' ' ' <"$D/start.log" | cut -c1-300)"
    tail -20 "$D/maillog" >&2 2>/dev/null
    exit 1
fi
pass "0 start" "postfix -c $D/etc, 127.0.0.1:$PORT"

queue_empty() { postqueue_ -p 2>/dev/null | grep -q '^Mail queue is empty'; }
queue_listing() { postqueue_ -p 2>&1 | head -20 | tr '\n' ' '; }
# postqueue -j: one JSON object per queued message
is_deferred() { postqueue_ -j 2>/dev/null | grep -F '"queue_name": "deferred"' | grep -qF "\"address\": \"$1\""; }
flush() { postqueue_ -f >/dev/null 2>&1; }
HEADERS=(Received Return-Path Delivered-To)

# shellcheck source=tests/mta/cases.sh
source "$(dirname "$0")/cases.sh"
run_cases "$PORT"
exit "$MTA_FAILED"
