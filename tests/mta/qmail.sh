#!/usr/bin/env bash
# qmail (and, with FLAVOR=courier, courier) end to end through tests/mta/dot-qmail-local.sh,
# a stand-in for qmail-local(8) / courier's local delivery: qmail is not packaged for
# Debian 12 and courier-mta cannot run as a private instance (see tests/mta/courier.sh).
# What is tested is the part that is virt_mail's: the .qmail / .courier lines of
# examples/mta/{qmail,courier}/ run as qmail-local runs them (sh -c in $HOME, the message
# file on stdin, LOCAL HOST SENDER DTLINE RPLINE UFLINE ... in the environment, as the user
# nobody), and the exit status read as qmail (0/99/100/111) or courier reads it. The
# harness's own exit status is what qmail-send / courierd would act on: 0 delivered,
# 100 bounce (with the output in it), 111 retry; a retry is a second run of the harness.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
FLAVOR=${FLAVOR:-qmail}
MTA_NAME=$FLAVOR
MTA_FAILED=0
D=$MTA_RUN/$FLAVOR
HARNESS=$(cd "$(dirname "$0")" && pwd)/dot-qmail-local.sh
rm -rf "$D" && mkdir -p "$D/home"
chmod 755 "$D" "$D/home"
STORE_DB=$D/store/db/mail.db
new_store "$D/store" nobody "$MTA_EXAMPLES/qmail/odbc_mail.ini"
rm -f "$HOSTILE_MARKER"

# home HOME DOTFILE-NAME EXAMPLE [extra line]: a home directory owned by nobody holding the
# example delivery file (virt_mail's path substituted) and .odbc_mail.ini
home() {
    local h=$D/home/$1
    mkdir -p "$h"
    substitute "$3" "s|/usr/bin/virt_mail|$VIRT_MAIL|" >"$h/$2"
    [[ -n ${4:-} ]] && echo "$4" >>"$h/$2"
    cp "$D/store/odbc_mail.ini" "$h/.odbc_mail.ini"
    mkdir -p "$h/Maildir/new" "$h/Maildir/cur" "$h/Maildir/tmp"
    chown -R nobody:nogroup "$h"
    chmod 600 "$h/.odbc_mail.ini"
}
if [[ $FLAVOR == qmail ]]; then
    flag=()
    # ~db/.qmail-default: every db-XXX@example.com (RemovePrefix = db-)
    home db .qmail-default "$MTA_EXAMPLES/qmail/dot-qmail-default"
    # ~alice/.qmail, with a second line that must not run: virt_mail exits 99
    home alice .qmail "$MTA_EXAMPLES/qmail/dot-qmail" '| touch second-line-ran'
    # deliver LOCALPART SENDER FILE: mail to LOCALPART@example.com arrives as db-LOCALPART
    deliver() {
        if [[ $1 == alice ]]; then
            "$HARNESS" --as nobody alice "$D/home/alice" alice '' '' example.com "$2" <"$3"
        else
            "$HARNESS" --as nobody db "$D/home/db" "db-$1" - "$1" example.com "$2" <"$3"
        fi
    }
    cfg_of() { if [[ $1 == alice ]]; then echo "$D/home/alice/.odbc_mail.ini"; else echo "$D/home/db/.odbc_mail.ini"; fi; }
    HOW="qmail-local harness, ~db/.qmail-default + RemovePrefix=db- (and ~alice/.qmail)"
else
    flag=(--courier)
    # ~USER/.courier per user: virt_mail first, then ./Maildir/ (the manual's "Right" order)
    for u in alice info nobody; do home "$u" .courier "$MTA_EXAMPLES/courier/dot-courier"; done
    deliver() { "$HARNESS" --courier --as nobody "$1" "$D/home/$1" "$1" '' '' example.com "$2" <"$3"; }
    cfg_of() { echo "$D/home/$1/.odbc_mail.ini"; }
    HOW="courier harness, ~USER/.courier: virt_mail -mcourier, then ./Maildir/"
fi
pass "0 start" "$HOW"
: "${SENDER:=tester@bounce.test}"
maildir_count() { find "$D/home/$1/Maildir/new" -type f | wc -l; }

# --- 1 known recipient
tok="known-$FLAVOR-$RANDOM"
m=$D/msg.known
make_message "$m" "$tok"
rcpt=info
[[ $FLAVOR == qmail ]] || rcpt=alice
deliver "$rcpt" "$SENDER" "$m" >"$m.out" 2>&1
rc=$?
check "1 known recipient ($rcpt@example.com): delivered (exit 0)" "exit $rc: $(head -3 "$m.out" | tr '\n' ' ')" test "$rc" = 0
n=$(stored_count "$tok")
check "1 known recipient: stored exactly once" "stored $n times" test "$n" = 1
check "1 known recipient: stored for mailbox $rcpt" "mailbox $(sql "SELECT b.local FROM message m JOIN mailbox b ON b.id = m.mailbox_id WHERE instr(CAST(m.body AS TEXT), '$tok') > 0")" \
    test "$(sql "SELECT b.local FROM message m JOIN mailbox b ON b.id = m.mailbox_id WHERE instr(CAST(m.body AS TEXT), '$tok') > 0")" = "$rcpt"
stored_body "$tok" "$m.stored"
if [[ $FLAVOR == qmail ]]; then dt="Delivered-To: db-info@example.com"; else dt="Delivered-To: alice@example.com"; fi
rp="Return-Path: <$SENDER>"
# the stored message is DTLINE and RPLINE (in either order) followed by the message, byte for byte
if cmp -s <(printf '%s\n%s\n' "$dt" "$rp"; cat "$m") "$m.stored"; then
    pass "1 known recipient: stored = DTLINE + RPLINE + message, byte for byte"
elif cmp -s <(printf '%s\n%s\n' "$rp" "$dt"; cat "$m") "$m.stored"; then
    pass "1 known recipient: stored = RPLINE + DTLINE + message, byte for byte"
else
    fail "1 known recipient: stored = DTLINE + RPLINE + message, byte for byte" "starts: $(head -3 "$m.stored" | tr '\n' '|')"
fi
check "1 known recipient: sender column" "sender=$(sql "SELECT sender FROM message WHERE instr(CAST(body AS TEXT), '$tok') > 0")" \
    test "$(sql "SELECT sender FROM message WHERE instr(CAST(body AS TEXT), '$tok') > 0")" = "$SENDER"
if [[ $FLAVOR == qmail ]]; then
    tok2="plain-qmail-$RANDOM"
    make_message "$m.2" "$tok2"
    deliver alice "$SENDER" "$m.2" >"$m.2.out" 2>&1
    rc=$?
    check "1 ~alice/.qmail: delivered (exit 0), stored once" "exit $rc, stored $(stored_count "$tok2")" \
        test "$rc:$(stored_count "$tok2")" = 0:1
    check "1 ~alice/.qmail: exit 99 stopped the file (second line not run)" "second line ran" \
        test ! -e "$D/home/alice/second-line-ran"
else
    check "1 known recipient: exit 0 went on to ./Maildir/ (1 copy there)" "$(maildir_count alice) copies" \
        test "$(maildir_count alice)" = 1
fi

# --- 2 unknown recipient
tok="unknown-$FLAVOR-$RANDOM"
m=$D/msg.unknown
make_message "$m" "$tok"
deliver nobody "$SENDER" "$m" >"$m.out" 2>&1
rc=$?
check "2 unknown recipient: bounce (exit 100)" "exit $rc" test "$rc" = 100
check "2 unknown recipient: output (the bounce text) has [Bounce] UserUnknown text" "output: $(tr '\n' ' ' <"$m.out")" \
    grep -qF "No mailbox for nobody@example.com here." "$m.out"
check "2 unknown recipient: nothing stored" "stored" test "$(stored_count "$tok")" = 0
[[ $FLAVOR == courier ]] && check "2 unknown recipient: the .courier stopped (no Maildir copy)" "copied" test "$(maildir_count nobody)" = 0

# The [Bounce] text the example file under test gives KEY (never empty: an
# empty pattern would match any output).
bounce_text() {
    local t
    t=$(sed -n "s/^$1 *= *//p" "$MTA_EXAMPLES/qmail/odbc_mail.ini")
    [[ -n $t ]] || t="no $1 key in $MTA_EXAMPLES/qmail/odbc_mail.ini"
    printf '%s\n' "$t"
}

# --- 3 database down
tok="dbdown-$FLAVOR-$RANDOM"
m=$D/msg.dbdown
make_message "$m" "$tok"
store_down() { local f; for f in "$STORE_DB" "$STORE_DB-wal" "$STORE_DB-shm"; do [[ -e $f ]] && mv "$f" "$f.away"; done; return 0; }
store_up() { local f; for f in "$STORE_DB" "$STORE_DB-wal" "$STORE_DB-shm"; do [[ -e $f.away ]] && mv "$f.away" "$f"; done; return 0; }
store_down
deliver "$rcpt" "$SENDER" "$m" >"$m.out" 2>&1
rc=$?
store_up
check "3 database down: retry later (exit 111)" "exit $rc: $(tr '\n' ' ' <"$m.out")" test "$rc" = 111
check "3 database down: output has [Bounce] DatabaseError text" "output: $(tr '\n' ' ' <"$m.out")" \
    grep -qF "$(bounce_text DatabaseError)" "$m.out"
check "3 database down: nothing stored" "stored" test "$(stored_count "$tok")" = 0
[[ $FLAVOR == courier ]] && check "3 database down: no Maildir copy before the retry" "copied" test "$(maildir_count alice)" = 1
deliver "$rcpt" "$SENDER" "$m" >"$m.out2" 2>&1
rc=$?
check "3 database down: retry after restore delivers (exit 0), stored exactly once" "exit $rc, stored $(stored_count "$tok")" \
    test "$rc:$(stored_count "$tok")" = 0:1
[[ $FLAVOR == courier ]] && check "3 database down: one Maildir copy after the retry" "$(maildir_count alice)" test "$(maildir_count alice)" = 2

# --- 4 too long, group-writable config
tok="toolong-$FLAVOR-$RANDOM"
m=$D/msg.toolong
make_message "$m" "$tok" 150000
deliver "$rcpt" "$SENDER" "$m" >"$m.out" 2>&1
rc=$?
check "4 too long: bounce (exit 100)" "exit $rc" test "$rc" = 100
check "4 too long: output has [Bounce] TooLong text" "output: $(tr '\n' ' ' <"$m.out")" \
    grep -qF "$(bounce_text TooLong)" "$m.out"
check "4 too long: nothing stored" "stored" test "$(stored_count "$tok")" = 0
tok="badmode-$FLAVOR-$RANDOM"
m=$D/msg.badmode
make_message "$m" "$tok"
cfg=$(cfg_of "$rcpt")
chmod 660 "$cfg"
deliver "$rcpt" "$SENDER" "$m" >"$m.out" 2>&1
rc=$?
chmod 600 "$cfg"
check "4 group-writable config: retry later (exit 111)" "exit $rc: $(tr '\n' ' ' <"$m.out")" test "$rc" = 111
check "4 group-writable config: nothing stored" "stored" test "$(stored_count "$tok")" = 0
deliver "$rcpt" "$SENDER" "$m" >"$m.out2" 2>&1
rc=$?
check "4 group-writable config: after chmod 600 the retry stores exactly once" "exit $rc, stored $(stored_count "$tok")" \
    test "$rc:$(stored_count "$tok")" = 0:1

# --- 5 hostile envelope: SENDER (and a hostile local part) reach virt_mail unquoted
before=$(sql "SELECT count(*) FROM message;")
outcome=()
senders=("${HOSTILE_SENDERS[@]}" $'nl\n$(touch /tmp/PWNED)@example.org')
for i in "${!senders[@]}"; do
    s=${senders[$i]}
    tok="hostile$i-$FLAVOR-$RANDOM"
    m=$D/msg.hostile$i
    make_message "$m" "$tok"
    deliver "$rcpt" "$s" "$m" >"$m.out" 2>&1
    rc=$?
    got=$(sql "SELECT sender FROM message WHERE instr(CAST(body AS TEXT), '$tok') > 0")
    if [[ $rc == 0 && $(stored_count "$tok") == 1 && $got == "$s" ]]; then
        outcome+=("#$i stored verbatim")
        before=$((before + 1))
    elif [[ $rc == 100 && $(stored_count "$tok") == 0 ]]; then
        outcome+=("#$i refused (exit 100): $(grep -m1 . "$m.out" | cut -c1-70)")
    else
        fail "5 hostile sender #$i" "exit $rc, stored $(stored_count "$tok"), sender [$got]"
    fi
done
m=$D/msg.hostile-local
make_message "$m" "hostile-local-$FLAVOR"
if [[ $FLAVOR == qmail ]]; then
    "$HARNESS" --as nobody db "$D/home/db" 'db-$(touch${IFS}/tmp/PWNED)' - '$(touch${IFS}/tmp/PWNED)' example.com "$SENDER" <"$m" >"$m.out" 2>&1
    rc=$?
    check "5 hostile local part db-\$(touch...): bounce (exit 100)" "exit $rc" test "$rc" = 100
fi
after=$(sql "SELECT count(*) FROM message;")
check "5 hostile senders: nothing executed (no $HOSTILE_MARKER)" "marker exists" test ! -e "$HOSTILE_MARKER"
check "5 hostile senders: tables intact, one row per message" "rows $after, expected $before" \
    eval 'tables_intact && [[ $after == "$before" ]]'
pass "5 hostile senders: outcome" "$(IFS=';'; echo "${outcome[*]}")"
exit "$MTA_FAILED"
