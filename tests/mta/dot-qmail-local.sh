#!/usr/bin/env bash
# A stand-in for qmail-local(8) (and, with --courier, for courier's local delivery of
# dot-courier(5) files), for the tests of virt_mail's qmail/courier modes: qmail is not
# packaged for Debian 12, and courier-mta cannot run as a private instance (see
# tests/mta/courier.sh). It reproduces the documented contract a .qmail / .courier program
# line sees, nothing more:
#
#   dot-qmail-local.sh [--courier] [--as ACCOUNT] USER HOMEDIR LOCAL DASH EXT DOMAIN SENDER
#
# as qmail-local's arguments (the message on standard input). It copies the message to a
# file (qmail-local's input is the seekable queue file), picks the delivery file as
# dot-qmail(5) says (.qmail when EXT is empty, else .qmail-EXT, then .qmail-...-default down
# to .qmail-default, lower case, "." as ":"), and runs its lines in order:
#   # comment
#   |command   /bin/sh -c command, in HOMEDIR, standard input the message file from its
#              start, environment (qmail-command(8)): SENDER NEWSENDER RECIPIENT USER HOME
#              HOST HOST2-4 LOCAL EXT EXT2-4 DEFAULT DTLINE RPLINE UFLINE (+ PATH)
#   ./dir/ or /dir/  maildir;  ./file or /file  mbox (UFLINE, RPLINE, DTLINE, message)
# (forwards are not supported: exit 111). With --as, commands run as that account
# (setpriv), as qmail-local runs as the recipient.
#
# A command's exit status: qmail: 0 next line, 99 delivered and stop, 100 and 64 65 70 76 77
# 78 112 bounce, anything else retry. courier: the same except that 64 65 67 68 69 70 76 77
# 78 100 112 bounce. The script's own exit status is qmail-local's: 0 delivered, 100 bounce,
# 111 retry later; command output is passed on (it is what the bounce quotes).
set -u
flavor=qmail
as=
while [[ ${1:-} == --* ]]; do
    case $1 in
    --courier) flavor=courier; shift ;;
    --as) as=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 111 ;;
    esac
done
(($# == 7)) || { echo "usage: $0 [--courier] [--as ACCOUNT] user homedir local dash ext domain sender" >&2; exit 111; }
user=$1 home=$2 local=$3 dash=$4 ext=$5 domain=$6 sender=$7
dot=.qmail
[[ $flavor == courier ]] && dot=.courier

msg=$(mktemp /tmp/dot-qmail-local.XXXXXX) || exit 111
trap 'rm -f "$msg"' EXIT
cat >"$msg" || { echo "cannot read the message" >&2; exit 111; }
chmod 644 "$msg"

# the delivery file
file='' default=''
if [[ -z $ext && -z $dash ]]; then
    [[ -e $home/$dot ]] && file=$home/$dot
else
    e=$(printf '%s' "$ext" | tr 'A-Z.' 'a-z:')
    if [[ -e $home/$dot$dash$e ]]; then
        file=$home/$dot$dash$e
    else
        # foo-bar-baz: .qmail-foo-bar-default, .qmail-foo-default, .qmail-default
        rest=$e
        while :; do
            if [[ $rest == *-* ]]; then rest=${rest%-*}; cand=$dot$dash$rest-default; else cand=$dot${dash}default; fi
            if [[ -e $home/$cand ]]; then
                file=$home/$cand
                if [[ $cand == "$dot${dash}default" ]]; then default=$ext; else default=${ext:${#rest}+1}; fi
                break
            fi
            [[ $cand == "$dot${dash}default" ]] && break
        done
    fi
fi
if [[ -z $file ]]; then
    echo "Sorry, no mailbox here by that name. (#5.1.1)"
    exit 100
fi

recipient=$local@$domain
ufsender=${sender:-MAILER-DAEMON}
export SENDER=$sender NEWSENDER=$sender RECIPIENT=$recipient USER=$user HOME=$home
export HOST=$domain LOCAL=$local EXT=$ext DEFAULT=$default
export EXT2='' EXT3='' EXT4='' HOST2='' HOST3='' HOST4=''
[[ $ext == *-* ]] && EXT2=${ext#*-}
[[ $EXT2 == *-* ]] && EXT3=${EXT2#*-}
[[ $EXT3 == *-* ]] && EXT4=${EXT3#*-}
[[ $domain == *.* ]] && HOST2=${domain%.*}
[[ $HOST2 == *.* ]] && HOST3=${HOST2%.*}
[[ $HOST3 == *.* ]] && HOST4=${HOST3%.*}
export DTLINE="Delivered-To: $recipient"$'\n'
export RPLINE="Return-Path: <$sender>"$'\n'
export UFLINE="From $ufsender $(LC_ALL=C date '+%a %b %e %H:%M:%S %Y')"$'\n'
export PATH=/usr/local/bin:/usr/bin:/bin
[[ $flavor == courier ]] && unset NEWSENDER

hard_codes=" 64 65 70 76 77 78 100 112 "
[[ $flavor == courier ]] && hard_codes=" 64 65 67 68 69 70 76 77 78 100 112 "

run_as() {
    if [[ -n $as ]]; then
        setpriv --reuid="$as" --regid="$(id -g "$as")" --init-groups "$@"
    else
        "$@"
    fi
}

delivered=0
while IFS= read -r line || [[ -n $line ]]; do
    case $line in
    '' | '#'*) continue ;;
    '|'*)
        (cd "$home" && run_as /bin/sh -c "${line#|}" <"$msg")
        rc=$?
        if ((rc == 0)); then
            delivered=1
        elif ((rc == 99)); then
            exit 0
        elif [[ $hard_codes == *" $rc "* ]]; then
            echo "($flavor harness: command exited $rc: permanent failure)"
            exit 100
        else
            echo "($flavor harness: command exited $rc: temporary failure)"
            exit 111
        fi
        ;;
    '.'* | '/'*)
        path=$line
        [[ $path == /* ]] || path=$home/${path#./}
        if [[ $path == */ || -d $path ]]; then
            f=$path/new/$(date +%s).$$_$RANDOM.$(hostname)
            run_as sh -c 'umask 077; { printf "%s%s" "$RPLINE" "$DTLINE"; cat; } > "$1.tmp" && mv "$1.tmp" "$1"' sh "$f" <"$msg" ||
                { echo "maildir delivery to $path failed"; exit 111; }
        else
            run_as sh -c 'umask 077; { printf "%s%s%s" "$UFLINE" "$RPLINE" "$DTLINE"; cat; echo; } >> "$1"' sh "$path" <"$msg" ||
                { echo "mbox delivery to $path failed"; exit 111; }
        fi
        delivered=1
        ;;
    *)
        echo "($flavor harness: forwarding is not supported: $line)"
        exit 111
        ;;
    esac
done <"$file"
((delivered)) && exit 0
echo "($flavor harness: $file has no delivery instruction)"
exit 111
