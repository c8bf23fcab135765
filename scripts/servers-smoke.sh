#!/usr/bin/env bash
# scripts/servers-smoke.sh — owns the end-to-end check of scripts/servers.sh:
# start everything, connect to each server with its own client and through
# every listed ODBC DSN, crash-and-restart each server, then stop. Exits
# non-zero on the first failure. Usage: scripts/servers-smoke.sh [--keep]
# (--keep leaves the servers running at the end).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
servers=$here/servers.sh
keep=0
[[ ${1:-} == --keep ]] && keep=1
step() { printf '\n[smoke] %s\n' "$*"; }

step "install + start"
"$servers" install
"$servers" start

# shellcheck source=/dev/null
source "${VM_RUN_DIR:-/tmp/virt_mail-servers}/env.sh"
[[ $VIRT_MAIL_TEST_SERVERS == "pg pgbouncer mariadb virtuoso odbc" ]] || { echo "servers up: '$VIRT_MAIL_TEST_SERVERS'" >&2; exit 1; }

check_clients() {
  psql "$VIRT_MAIL_TEST_PG_URL" -X -At -c 'select 1'
  PGPASSWORD=virtpw psql -X -At -h "$VIRT_MAIL_TEST_PG_SOCKET_DIR" -p "$VIRT_MAIL_TEST_PG_PORT" -U virt mail -c 'select 1'
  psql "$VIRT_MAIL_TEST_PGBOUNCER_URL" -X -At -c 'select 1'
  mariadb -h127.0.0.1 -P"$VIRT_MAIL_TEST_MYSQL_PORT" -uvirt -pvirtpw mail -N -e 'select 1'
  mariadb -S "$VIRT_MAIL_TEST_MYSQL_SOCKET" -uvirt -pvirtpw mail -N -e 'select 1'
  isql-vt "$VIRT_MAIL_TEST_VIRTUOSO_HOST" dba dba exec='select 1;' | grep -qx 1
  local d
  for d in $VIRT_MAIL_TEST_ODBC_DSNS; do echo 'select 1' | isql -b "$d" >/dev/null; done
  echo 'select 1' | isql -b -d'|' "$VIRT_MAIL_TEST_ODBC_VIRTUOSO_DSN" dba dba | grep -qx 1
}
step "clients (ODBC DSNs: $VIRT_MAIL_TEST_ODBC_DSNS + $VIRT_MAIL_TEST_ODBC_VIRTUOSO_DSN)"
check_clients

step "persistence across a crash: write, SIGKILL, restart, read"
psql "$VIRT_MAIL_TEST_PG_URL" -X -q -c 'create table if not exists smoke (v int); insert into smoke values (1)'
mariadb -h127.0.0.1 -P"$VIRT_MAIL_TEST_MYSQL_PORT" -uvirt -pvirtpw mail -e 'create table if not exists smoke (v int); insert into smoke values (1)'
isql-vt "$VIRT_MAIL_TEST_VIRTUOSO_HOST" dba dba exec="create table DB.DBA.SMOKE (V int); insert into DB.DBA.SMOKE values (1);" >/dev/null 2>&1 \
  || isql-vt "$VIRT_MAIL_TEST_VIRTUOSO_HOST" dba dba exec="insert into DB.DBA.SMOKE values (1);" >/dev/null
"$servers" kill pg mariadb virtuoso
"$servers" status
"$servers" start pg mariadb virtuoso
[[ $(psql "$VIRT_MAIL_TEST_PG_URL" -X -At -c 'select count(*) > 0 from smoke') == t ]]
[[ $(mariadb -h127.0.0.1 -P"$VIRT_MAIL_TEST_MYSQL_PORT" -uvirt -pvirtpw mail -N -e 'select count(*) > 0 from smoke') == 1 ]]
isql-vt "$VIRT_MAIL_TEST_VIRTUOSO_HOST" dba dba exec='select count(*) from DB.DBA.SMOKE;' | grep -qx '[1-9][0-9]*'
check_clients

step "restart"
"$servers" restart
check_clients
"$servers" status

if ((keep)); then
  step "servers left running (--keep)"
else
  step "stop"
  "$servers" stop
  "$servers" status
fi
step "OK"
