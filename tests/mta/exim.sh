#!/usr/bin/env bash
# Exim 4 end to end: exim4 (exim4-daemon-light) from the unpacked Debian package, run as root
# with -C (root may name any configuration; Debian's TRUSTED_CONFIG_LIST only matters for
# other callers), a private spool/log in $D, SMTP on 127.0.0.1:$MTA_PORT_BASE+2. The router
# and transport are examples/mta/exim/virt_mail.conf (virt_mail as user mail). Bounces to the
# sender domain bounce.test go to a file sink.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
MTA_NAME=${MTA_NAME:-exim}
MTA_FAILED=0
T=$MTA_PKGROOT/root
D=$MTA_RUN/$MTA_NAME
PORT=${PORT:-$((MTA_PORT_BASE + 2))}
EXIM=$T/usr/sbin/exim4

# the account the Debian binary is built to run as (EXIM_USER), as the package would make it
getent passwd Debian-exim >/dev/null ||
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin Debian-exim

rm -rf "$D" && mkdir -p "$D/spool" "$D/log"
chown -R Debian-exim:Debian-exim "$D/spool" "$D/log"
STORE_DB=$D/store/db/mail.db
make_sink "$D/sink" nobody

# exim_conf ROUTERS-FRAGMENT: the private configuration: main section and ACL of the test,
# then the example fragment (begin routers ... begin transports ...) with the bounce sink's
# router and transport added at the top of each section, then a quick retry rule.
exim_conf() {
    local fragment=$1
    cat <<EOF
exim_path = $EXIM
spool_directory = $D/spool
log_file_path = $D/log/%slog
pid_file_path = $D/exim.pid
primary_hostname = mta-test.localdomain
qualify_domain = mta-test.localdomain
domainlist local_domains = example.com
local_interfaces = 127.0.0.1
daemon_smtp_ports = $PORT
never_users = root
host_lookup =
message_size_limit = 10M
keep_environment =
acl_smtp_rcpt = acl_check_rcpt
bounce_return_size_limit = 20K
timeout_frozen_after = 1m
ignore_bounce_errors_after = 0s

begin acl

acl_check_rcpt:
  accept hosts = 127.0.0.1

EOF
    sed -e "/^begin routers/r $D/sink.router" -e "/^begin transports/r $D/sink.transport" "$fragment"
    cat <<'EOF'

begin retry

*   *   F,1h,10s
EOF
}

cat >"$D/sink.router" <<EOF

sink:
  driver = accept
  domains = bounce.test
  transport = sink
EOF
cat >"$D/sink.transport" <<EOF

sink:
  driver = pipe
  command = $D/sink/sink.sh
  user = nobody
  return_path_add
EOF

exim_() { "$EXIM" -C "$D/exim.conf" "$@"; }

# Root may start Exim with any -C file, but Exim re-executes itself for each delivery from
# processes running as Debian-exim, and those keep root privilege (needed to switch to the
# transport's user) only for a file listed in the binary's TRUSTED_CONFIG_LIST,
# /etc/exim4/trusted_configs. So the private config is listed there while the test runs; the
# line (and the file and directory, if this test made them) go again on exit.
TRUST=/etc/exim4/trusted_configs
trust_config() {
    [[ -d /etc/exim4 ]] || { mkdir -p /etc/exim4 && touch /etc/exim4/.virt_mail-mta-made; }
    [[ -e $TRUST ]] || { touch "$TRUST" && touch /etc/exim4/.virt_mail-mta-made-list; }
    chmod 644 "$TRUST"
    echo "$1" >>"$TRUST"
}
untrust_configs() {
    [[ -e $TRUST ]] && sed -i "\\|^$MTA_RUN_BASE/run\\.[^/]*/|d" "$TRUST"
    if [[ -e /etc/exim4/.virt_mail-mta-made-list && ! -s $TRUST ]]; then
        rm -f "$TRUST" /etc/exim4/.virt_mail-mta-made-list
    fi
    if [[ -e /etc/exim4/.virt_mail-mta-made ]]; then
        rm -f /etc/exim4/.virt_mail-mta-made
        rmdir /etc/exim4 2>/dev/null
    fi
    return 0
}
stop_exim() {
    [[ -s $D/exim.pid ]] && kill "$(cat "$D/exim.pid")" 2>/dev/null
    sleep 0.5
    untrust_configs
    chmod u-s "$EXIM"
}
trap stop_exim EXIT

start_exim() {
    trust_config "$D/exim.conf"
    # exim4 is set-uid root as packaged (mta_extract drops that bit): the re-executed
    # delivery processes start as Debian-exim and need it to become root again
    chown root:root "$EXIM" && chmod 4755 "$EXIM"
    if ! exim_ -bV >"$D/bV.log" 2>&1; then
        fail "0 start" "config: $(grep -v Warning "$D/bV.log" | head -3 | tr '\n' ' ')"
        exit 1
    fi
    if ! exim_ -bd >"$D/start.log" 2>&1 || ! wait_port "$PORT"; then
        fail "0 start" "$(head -3 "$D/start.log" "$D/log/paniclog" 2>/dev/null | tr '\n' ' ')"
        exit 1
    fi
    pass "0 start" "exim4 -C $D/exim.conf -bd, 127.0.0.1:$PORT"
}

queue_empty() { [[ $(exim_ -bpc 2>/dev/null) == 0 ]]; }
queue_listing() { exim_ -bp 2>&1 | head -20 | tr '\n' ' '; }
# deferred: still queued for RCPT, and the log has a "==" (deferred) line for it
is_deferred() { exim_ -bp 2>/dev/null | grep -qF "$1" && grep -qF "== $1 " "$D/log/mainlog"; }
flush() { exim_ -qff >/dev/null 2>&1; }
HEADERS=(Received Return-Path Delivery-date)

if [[ $MTA_NAME == exim ]]; then
    new_store "$D/store" mail
    substitute "$MTA_EXAMPLES/exim/virt_mail.conf" \
        "s|/usr/bin/virt_mail|$VIRT_MAIL|" "s|/etc/odbc_mail.ini|$D/store/odbc_mail.ini|g" >"$D/fragment.conf"
    exim_conf "$D/fragment.conf" >"$D/exim.conf"
    start_exim
    # shellcheck source=tests/mta/cases.sh
    source "$(dirname "$0")/cases.sh"
    run_cases "$PORT"
    exit "$MTA_FAILED"
fi
