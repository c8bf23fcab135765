#!/usr/bin/env bash
# procmail end to end, driven by procmail itself: procmail (Debian's package, installed; it
# is no MTA) is the local delivery agent of a private Exim instance (the one of
# tests/mta/exim.sh, on 127.0.0.1:$MTA_PORT_BASE+4) for the users alice, nobody and info of
# example.com. Each user has a home directory D/home/USER holding .procmailrc, made from
# examples/mta/procmail/procmailrc (the_user_name replaced by USER, the_domain by example.com,
# /usr/bin/virt_mail by the binary under test), and .odbc_mail.ini. Exim's pipe runs, as user nobody,
#   procmail -m HOME=D/home/USER D/home/USER/.procmailrc
# (-m and HOME= stand in for a real account whose passwd entry has that home: without -m,
# procmail takes HOME from /etc/passwd and creates /var/mail/nobody). procmail runs the
# recipe, virt_mail stores the message, and procmail's exit status (virt_mail's, through
# EXITCODE) tells Exim: 0 delivered, 75 retry, others bounce with the output returned.
set -uo pipefail
MTA_NAME=procmail
PORT=$((${MTA_PORT_BASE:-25250} + 4))
# shellcheck source=tests/mta/exim.sh
source "$(dirname "$0")/exim.sh"

new_store "$D/store" nobody
for u in alice nobody info; do
    h=$D/home/$u
    mkdir -p "$h"
    substitute "$MTA_EXAMPLES/procmail/procmailrc" \
        "s|/usr/bin/virt_mail|$VIRT_MAIL|" "s|the_user_name|$u|g" "s|the_domain|example.com|g" >"$h/.procmailrc"
    cp "$D/store/odbc_mail.ini" "$h/.odbc_mail.ini"
    chown -R nobody:nogroup "$h"
    chmod 755 "$h"
    chmod 644 "$h/.procmailrc"
    chmod 600 "$h/.odbc_mail.ini"
done
chmod 755 "$D/home"
BADMODE_CONFIG=$D/home/info/.odbc_mail.ini

cat >"$D/fragment.conf" <<EOF
begin routers

# local users whose mail procmail delivers (their .procmailrc decides)
procmail:
  driver = accept
  domains = +local_domains
  local_parts = alice : nobody : info
  transport = procmail_pipe

begin transports

# Debian's procmail_pipe, for users without a passwd entry (see the top of this file)
procmail_pipe:
  driver = pipe
  command = /usr/bin/procmail -m HOME=$D/home/\${local_part_data} $D/home/\${local_part_data}/.procmailrc
  user = nobody
  group = nogroup
  return_path_add
  delivery_date_add
  envelope_to_add
  message_suffix =
  return_fail_output
EOF
exim_conf "$D/fragment.conf" >"$D/exim.conf"
start_exim

HEADERS=(Received Return-path Delivery-date Envelope-to)
# procmail ends every message with an empty line (mbox style) before handing it on
BODY_ADDED='\n'
# procmail clears SENDER from the environment and the recipe (as the manual's) has no -s.
# (-s "$SENDER" in the recipe would be wrong: procmail pastes the value into the shell
# command line, so a sender with $(...) would run.)
EXPECT_SENDER=
# shellcheck source=tests/mta/cases.sh
source "$(dirname "$0")/cases.sh"
run_cases "$PORT"
exit "$MTA_FAILED"
