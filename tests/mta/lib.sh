# shellcheck shell=bash
# Shared helpers of the end-to-end MTA tests (tests/mta/*.sh), sourced by scripts/mta-test.sh
# and by each per-MTA script. Bash; the scripts run as root.
#
# Environment (set by scripts/mta-test.sh, or by hand when running one file):
#   MTA_RUN      a private directory of this run (mode 755); each MTA gets MTA_RUN/<mta>/
#   MTA_PKGROOT  where the MTA packages are unpacked (dpkg -x), see mta_extract
#   VIRT_MAIL    the virt_mail binary under test, copied to MTA_RUN/bin/virt_mail so that the
#                unprivileged delivery users (mail, nobody) can run it
#   MTA_RESULTS  the file PASS/FAIL lines are appended to

: "${MTA_REPO:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${MTA_EXAMPLES:=$MTA_REPO/examples/mta}"
: "${MTA_PKGROOT:=/var/tmp/virt_mail-mta-pkgs}"
: "${MTA_RUN_BASE:=/var/lib/virt_mail-mta}"
: "${MTA_RUN:=$MTA_RUN_BASE/run}"
: "${MTA_RESULTS:=$MTA_RUN/results}"
: "${VIRT_MAIL:=$MTA_RUN/bin/virt_mail}"
: "${MTA_PORT_BASE:=25250}"
# How long to wait for an MTA to finish a delivery (seconds).
: "${MTA_WAIT:=60}"

# Debian packages unpacked privately (never installed: each would become the system MTA).
MTA_DEBS=(postfix exim4-daemon-light exim4-base exim4-config sendmail-bin sendmail-base sendmail-cf)
# Installed for real: tools and the shared libraries the unpacked MTAs link against (from the
# packages' Depends; none of them is or pulls in an MTA).
MTA_APT=(swaks sqlite3 procmail m4 netbase
    libdb5.3 libicu72 libnsl2 libsasl2-2 libssl3 libcrypt1 libgnutls-dane0 libgnutls30
    libidn12 libidn2-0 libpcre2-8-0 libldap-2.5-0 liblockfile1 libwrap0)

log() { printf '   %s\n' "$*" >&2; }
die() { printf 'mta-test: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# results

# result PASS|FAIL MTA CASE [DETAIL]
result() {
    printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "${4:-}" >>"$MTA_RESULTS"
    printf '%-4s %-9s %s%s\n' "$1" "$2" "$3" "${4:+  ($4)}" >&2
}
pass() { result PASS "$MTA_NAME" "$1" "${2:-}"; }
fail() { result FAIL "$MTA_NAME" "$1" "${2:-}"; MTA_FAILED=1; }
# check CASE DETAIL-ON-FAILURE COMMAND...: PASS when COMMAND succeeds.
check() {
    local name=$1 detail=$2
    shift 2
    if "$@"; then pass "$name"; else fail "$name" "$detail"; fi
}

# ---------------------------------------------------------------------------------------
# installation

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# Download the MTA packages with apt-get download and unpack them with dpkg -x into
# MTA_PKGROOT/root. Nothing is registered with dpkg, no maintainer script runs, no file
# outside MTA_PKGROOT is written. Set-id bits are dropped (everything runs as root anyway).
mta_extract() {
    local stamp=$MTA_PKGROOT/root/.complete want
    want=$(apt-cache policy "${MTA_DEBS[@]}" 2>/dev/null | grep Candidate | tr -s ' ' | tr '\n' ' ')
    if [[ -f $stamp && $(cat "$stamp") == "$want" && $want != *"(none)"* ]]; then return 0; fi
    [[ $want == *Candidate:\ [0-9]* ]] || apt-get update -qq
    log "apt-get download + dpkg -x ${MTA_DEBS[*]} into $MTA_PKGROOT"
    rm -rf "$MTA_PKGROOT" && mkdir -p "$MTA_PKGROOT/debs" "$MTA_PKGROOT/root"
    chmod 755 "$MTA_PKGROOT"
    (cd "$MTA_PKGROOT/debs" && chown _apt . 2>/dev/null; apt-get download -qq "${MTA_DEBS[@]}" >/dev/null) ||
        die "apt-get download failed"
    local deb
    for deb in "$MTA_PKGROOT"/debs/*.deb; do dpkg -x "$deb" "$MTA_PKGROOT/root"; done
    find "$MTA_PKGROOT/root" -type f -perm /6000 -exec chmod ug-s {} +
    chmod 755 "$MTA_PKGROOT/root"
    want=$(apt-cache policy "${MTA_DEBS[@]}" 2>/dev/null | grep Candidate | tr -s ' ' | tr '\n' ' ')
    echo "$want" >"$stamp"
}

mta_install() {
    apt_install "${MTA_APT[@]}"
    mta_extract
}

# ---------------------------------------------------------------------------------------
# the mail store

# new_store DIR OWNER: a SQLite store DIR/db/mail.db (schema of examples/sqlite/schema.sql)
# with mailboxes alice@example.com, info@example.com and a config DIR/odbc_mail.ini made
# from examples/sqlite/virt_mail.ini (DSN pointed at the file, MaxMessageSize 100000), both
# owned by OWNER, config mode 600 as the manual demands. Pass another ini as $3 to use it.
new_store() {
    local dir=$1 owner=$2 ini=${3:-$MTA_REPO/examples/sqlite/virt_mail.ini} cfg=${4:-$1/odbc_mail.ini}
    mkdir -p "$dir/db"
    sqlite3 "$dir/db/mail.db" <"$MTA_REPO/examples/sqlite/schema.sql"
    sqlite3 "$dir/db/mail.db" "INSERT INTO mailbox (local, domain) VALUES
        ('alice', 'example.com'), ('info', 'example.com');"
    sed -e "s|^DSN *=.*|DSN = sqlite:$dir/db/mail.db|" \
        -e "s|^MaxMessageSize *=.*|MaxMessageSize = 100000|" "$ini" >"$cfg"
    grep -q '^MaxMessageSize' "$cfg" || die "$ini has no MaxMessageSize line"
    chown -R "$owner" "$dir/db" "$cfg"
    chmod 700 "$dir/db"
    chmod 600 "$cfg"
}

sql() { sqlite3 -cmd ".timeout 10000" "$STORE_DB" "$@"; }

# stored_count TOKEN: rows whose body contains TOKEN
stored_count() { sql "SELECT count(*) FROM message WHERE instr(CAST(body AS TEXT), '$1') > 0;"; }

# wait_stored TOKEN N: wait until N rows contain TOKEN (then a little longer, to catch a
# second copy); prints the count
wait_stored() {
    local i n
    for ((i = 0; i < MTA_WAIT * 4; i++)); do
        n=$(stored_count "$1")
        ((n >= $2)) && break
        sleep 0.25
    done
    sleep 1
    stored_count "$1"
}

# stored_body TOKEN FILE: write the stored message containing TOKEN to FILE
stored_body() {
    sql "SELECT writefile('$2', body) FROM message WHERE instr(CAST(body AS TEXT), '$1') > 0 LIMIT 1;" >/dev/null
}

# body_intact MSGFILE STOREDFILE: the body of MSGFILE (after its first empty line) is, byte
# for byte, the body of the stored message (which has the MTA's header lines in front)
body_intact() {
    cmp -s <(sed '1,/^$/d' "$1") <(sed '1,/^$/d' "$2")
}

# header_lines_missing MSGFILE STOREDFILE: the header lines of MSGFILE not found, as whole
# lines, in the header of STOREDFILE
header_lines_missing() {
    local l
    while IFS= read -r l; do
        [[ -z $l ]] && break
        sed '/^$/q' "$2" | grep -qFx -- "$l" || printf '%s\n' "$l"
    done <"$1"
}

# has_header FILE NAME...: every header NAME is in the header of FILE
has_header() {
    local f=$1 h
    shift
    for h in "$@"; do sed '/^$/q' "$f" | grep -qi "^$h:" || { log "no $h: header in $f"; return 1; }; done
}

# tables_intact: both tables still there, the two mailboxes unchanged
tables_intact() {
    [[ $(sql "SELECT group_concat(local || '@' || domain, ',') FROM (SELECT * FROM mailbox ORDER BY id);") == \
        "alice@example.com,info@example.com" ]] && sql "SELECT count(*) FROM message;" >/dev/null
}

# ---------------------------------------------------------------------------------------
# messages

# make_message FILE TOKEN [EXTRA-BODY-BYTES]: a test message (LF line ends; swaks sends
# CRLF) whose body exercises SMTP transparency: a leading dot, tabs, trailing blanks, empty
# lines, a long line.
make_message() {
    local f=$1 tok=$2 extra=${3:-0}
    {
        printf 'From: Tester <tester@bounce.test>\n'
        printf 'To: <rcpt@example.com>\n'
        printf 'Subject: virt_mail MTA test %s\n' "$tok"
        printf 'Message-ID: <%s@mta-test.invalid>\n' "$tok"
        printf 'Date: %s\n' "$(LC_ALL=C date -R)"
        printf '\n'
        printf 'Body of %s.\n' "$tok"
        printf '.a line that starts with a dot\n'
        printf '..two dots\n'
        printf '\tindented with a tab, trailing blanks   \n'
        printf '\n\n'
        printf 'long: %s\n' "$(printf 'x%.0s' {1..300})"
        if ((extra > 0)); then
            local i
            for ((i = 0; i < extra / 76 + 1; i++)); do printf '%075d\n' "$i"; done
        fi
        printf 'end of %s\n' "$tok"
    } >"$f"
}

# send PORT FROM TO FILE [swaks options...]: inject FILE over SMTP; swaks output in
# FILE.swaks. swaks sends CRLF "." CRLF after the data, so the data it gets is FILE without
# its last newline: the message on the wire is then exactly FILE.
send() {
    local port=$1 from=$2 to=$3 file=$4
    shift 4
    head -c -1 "$file" >"$file.wire"
    swaks --server 127.0.0.1 --port "$port" --helo mta-test.invalid --from "$from" --to "$to" \
        --data @"$file.wire" --timeout 30 "$@" >"$file.swaks" 2>&1
}

# ---------------------------------------------------------------------------------------
# bounce sink: every MTA routes mail for the sender domain bounce.test to SINK/sink.sh,
# which stores each message in its own file in SINK/box/.

make_sink() {
    local dir=$1 owner=$2
    mkdir -p "$dir/box"
    cat >"$dir/sink.sh" <<EOF
#!/bin/sh
umask 022
cat > "$dir/box/msg.\$(date +%s.%N).\$\$"
EOF
    chmod 755 "$dir/sink.sh"
    chown "$owner" "$dir/box"
}

# wait_bounce SINKDIR PATTERN: wait for a message in the sink that contains PATTERN (fixed
# string); prints its file name
wait_bounce() {
    local i f
    for ((i = 0; i < MTA_WAIT * 4; i++)); do
        f=$(grep -lF -- "$2" "$1"/box/msg.* 2>/dev/null | head -1)
        [[ -n $f ]] && { echo "$f"; return 0; }
        sleep 0.25
    done
    return 1
}

# wait_until SECONDS COMMAND...: poll COMMAND until it succeeds
wait_until() {
    local t=$1 i
    shift
    for ((i = 0; i < t * 4; i++)); do
        "$@" && return 0
        sleep 0.25
    done
    return 1
}

# wait_port PORT: until something listens on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { wait_until 30 port_open "$1"; }

# hostile senders used by case 5 of every MTA; MARKER is the file none of them may create
HOSTILE_MARKER=/tmp/PWNED
HOSTILE_SENDERS=(
    'x$(touch${IFS}/tmp/PWNED)@example.org'
    "a'b;c@example.org"
    '`touch${IFS}/tmp/PWNED`@example.org'
    '"a b;touch /tmp/PWNED;"@example.org'
    '"x$(touch${IFS}/tmp/PWNED)"@example.org'
)

# substitute FILE SED-EXPRESSIONS...: print an example with paths/ports replaced
substitute() {
    local f=$1
    shift
    local args=() e
    for e in "$@"; do args+=(-e "$e"); done
    sed "${args[@]}" "$f"
}
