#!/usr/bin/env bash
# End-to-end MTA tests: real MTAs from Debian's packages hand mail injected with swaks over
# SMTP on 127.0.0.1 to virt_mail, which stores it in a SQLite store; every case is checked and
# reported as a PASS/FAIL line, then as a table. Exits non-zero on any failure.
#
#   scripts/mta-test.sh                  all of them: postfix exim procmail sendmail qmail courier
#   scripts/mta-test.sh postfix exim     only these
#   VIRT_MAIL_BIN=/path/to/virt_mail scripts/mta-test.sh
#                                        test that binary (default: the build to install,
#                                        from scripts/build-release.sh)
#
# Needs root (apt-get, MTA daemons, delivery users) on Debian 12.
#
# How the MTAs run (they conflict when installed as the system MTA, so none is installed):
#   postfix, exim4, sendmail are fetched with `apt-get download` and unpacked with `dpkg -x`
#   into a private tree ($MTA_PKGROOT, default /var/tmp/virt_mail-mta-pkgs; reused while the
#   package versions stay the same). dpkg never hears of them: no maintainer script runs and
#   apt's state is untouched whatever happens. Each
#   daemon runs from that tree with its own configuration, spool and log in a temporary
#   directory ($MTA_RUN, default /var/lib/virt_mail-mta/run.XXXXXX), listening on 127.0.0.1 only, on
#   ports $MTA_PORT_BASE+1.. (default 25251-25254); every daemon is stopped on exit. What is
#   installed for real with apt-get: swaks, sqlite3, procmail (not an MTA), m4 (sendmail's cf
#   build), and the shared libraries the unpacked MTAs link against. The accounts the
#   packages would create are created if missing: postfix (user) and postdrop (group) for
#   Postfix, Debian-exim for Exim (the binary is built to run as it); deliveries run as the
#   existing users mail (Postfix, Exim), root (sendmail's Mlocal has the S flag), nobody.
#   Two things outside the private tree, both undone on exit: Exim re-executes itself for
#   each delivery from processes running as Debian-exim, which keep the root privilege they
#   need for a -C configuration only if it is listed in the binary's TRUSTED_CONFIG_LIST,
#   /etc/exim4/trusted_configs: the test lists its file there (and makes the file if it has
#   to) while Exim runs, and exim4 in the tree is set-uid root only meanwhile. sendmail
#   sleeps 60 s per start on a machine whose host name has no dot, so it runs in a UTS
#   namespace of its own (unshare -u) named mta-test.localdomain.
#   procmail is driven by procmail itself: a private Exim instance runs it as the MDA of
#   example.com, with HOME pointing at a directory holding examples/mta/procmail/procmailrc.
#   qmail (not packaged for Debian 12) and courier (courier-mta cannot run privately; see
#   tests/mta/courier.sh) go through tests/mta/dot-qmail-local.sh, which reproduces
#   qmail-local's documented contract for .qmail / .courier program lines.
# The snippets in examples/mta/ are what the tests use: they are copied into the private
#   configurations with only paths and ports replaced.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
started=$(date +%s)

if [[ $(id -u) != 0 ]]; then
    echo "scripts/mta-test.sh must run as root (apt-get, MTA daemons)" >&2
    exit 1
fi

all=(postfix exim procmail sendmail qmail courier)
if (($#)); then suites=("$@"); else suites=("${all[@]}"); fi
for s in "${suites[@]}"; do
    [[ -f tests/mta/$s.sh ]] || { echo "no such MTA suite: $s (have: ${all[*]})" >&2; exit 64; }
done

if [[ -z ${VIRT_MAIL_BIN:-} ]]; then
    echo "== scripts/build-release.sh (the build to install)"
    VIRT_MAIL_BIN=$(scripts/build-release.sh --quiet | tail -n 1) || exit 1
fi
[[ -x $VIRT_MAIL_BIN ]] || { echo "VIRT_MAIL_BIN=$VIRT_MAIL_BIN is not executable" >&2; exit 1; }

export MTA_REPO=$PWD
# not under /tmp: sendmail refuses maps and programs below a world-writable directory
export MTA_RUN_BASE=${MTA_RUN_BASE:-/var/lib/virt_mail-mta}
mkdir -p "$MTA_RUN_BASE" && chmod 755 "$MTA_RUN_BASE"
# keep the last few runs' logs and stores for a look; older ones go
ls -1dt "$MTA_RUN_BASE"/run.* 2>/dev/null | tail -n +4 | xargs -r rm -rf
MTA_RUN=$(mktemp -d "$MTA_RUN_BASE/run.XXXXXX")
chmod 755 "$MTA_RUN"
export MTA_RUN MTA_RESULTS=$MTA_RUN/results
export MTA_PKGROOT=${MTA_PKGROOT:-/var/tmp/virt_mail-mta-pkgs}
export MTA_PORT_BASE=${MTA_PORT_BASE:-25250}
# virt_mail is copied where the unprivileged delivery users can run it
mkdir -p "$MTA_RUN/bin"
install -m 755 "$VIRT_MAIL_BIN" "$MTA_RUN/bin/virt_mail"
export VIRT_MAIL=$MTA_RUN/bin/virt_mail
: >"$MTA_RESULTS"
# shellcheck source=tests/mta/lib.sh
source tests/mta/lib.sh

echo "== install: apt-get (swaks sqlite3 procmail m4 + libraries), dpkg -x of the MTA packages"
t0=$(date +%s)
mta_install || { echo "install failed" >&2; exit 1; }
echo "   done in $(($(date +%s) - t0)) s"

# On the way out, whatever happened: stop what a suite may have left running (each suite stops
# its own daemons in its EXIT trap; this catches a suite that was killed), by process id,
# only processes whose command line names this run's private directory.
child=
# live_pids DIR: the daemons whose pid files lie under DIR (Postfix's master and sendmail
# rename themselves, so their command lines do not name the directory), and processes whose
# command line does
live_pids() {
    local f p
    for f in $(find "$1" \( -name '*.pid' -o -name master.pid \) -type f 2>/dev/null); do
        p=$(head -1 "$f" | tr -d ' ')
        [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null && echo "$p"
    done
    pgrep -f -- "$1/" | grep -vx "$$"
    return 0
}
# alive PIDS...: those of PIDS that are running (not zombies waiting to be reaped)
alive() {
    local p
    for p in "$@"; do
        [[ $(ps -o stat= -p "$p" 2>/dev/null) == [!Z]* ]] && echo "$p"
    done
    return 0
}
cleanup() {
    [[ -n $child ]] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
    local pids
    pids=$(live_pids "$MTA_RUN")
    [[ -n $pids ]] && kill $pids 2>/dev/null
    [[ -f /etc/exim4/trusted_configs ]] && sed -i "\\|^$MTA_RUN_BASE/run\\.[^/]*/|d" /etc/exim4/trusted_configs
    [[ -f $MTA_PKGROOT/root/usr/sbin/exim4 ]] && chmod u-s "$MTA_PKGROOT/root/usr/sbin/exim4"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for s in "${suites[@]}"; do
    echo
    echo "== $s ($(date +%T))"
    t0=$(date +%s)
    bash "tests/mta/$s.sh" &
    child=$!
    wait "$child"
    rc=$?
    child=''
    # a daemon that outlived its suite is a failure too
    sleep 1
    left=$(alive $(live_pids "$MTA_RUN/$s"))
    if [[ -n $left ]]; then
        result FAIL "$s" "daemons stopped" "still running: $(ps -o pid=,args= -p $(echo $left | tr ' ' ',') | head -3 | tr '\n' ' ')"
        kill $left 2>/dev/null
    else
        result PASS "$s" "daemons stopped"
    fi
    if ((rc != 0)) && ! grep -q "^FAIL|$s|" "$MTA_RESULTS"; then
        result FAIL "$s" "suite script" "exited $rc"
    fi
    echo "   $s: $(($(date +%s) - t0)) s"
done

# the daemons are gone and /tmp/PWNED was never made
echo
echo "== PASS/FAIL"
printf '%-4s  %-9s  %s\n' RES MTA CASE
awk -F'|' '{ printf "%-4s  %-9s  %s%s\n", $1, $2, $3, ($4 != "" ? "  [" $4 "]" : "") }' "$MTA_RESULTS"
npass=$(grep -c '^PASS|' "$MTA_RESULTS")
nfail=$(grep -c '^FAIL|' "$MTA_RESULTS")
echo
echo "mta: $npass passed, $nfail failed"
echo "time: $(($(date +%s) - started)) s; logs and stores in $MTA_RUN"
((nfail == 0 && npass > 0))
