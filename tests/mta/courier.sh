#!/usr/bin/env bash
# courier: the .courier line of examples/mta/courier/dot-courier (virt_mail -mcourier, then
# ./Maildir/) through tests/mta/dot-qmail-local.sh --courier, which follows dot-courier(5):
# the qmail-style environment (LOCAL HOST SENDER DTLINE RPLINE UFLINE ...), exit 0 = go on to
# the next line, 99 = delivered and stop, 64 65 67 68 69 70 76 77 78 100 112 = bounce, any
# other = retry the whole file later.
#
# Why not the real courier-mta (packaged for Debian 12): it cannot run as a private
# instance. Its directories (/etc/courier, /var/spool/courier, /usr/lib/courier, the
# authdaemon socket) are compiled in, with no -C style option, so a dpkg -x tree cannot be
# pointed at a private configuration; installing it makes it the system MTA (Provides and
# Conflicts mail-transport-agent), its maintainer scripts ask debconf questions and start
# courierd, courier-authdaemon and courier-authlib-userdb, and local delivery to
# ~/.courier needs a real account known to authdaemon. That is the "installed system MTA"
# the brief rules out, for a contract (the .courier program line and its exit codes) that
# the harness reproduces from the manual.
FLAVOR=courier exec bash "$(dirname "$0")/qmail.sh"
