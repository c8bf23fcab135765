# shellcheck shell=bash
# The acceptance cases, the same for every real MTA. Sourced by tests/mta/<mta>.sh after it
# has started its MTA; that script provides:
#   MTA_NAME, D (its directory), STORE_DB, D/store/odbc_mail.ini, D/sink (bounce sink)
#   BADMODE_CONFIG       (optional) the ini virt_mail reads for info@example.com
#   EXPECT_SENDER        (optional) the sender column expected for SENDER (default SENDER)
#   BODY_ADDED           (optional) bytes the MTA/MDA appends to the body (procmail: "\n")
#   queue_empty          true when the MTA's queue is empty (postqueue -p, exim -bp, mailq)
#   is_deferred RCPT     true when a message to RCPT sits in the queue, deferred
#   flush                run the queue now
#   HEADERS              header names the MTA must have added to the stored message

: "${SENDER:=tester@bounce.test}"
# the [Bounce] UserUnknown text as virt_mail expands it for nobody@example.com (sendmail's
# Mlocal passes no -h, so $domain is empty there)
: "${UNKNOWN_TEXT:=No mailbox for nobody@example.com here.}"

# store_down / store_up: make the SQLite file unopenable (virt_mail then defers, 75) and back.
# Moving it away works whatever user virt_mail runs as (root ignores chmod 000).
store_down() {
    local f
    for f in "$STORE_DB" "$STORE_DB-wal" "$STORE_DB-shm"; do [[ -e $f ]] && mv "$f" "$f.away"; done
    return 0
}
store_up() {
    local f
    for f in "$STORE_DB" "$STORE_DB-wal" "$STORE_DB-shm"; do [[ -e $f.away ]] && mv "$f.away" "$f"; done
    return 0
}

queue_drained() { wait_until "$MTA_WAIT" queue_empty; }

case_known() {
    local port=$1 tok="known-$MTA_NAME-$RANDOM" m=$D/msg.known n
    make_message "$m" "$tok"
    if ! send "$port" "$SENDER" alice@example.com "$m"; then
        fail "1 known recipient: SMTP" "$(tail -3 "$m.swaks" | tr '\n' ' ')"
        return
    fi
    n=$(wait_stored "$tok" 1)
    check "1 known recipient: stored exactly once" "stored $n times" test "$n" = 1
    stored_body "$tok" "$m.stored"
    cp "$m" "$m.expected" && printf '%b' "${BODY_ADDED:-}" >>"$m.expected"
    check "1 known recipient: body byte for byte" "diff: $(diff <(sed '1,/^$/d' "$m.expected") <(sed '1,/^$/d' "$m.stored") 2>&1 | head -5 | tr '\n' ' ')" \
        body_intact "$m.expected" "$m.stored"
    check "1 known recipient: original header lines intact" "missing: $(header_lines_missing "$m" "$m.stored" | head -2 | tr '\n' '|')" \
        test -z "$(header_lines_missing "$m" "$m.stored")"
    check "1 known recipient: MTA headers (${HEADERS[*]})" "header: $(sed '/^$/q' "$m.stored" | tr '\n' '|' | cut -c1-400)" \
        has_header "$m.stored" "${HEADERS[@]}"
    local want=${EXPECT_SENDER-$SENDER}
    check "1 known recipient: sender column is [$want]" "sender=$(sql "SELECT sender FROM message WHERE instr(CAST(body AS TEXT), '$tok') > 0")" \
        test "$(sql "SELECT sender FROM message WHERE instr(CAST(body AS TEXT), '$tok') > 0")" = "$want"
    check "1 known recipient: queue empty" "$(queue_listing)" queue_drained
}

case_unknown() {
    local port=$1 tok="unknown-$MTA_NAME-$RANDOM" m=$D/msg.unknown b
    make_message "$m" "$tok"
    send "$port" "$SENDER" nobody@example.com "$m" || { fail "2 unknown recipient: SMTP" "$(tail -3 "$m.swaks" | tr '\n' ' ')"; return; }
    if b=$(wait_bounce "$D/sink" "$UNKNOWN_TEXT"); then
        pass "2 unknown recipient: bounce has [Bounce] UserUnknown text" "$(basename "$b")"
        check "2 unknown recipient: bounce is about that message" "no $tok in $b" grep -qF "$tok" "$b"
    else
        fail "2 unknown recipient: bounce has [Bounce] UserUnknown text" "no bounce in $D/sink/box: $(ls "$D/sink/box" | head -3 | tr '\n' ' ')"
    fi
    check "2 unknown recipient: nothing stored" "stored" test "$(stored_count "$tok")" = 0
    check "2 unknown recipient: queue empty" "$(queue_listing)" queue_drained
}

case_db_down() {
    local port=$1 tok="dbdown-$MTA_NAME-$RANDOM" m=$D/msg.dbdown n
    make_message "$m" "$tok"
    store_down
    send "$port" "$SENDER" alice@example.com "$m" || { store_up; fail "3 database down: SMTP" "$(tail -3 "$m.swaks" | tr '\n' ' ')"; return; }
    if wait_until "$MTA_WAIT" is_deferred alice@example.com; then
        pass "3 database down: deferred, in the queue"
    else
        fail "3 database down: deferred, in the queue" "$(queue_listing)"
    fi
    store_up
    check "3 database down: nothing stored while down" "stored" test "$(stored_count "$tok")" = 0
    flush
    n=$(wait_stored "$tok" 1)
    check "3 database down: after restore + flush stored exactly once" "stored $n times" test "$n" = 1
    check "3 database down: queue empty" "$(queue_listing)" queue_drained
}

case_too_long() {
    local port=$1 tok="toolong-$MTA_NAME-$RANDOM" m=$D/msg.toolong b
    make_message "$m" "$tok" 150000
    send "$port" "$SENDER" alice@example.com "$m" || { fail "4 too long: SMTP" "$(tail -3 "$m.swaks" | tr '\n' ' ')"; return; }
    if b=$(wait_bounce "$D/sink" "The message is larger than this mailbox accepts."); then
        pass "4 too long: bounce has [Bounce] TooLong text" "$(basename "$b")"
    else
        fail "4 too long: bounce has [Bounce] TooLong text" "no such bounce in $D/sink/box"
    fi
    check "4 too long: nothing stored" "stored" test "$(stored_count "$tok")" = 0
    check "4 too long: queue empty" "$(queue_listing)" queue_drained
}

case_bad_mode() {
    local port=$1 tok="badmode-$MTA_NAME-$RANDOM" m=$D/msg.badmode n cfg=${BADMODE_CONFIG:-$D/store/odbc_mail.ini}
    make_message "$m" "$tok"
    chmod 660 "$cfg"
    send "$port" "$SENDER" info@example.com "$m" || { chmod 600 "$cfg"; fail "4 group-writable config: SMTP" "$(tail -3 "$m.swaks" | tr '\n' ' ')"; return; }
    if wait_until "$MTA_WAIT" is_deferred info@example.com; then
        pass "4 group-writable config: deferred, in the queue"
    else
        fail "4 group-writable config: deferred, in the queue" "$(queue_listing)"
    fi
    chmod 600 "$cfg"
    check "4 group-writable config: nothing stored while writable" "stored" test "$(stored_count "$tok")" = 0
    flush
    n=$(wait_stored "$tok" 1)
    check "4 group-writable config: after chmod 600 + flush stored exactly once" "stored $n times" test "$n" = 1
    check "4 group-writable config: queue empty" "$(queue_listing)" queue_drained
}

case_hostile() {
    local port=$1 i s tok m n outcome=() before after
    rm -f "$HOSTILE_MARKER"
    before=$(sql "SELECT count(*) FROM message;")
    for i in "${!HOSTILE_SENDERS[@]}"; do
        s=${HOSTILE_SENDERS[$i]}
        tok="hostile$i-$MTA_NAME-$RANDOM"
        m=$D/msg.hostile$i
        make_message "$m" "$tok"
        if send "$port" "$s" alice@example.com "$m"; then
            n=$(wait_stored "$tok" 1)
            if [[ $n == 1 ]]; then
                outcome+=("#$i stored, sender=[$(sql "SELECT sender FROM message WHERE instr(CAST(body AS TEXT), '$tok') > 0")]")
                before=$((before + 1))
            else
                fail "5 hostile sender #$i accepted but stored $n times" "$s"
            fi
        elif grep -qE '^<\*\* +5[0-9][0-9]' "$m.swaks"; then
            outcome+=("#$i refused: $(grep -m1 -E '^<\*\* +5' "$m.swaks" | sed 's/^<\*\* *//' | cut -c1-60)")
        else
            fail "5 hostile sender #$i: SMTP" "$(tail -3 "$m.swaks" | tr '\n' ' ')"
        fi
    done
    after=$(sql "SELECT count(*) FROM message;")
    check "5 hostile senders: nothing executed (no $HOSTILE_MARKER)" "marker exists" test ! -e "$HOSTILE_MARKER"
    check "5 hostile senders: tables intact, one row per accepted message" "rows $after, expected $before" \
        eval 'tables_intact && [[ $after == "$before" ]]'
    check "5 hostile senders: queue empty" "$(queue_listing)" queue_drained
    pass "5 hostile senders: outcome" "$(IFS=';'; echo "${outcome[*]}")"
}

run_cases() {
    local port=$1
    case_known "$port"
    case_unknown "$port"
    case_db_down "$port"
    case_too_long "$port"
    case_bad_mode "$port"
    case_hostile "$port"
}
