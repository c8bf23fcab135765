#!/usr/bin/env bash
# scripts/servers.sh — owns the real database servers used by virt_mail's
# integration tests and benchmarks: PostgreSQL 15 (and PgBouncer in front of it),
# MariaDB 10.11, Virtuoso 7, plus a private unixODBC configuration (DSNs for SQLite/PostgreSQL/MariaDB/
# Virtuoso). It installs them (apt), starts them on 127.0.0.1 (and a unix socket
# where the server has one) under $VM_RUN_DIR, provisions database `mail` and
# user virt/virtpw, writes $VM_RUN_DIR/env.sh for the tests, and stops them by
# PID. Nothing here touches the system instances (/var/lib/..., default ports).
#
# Usage: scripts/servers.sh COMMAND [NAME...]     NAME: pg pgbouncer mariadb virtuoso odbc
#   install            apt-get install the servers, clients and ODBC drivers
#   start              start (reusing healthy data dirs), provision, write env.sh
#   stop [--purge]     SIGTERM (SIGKILL after $VM_STOP_TIMEOUT s); --purge deletes data
#   status             one line per server: up/down, pid, port
#   restart            stop + start
#   kill               SIGKILL (crash simulation for fault tests); data is kept
#   purge              stop and delete the server dirs (all: the whole run dir)
# Environment: VM_RUN_DIR (/tmp/virt_mail-servers), VM_PG_PORT (15432),
#   VM_PGBOUNCER_PORT (VM_PG_PORT + 1; PgBouncer listens on a unix socket only),
#   VM_MARIADB_PORT (13306), VM_VIRTUOSO_PORT (11111), VM_VIRTUOSO_HTTP_PORT
#   (0 = Virtuoso HTTP off; e.g. 18890), VM_START_TIMEOUT (60), VM_STOP_TIMEOUT (30).
# Every default port lies below Linux's ephemeral range (32768-60999): a port in it can be
# taken for a moment by any outgoing connection's local end, and the server then cannot bind.
# Tests: source "$VM_RUN_DIR/env.sh"
set -euo pipefail

VM_RUN_DIR=$(realpath -m "${VM_RUN_DIR:-/tmp/virt_mail-servers}")
VM_PG_PORT=${VM_PG_PORT:-15432}
VM_PGBOUNCER_PORT=${VM_PGBOUNCER_PORT:-$((VM_PG_PORT + 1))}
VM_MARIADB_PORT=${VM_MARIADB_PORT:-13306}
VM_VIRTUOSO_PORT=${VM_VIRTUOSO_PORT:-11111}
VM_VIRTUOSO_HTTP_PORT=${VM_VIRTUOSO_HTTP_PORT:-0}
VM_START_TIMEOUT=${VM_START_TIMEOUT:-60}
VM_STOP_TIMEOUT=${VM_STOP_TIMEOUT:-30}

ALL_SERVERS=(pg pgbouncer mariadb virtuoso odbc)
RUN_DIR_MARKER=.created-by-virt_mail-servers.sh
DB_NAME=mail DB_USER=virt DB_PASS=virtpw
PG_BIN=/usr/lib/postgresql/15/bin
APT_PACKAGES=(
  postgresql-15 postgresql-client-15 pgbouncer
  mariadb-server mariadb-client
  virtuoso-opensource-7 virtuoso-opensource-7-bin libvirtodbc0
  unixodbc unixodbc-dev odbcinst libsqliteodbc odbc-postgresql odbc-mariadb sqlite3
  # not servers, but installed the same way (no service started): Dovecot's doveadm reads
  # what the Maildir tests deliver; GNU time gives the benchmark its RSS column; musl-gcc
  # builds SQLite for the musl build that scripts/build-release.sh makes; strace shows
  # the WAL directory test (tests/it/durability.rs) what SQLite asks the kernel
  dovecot-core time musl-tools strace
)

# ---------------------------------------------------------------- helpers ---
log()  { printf '[servers] %s\n' "$*"; }
warn() { printf '[servers] WARNING: %s\n' "$*" >&2; }
die()  { printf '[servers] ERROR: %s\n' "$*" >&2; exit 1; }
now()  { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_of() {
  case $1 in
    pg) echo "$VM_PG_PORT" ;;
    pgbouncer) echo "$VM_PGBOUNCER_PORT" ;;
    mariadb) echo "$VM_MARIADB_PORT" ;;
    virtuoso) echo "$VM_VIRTUOSO_PORT" ;;
    *) echo - ;;
  esac
}
address_of() {
  if [[ $1 == pgbouncer ]]; then echo "$(PGBOUNCER_DIR)/.s.PGSQL.$VM_PGBOUNCER_PORT"; else echo "127.0.0.1:$(port_of "$1")"; fi
}
# The executable name each server's PID must have (guards against PID reuse).
comm_of() {
  case $1 in pg) echo postgres ;; pgbouncer) echo pgbouncer ;; mariadb) echo mariadbd ;; virtuoso) echo virtuoso-t ;; esac
}

pid_file() { echo "$VM_RUN_DIR/$1/server.pid"; }
read_pid() {
  local f; f=$(pid_file "$1")
  if [[ -s $f ]]; then head -n1 "$f"; fi
}
# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
  local state
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}
# wait_gone PID: wait until PID has exited. Its zombie may linger ~1 s until
# init reaps it (kill -0 still succeeds then); pg_launch copes with that.
wait_gone() { while pid_alive "$1"; do sleep 0.05; done; }
# is_running NAME: the PID in NAME's pid file is alive and is that server.
is_running() {
  local pid; pid=$(read_pid "$1")
  pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$(comm_of "$1")" ]]
}
# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# launch NAME LOG CMD...: run CMD detached in its own session (so it is its own
# process-group leader and survives this script) and record its PID. setsid
# does not fork here (a non-interactive shell's background job is not a group
# leader), so $! is the server's own PID.
launch() {
  local name=$1 logf=$2; shift 2
  printf '\n==== %s servers.sh: %s\n' "$(date -Is)" "$*" >>"$logf"
  setsid "$@" </dev/null >>"$logf" 2>&1 9>&- &
  echo "$!" >"$(pid_file "$name")"
}

show_log_tail() {
  local logf=$1
  [[ -f $logf ]] || return 0
  printf '[servers] ---- last 40 lines of %s ----\n' "$logf" >&2
  tail -n 40 "$logf" >&2 || true
  printf '[servers] ---- end of %s ----\n' "$logf" >&2
}

# wait_ready NAME: poll NAME's readiness check until it passes; returns 1 (after
# printing the log tail) if the process dies or $VM_START_TIMEOUT expires.
wait_ready() {
  local name=$1 logf=$VM_RUN_DIR/$1/server.log deadline=$((SECONDS + VM_START_TIMEOUT))
  until "${name}_ready" >/dev/null 2>&1; do
    if ! pid_alive "$(read_pid "$name")"; then
      printf '[servers] ERROR: %s exited during startup\n' "$name" >&2
      show_log_tail "$logf"; return 1
    fi
    if ((SECONDS >= deadline)); then
      printf '[servers] ERROR: %s (pid %s) did not accept connections on 127.0.0.1:%s within %ss\n' \
        "$name" "$(read_pid "$name")" "$(port_of "$name")" "$VM_START_TIMEOUT" >&2
      show_log_tail "$logf"; return 1
    fi
    sleep 0.2
  done
}

# signal_server NAME SIG: send SIG to the server's process group (it is a
# group leader, see launch), falling back to the PID alone.
signal_server() {
  local pid; pid=$(read_pid "$1")
  pid_alive "$pid" || return 0
  if [[ $(ps -o pgid= -p "$pid" | tr -d ' ') == "$pid" ]]; then
    kill "-$2" -- "-$pid" 2>/dev/null || true
  else
    kill "-$2" "$pid" 2>/dev/null || true
  fi
}

# stop_pid NAME: graceful stop by PID file, SIGKILL after $VM_STOP_TIMEOUT s.
stop_pid() {
  local name=$1 pid sig=TERM deadline
  pid=$(read_pid "$name")
  if ! is_running "$name"; then
    rm -f "$(pid_file "$name")"; return 0
  fi
  # postgres: SIGTERM is "smart" shutdown (waits for every client to leave);
  # SIGINT is "fast" shutdown (disconnects clients, checkpoints, exits).
  [[ $name == pg ]] && sig=INT
  kill "-$sig" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + VM_STOP_TIMEOUT))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if pid_alive "$pid"; then
    warn "$name (pid $pid) still running after ${VM_STOP_TIMEOUT}s; sending SIGKILL"
    signal_server "$name" KILL
  fi
  wait_gone "$pid"
  rm -f "$(pid_file "$name")"
}

need_root() { [[ $EUID -eq 0 ]] || die "$1 must run as root (it uses apt-get / runuser)"; }
need_cmd()  { command -v "$1" >/dev/null 2>&1 || [[ -x $1 ]] || die "$1 not found; run: scripts/servers.sh install"; }

# ------------------------------------------------------------------ env.sh ---
# Each server writes $VM_RUN_DIR/env.d/NAME.sh; env.sh is their concatenation
# (fixed order) plus VIRT_MAIL_TEST_SERVERS, so starting a subset keeps the
# other servers' lines.
write_env() {
  local n up=() tmp
  mkdir -p "$VM_RUN_DIR/env.d"
  tmp=$(mktemp "$VM_RUN_DIR/env.sh.XXXXXX")
  {
    echo "# Generated by scripts/servers.sh on $(date -Is). Source it: . $VM_RUN_DIR/env.sh"
    echo "export VM_RUN_DIR=$VM_RUN_DIR"
    for n in "${ALL_SERVERS[@]}"; do
      if [[ -f $VM_RUN_DIR/env.d/$n.sh ]]; then cat "$VM_RUN_DIR/env.d/$n.sh"; up+=("$n"); fi
    done
    echo "export VIRT_MAIL_TEST_SERVERS=\"${up[*]}\""
  } >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$VM_RUN_DIR/env.sh"
}

# ----------------------------------------------------------------- install ---
POLICY_RC_D=/usr/sbin/policy-rc.d
policy_rc_d_block() {
  if [[ -e $POLICY_RC_D && ! -e $POLICY_RC_D.vm-saved ]]; then cp -p "$POLICY_RC_D" "$POLICY_RC_D.vm-saved"; fi
  printf '#!/bin/sh\n# temporary, written by virt_mail scripts/servers.sh install\nexit 101\n' >"$POLICY_RC_D"
  chmod 755 "$POLICY_RC_D"
}
policy_rc_d_restore() {
  if [[ -e $POLICY_RC_D.vm-saved ]]; then mv -f "$POLICY_RC_D.vm-saved" "$POLICY_RC_D"; else rm -f "$POLICY_RC_D"; fi
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# A package's postinst may have started a system instance despite policy-rc.d:
# stop it by its own PID file (never by process name).
stop_system_daemons() {
  local f pid
  for f in /run/postgresql/15-main.pid /run/postgresql/pgbouncer.pid /run/mysqld/mysqld.pid /var/lib/virtuoso-opensource-7/db/virtuoso.lck; do
    [[ -s $f ]] || continue
    pid=$(grep -o '[0-9]\+' "$f" | head -n1 || true)
    if pid_alive "$pid"; then
      warn "a system daemon (pid $pid, $f) was started by a package; stopping it"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 150); do pid_alive "$pid" || break; sleep 0.2; done
      if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  done
}

cmd_install() {
  need_root install
  local p missing=()
  for p in "${APT_PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "install: all ${#APT_PACKAGES[@]} packages already installed"
  else
    log "install: installing ${missing[*]}"
    # No debconf prompts: empty Virtuoso dba password (the postinst then keeps
    # the default dba/dba and disables the system daemon), no system DSN.
    debconf-set-selections <<'EOF'
virtuoso-opensource-7 virtuoso-opensource-7/dba-password password
virtuoso-opensource-7 virtuoso-opensource-7/dba-password-again password
virtuoso-opensource-7 virtuoso-opensource-7/register-odbc-dsn boolean false
libvirtodbc0 libvirtodbc0/register-odbc-driver boolean false
EOF
    policy_rc_d_block
    trap policy_rc_d_restore EXIT
    if ! apt_install "${missing[@]}"; then
      log "install: apt-get install failed; running apt-get update once and retrying"
      apt-get update -q || { policy_rc_d_restore; die "apt-get update failed"; }
      apt_install "${missing[@]}" || { policy_rc_d_restore; die "apt-get install ${missing[*]} failed"; }
    fi
    policy_rc_d_restore
    trap - EXIT
  fi
  stop_system_daemons
  for p in "$PG_BIN/postgres" "$PG_BIN/initdb" /usr/sbin/mariadbd /usr/bin/mariadb-install-db \
    /usr/sbin/pgbouncer /usr/bin/virtuoso-t /usr/bin/isql-vt /usr/bin/isql /usr/bin/sqlite3; do
    [[ -x $p ]] || die "install: $p missing after install"
  done
  # The build to install links against musl when Rust has the target (build-release.sh says
  # why); without it, that build uses glibc, so a failure here is only a warning.
  if command -v rustup >/dev/null \
    && ! [[ -d $(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-musl ]] \
    && [[ $(uname -m) == x86_64 ]]; then
    rustup target add x86_64-unknown-linux-musl >&2 \
      || warn "install: rustup target add x86_64-unknown-linux-musl failed; the release build will use glibc"
  fi
  log "install: done"
}

# --------------------------------------------------------------- postgres ---
PG_DIR() { echo "$VM_RUN_DIR/pg"; }
pg_psql_admin() {  # SQL on stdin, as superuser over the unix socket (peer auth as OS user postgres)
  runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(PG_DIR)" -p "$VM_PG_PORT" -d postgres
}
pg_init() {
  local d; d=$(PG_DIR)
  install -d -o postgres -g postgres -m 700 "$d/data"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$d/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 --no-sync >>"$d/init.log" 2>&1 \
    || { show_log_tail "$d/init.log"; die "pg: initdb failed"; }
  cat >"$d/data/pg_hba.conf" <<'EOF'
# written by scripts/servers.sh
# TYPE  DATABASE USER      ADDRESS        METHOD
local   all      postgres                 peer
local   mail     root                     peer
local   all      all                      scram-sha-256
host    all      all       127.0.0.1/32   scram-sha-256
host    all      all       ::1/128        scram-sha-256
EOF
  chown postgres:postgres "$d/data/pg_hba.conf"
}
pg_launch() {
  local d; d=$(PG_DIR)
  chown postgres:postgres "$d"   # the socket directory
  # Lock files left by a killed postmaster: postgres refuses to start while
  # their PID answers kill -0, which an unreaped zombie (or a reused PID) does.
  local f
  for f in "$d/data/postmaster.pid" "$d/.s.PGSQL.$VM_PG_PORT.lock"; do
    if [[ -f $f ]] && ! pid_alive "$(head -n1 "$f")"; then rm -f "$f"; fi
  done
  # setpriv execs (runuser would fork), so the recorded PID is the postmaster's.
  launch pg "$d/server.log" setpriv --reuid=postgres --regid=postgres --init-groups -- \
    "$PG_BIN/postgres" -D "$d/data" -c listen_addresses=127.0.0.1 -c port="$VM_PG_PORT" \
    -c unix_socket_directories="$d" -c logging_collector=off -c password_encryption=scram-sha-256
}
pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$VM_PG_PORT" -t 2 && "$PG_BIN/pg_isready" -q -h "$(PG_DIR)" -p "$VM_PG_PORT" -t 2
}
pg_provision() {
  pg_psql_admin <<EOF
SELECT 'CREATE ROLE $DB_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') \gexec
ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASS';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME') \gexec
ALTER DATABASE $DB_NAME OWNER TO $DB_USER;
EOF
  # root (who runs the tests) logs in over the socket by peer authentication, as a delivery
  # user would in production; as a member of virt it sees virt's tables.
  if ! grep -q '^local   mail     root' "$(PG_DIR)/data/pg_hba.conf"; then
    sed -i 's/^local   all      all /local   mail     root                     peer\n&/' "$(PG_DIR)/data/pg_hba.conf"
    pg_psql_admin <<<'SELECT pg_reload_conf();' >/dev/null
  fi
  pg_psql_admin <<<"SELECT 'CREATE ROLE root LOGIN IN ROLE $DB_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'root') \gexec"
  "$PG_BIN/psql" -X -q -At "postgresql://$DB_USER:$DB_PASS@127.0.0.1:$VM_PG_PORT/$DB_NAME" -c 'select 1' >/dev/null \
    || die "pg: $DB_USER cannot log in over TCP"
  PGPASSWORD=$DB_PASS "$PG_BIN/psql" -X -q -At -h "$(PG_DIR)" -p "$VM_PG_PORT" -U "$DB_USER" -d "$DB_NAME" -c 'select 1' >/dev/null \
    || die "pg: $DB_USER cannot log in over the unix socket"
}
pg_env() {
  cat <<EOF
export VIRT_MAIL_TEST_PG_URL=postgres://$DB_USER:$DB_PASS@127.0.0.1:$VM_PG_PORT/$DB_NAME
export VIRT_MAIL_TEST_PG_SOCKET_DIR=$(PG_DIR)
export VIRT_MAIL_TEST_PG_PORT=$VM_PG_PORT
export VIRT_MAIL_TEST_PG_PEER_URL="postgresql://root@/$DB_NAME?host=$(PG_DIR)&port=$VM_PG_PORT"
EOF
}

# -------------------------------------------------------------- pgbouncer ---
# PgBouncer in session mode in front of the PostgreSQL above, on a unix socket only: what
# an administrator puts between a per-message MDA and PostgreSQL so that a delivery does
# not pay for a new server process (README, "PostgreSQL through PgBouncer"). Clients log in
# as root without a password; the socket is 0660 (postgres:postgres), so only root and
# postgres can open it (the example adds a group for the MTA's user); PgBouncer logs in to
# PostgreSQL as virt. The time limits virt_mail sends as startup `options` are
# ignored here, so the server's own come from ALTER ROLE virt SET (pgbouncer_provision).
PGBOUNCER_DIR() { echo "$VM_RUN_DIR/pgbouncer"; }
pgbouncer_psql() {
  "$PG_BIN/psql" -X -q -At -h "$(PGBOUNCER_DIR)" -p "$VM_PGBOUNCER_PORT" -U root -d "$DB_NAME" "$@"
}
pgbouncer_init() { :; }
pgbouncer_launch() {
  local d; d=$(PGBOUNCER_DIR)
  install -d -o postgres -g postgres -m 755 "$d"
  printf '"root" ""\n' >"$d/userlist.txt"
  cat >"$d/pgbouncer.ini" <<EOF
; written by scripts/servers.sh
[databases]
$DB_NAME = host=$(PG_DIR) port=$VM_PG_PORT dbname=$DB_NAME user=$DB_USER password=$DB_PASS

[pgbouncer]
listen_addr =
listen_port = $VM_PGBOUNCER_PORT
unix_socket_dir = $d
unix_socket_mode = 0660
auth_type = trust
auth_file = $d/userlist.txt
pool_mode = session
server_reset_query = DISCARD ALL
ignore_startup_parameters = options
default_pool_size = 8
max_client_conn = 200
log_connections = 0
log_disconnections = 0
EOF
  chown postgres:postgres "$d/userlist.txt" "$d/pgbouncer.ini"
  rm -f "$d/.s.PGSQL.$VM_PGBOUNCER_PORT" "$d/.s.PGSQL.$VM_PGBOUNCER_PORT.lock"
  launch pgbouncer "$d/server.log" setpriv --reuid=postgres --regid=postgres --init-groups -- \
    /usr/sbin/pgbouncer "$d/pgbouncer.ini"
}
pgbouncer_ready() { [[ -S $(PGBOUNCER_DIR)/.s.PGSQL.$VM_PGBOUNCER_PORT ]]; }
pgbouncer_provision() {
  is_running pg || die "pgbouncer: PostgreSQL is not running; start it first: scripts/servers.sh start pg pgbouncer"
  pg_psql_admin <<<"ALTER ROLE $DB_USER SET statement_timeout = '300s'; ALTER ROLE $DB_USER SET lock_timeout = '300s';"
  [[ $(pgbouncer_psql -c 'select 1' 2>>"$(PGBOUNCER_DIR)/server.log") == 1 ]] \
    || { show_log_tail "$(PGBOUNCER_DIR)/server.log"; die "pgbouncer: root cannot reach $DB_NAME through it"; }
}
pgbouncer_env() {
  echo "export VIRT_MAIL_TEST_PGBOUNCER_URL=\"postgresql://root@/$DB_NAME?host=$(PGBOUNCER_DIR)&port=$VM_PGBOUNCER_PORT\""
}

# ---------------------------------------------------------------- mariadb ---
MARIADB_DIR() { echo "$VM_RUN_DIR/mariadb"; }
mariadb_bin() { if [[ -x /usr/sbin/mariadbd ]]; then echo /usr/sbin/mariadbd; else echo /usr/sbin/mysqld; fi; }
mariadb_admin_sql() {  # root over the unix socket (unix_socket auth as OS root)
  mariadb --no-defaults -uroot -S "$(MARIADB_DIR)/mysqld.sock" --connect-timeout=5 -N -B "$@"
}
mariadb_init() {
  local d; d=$(MARIADB_DIR)
  id mysql >/dev/null 2>&1 || die "mariadb: system user mysql missing; run: scripts/servers.sh install"
  install -d -o mysql -g mysql -m 750 "$d/data"
  mariadb-install-db --no-defaults --user=mysql --datadir="$d/data" --auth-root-authentication-method=socket \
    --skip-test-db --skip-name-resolve >>"$d/init.log" 2>&1 \
    || { show_log_tail "$d/init.log"; die "mariadb: mariadb-install-db failed"; }
}
mariadb_launch() {
  local d; d=$(MARIADB_DIR)
  chown mysql:mysql "$d"   # socket and pid file
  launch mariadb "$d/server.log" "$(mariadb_bin)" --no-defaults --user=mysql --datadir="$d/data" \
    --bind-address=127.0.0.1 --port="$VM_MARIADB_PORT" --socket="$d/mysqld.sock" --pid-file="$d/mariadbd.pid" \
    --skip-name-resolve --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --max-allowed-packet=64M   # 20 MB messages; the 16M default refuses them
}
mariadb_ready() { mariadb_admin_sql -e 'select 1' && port_open "$VM_MARIADB_PORT"; }
mariadb_provision() {
  local host sql="CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"
  for host in localhost 127.0.0.1 %; do
    sql+="CREATE USER IF NOT EXISTS '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASS';"
    sql+="ALTER USER '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASS';"
    sql+="GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'$host';"
    # scratch databases mail_* for tests that want their own
    sql+="GRANT ALL PRIVILEGES ON \`${DB_NAME}\\_%\`.* TO '$DB_USER'@'$host';"
  done
  mariadb_admin_sql -e "$sql FLUSH PRIVILEGES;" || die "mariadb: provisioning failed"
  mariadb --no-defaults -h127.0.0.1 -P"$VM_MARIADB_PORT" -u"$DB_USER" -p"$DB_PASS" "$DB_NAME" -N -B -e 'select 1' >/dev/null \
    || die "mariadb: $DB_USER cannot log in over TCP"
  mariadb --no-defaults -S "$(MARIADB_DIR)/mysqld.sock" -u"$DB_USER" -p"$DB_PASS" "$DB_NAME" -N -B -e 'select 1' >/dev/null \
    || die "mariadb: $DB_USER cannot log in over the unix socket"
}
mariadb_env() {
  cat <<EOF
export VIRT_MAIL_TEST_MYSQL_URL=mysql://$DB_USER:$DB_PASS@127.0.0.1:$VM_MARIADB_PORT/$DB_NAME
export VIRT_MAIL_TEST_MYSQL_SOCKET=$(MARIADB_DIR)/mysqld.sock
export VIRT_MAIL_TEST_MYSQL_PORT=$VM_MARIADB_PORT
EOF
}

# --------------------------------------------------------------- virtuoso ---
VIRTUOSO_DIR() { echo "$VM_RUN_DIR/virtuoso"; }
virtuoso_driver() { dpkg -L libvirtodbc0 2>/dev/null | grep -m1 '/virtodbc_r\.so$' || echo /usr/lib/x86_64-linux-gnu/odbc/virtodbc_r.so; }
virtuoso_isql() {  # virtuoso_isql 'SQL;' — as dba over TCP
  timeout 20 isql-vt "127.0.0.1:$VM_VIRTUOSO_PORT" dba dba "exec=$1"
}
virtuoso_init() { mkdir -p "$(VIRTUOSO_DIR)/data"; }   # the database is created on first start
virtuoso_write_ini() {
  local d http=""; d=$(VIRTUOSO_DIR)
  if [[ $VM_VIRTUOSO_HTTP_PORT != 0 ]]; then
    http="ServerPort = 127.0.0.1:$VM_VIRTUOSO_HTTP_PORT"
  fi
  cat >"$d/virtuoso.ini" <<EOF
; written by virt_mail scripts/servers.sh — private test instance
[Database]
DatabaseFile       = $d/data/virtuoso.db
ErrorLogFile       = $d/data/virtuoso.log
LockFile           = $d/data/virtuoso.lck
TransactionFile    = $d/data/virtuoso.trx
xa_persistent_file = $d/data/virtuoso.pxa
ErrorLogLevel      = 7
FileExtend         = 200
MaxCheckpointRemap = 2000
Striping           = 0
TempStorage        = TempDatabase

[TempDatabase]
DatabaseFile       = $d/data/virtuoso-temp.db
TransactionFile    = $d/data/virtuoso-temp.trx
MaxCheckpointRemap = 2000
Striping           = 0

[Parameters]
ServerPort           = 127.0.0.1:$VM_VIRTUOSO_PORT
LiteMode             = 0
DisableUnixSocket    = 1
DisableTcpSocket     = 0
MaxClientConnections = 40
CheckpointInterval   = 60
O_DIRECT             = 0
CaseMode             = 2
MaxStaticCursorRows  = 5000
CheckpointAuditTrail = 0
AllowOSCalls         = 0
SchedulerInterval    = 10
DirsAllowed          = ., $VM_RUN_DIR, /usr/share/virtuoso-opensource-7/vad
ThreadCleanupInterval = 0
ThreadThreshold      = 10
ResourcesCleanupInterval = 0
FreeTextBatchSize    = 100000
SingleCPU            = 0
VADInstallDir        = /usr/share/virtuoso-opensource-7/vad/
PrefixResultNames    = 0
MaxMemPoolSize       = 200000000
MaxQueryMem          = 256M
ThreadsPerQuery      = 2
AsyncQueueMaxThreads = 10
NumberOfBuffers      = 10000
MaxDirtyBuffers      = 6000

[HTTPServer]
$http
ServerRoot           = $d/data
MaxClientConnections = 10
ServerThreads        = 10

[Client]
SQL_PREFETCH_ROWS  = 100
SQL_PREFETCH_BYTES = 16000
SQL_QUERY_TIMEOUT  = 0
SQL_TXN_TIMEOUT    = 0

[Replication]
ServerName   = db
ServerEnable = 1
QueueMax     = 50000
EOF
}
virtuoso_launch() {
  local d; d=$(VIRTUOSO_DIR)
  virtuoso_write_ini
  launch virtuoso "$d/server.log" /usr/bin/virtuoso-t +configfile "$d/virtuoso.ini" +foreground
}
virtuoso_ready() { local out; out=$(virtuoso_isql 'select 1;') && grep -qx 1 <<<"$out"; }
virtuoso_provision() { virtuoso_isql 'checkpoint;' >/dev/null || die "virtuoso: checkpoint failed"; }
virtuoso_env() {
  cat <<EOF
export VIRT_MAIL_TEST_VIRTUOSO_HOST=127.0.0.1:$VM_VIRTUOSO_PORT
export VIRT_MAIL_TEST_VIRTUOSO_DRIVER=$(virtuoso_driver)
export VIRT_MAIL_TEST_VIRTUOSO_USER=dba
export VIRT_MAIL_TEST_VIRTUOSO_PASSWORD=dba
EOF
}

# ------------------------------------------------------------------- odbc ---
# No daemon: writes odbcinst.ini/odbc.ini under $VM_RUN_DIR/odbc and checks
# every DSN whose server is running with unixODBC's isql.
ODBC_DIR() { echo "$VM_RUN_DIR/odbc"; }
odbc_driver() {  # odbc_driver PACKAGE FILE -> absolute path of FILE from PACKAGE
  local p; p=$(dpkg -L "$1" 2>/dev/null | grep -m1 "/$2\$") || die "odbc: $2 not found in package $1; run: scripts/servers.sh install"
  echo "$p"
}
odbc_write_ini() {
  local d sqlite psqlw psqla maria virt; d=$(ODBC_DIR)
  sqlite=$(odbc_driver libsqliteodbc libsqlite3odbc.so)
  psqlw=$(odbc_driver odbc-postgresql psqlodbcw.so)
  psqla=$(odbc_driver odbc-postgresql psqlodbca.so)
  maria=$(odbc_driver odbc-mariadb libmaodbc.so)
  virt=$(odbc_driver libvirtodbc0 virtodbc_r.so)
  mkdir -p "$d"
  cat >"$d/odbcinst.ini" <<EOF
; written by virt_mail scripts/servers.sh
[SQLite3]
Description = SQLite3 ODBC driver
Driver      = $sqlite

[PostgreSQL Unicode]
Description = PostgreSQL ODBC driver (Unicode)
Driver      = $psqlw

[PostgreSQL ANSI]
Description = PostgreSQL ODBC driver (ANSI)
Driver      = $psqla

[MariaDB]
Description = MariaDB Connector/ODBC
Driver      = $maria

[Virtuoso]
Description = Virtuoso ODBC driver (thread-safe)
Driver      = $virt
EOF
  cat >"$d/odbc.ini" <<EOF
; written by virt_mail scripts/servers.sh
[vm_sqlite]
Driver   = SQLite3
Database = $d/mail.db
Timeout  = 5000

[vm_pg]
Driver     = PostgreSQL Unicode
Servername = 127.0.0.1
Port       = $VM_PG_PORT
Database   = $DB_NAME
Username   = $DB_USER
Password   = $DB_PASS

[vm_mariadb]
Driver   = MariaDB
Server   = 127.0.0.1
Port     = $VM_MARIADB_PORT
Database = $DB_NAME
User     = $DB_USER
Password = $DB_PASS

; The Virtuoso driver reads the server from "Address" in a DSN (it ignores
; Host here; in a connection string it takes HOST=). It ignores UID/PWD/
; UserName/Password in a DSN: pass them (isql vm_virtuoso dba dba, or
; "DSN=vm_virtuoso;UID=dba;PWD=dba").
[vm_virtuoso]
Driver  = Virtuoso
Address = 127.0.0.1:$VM_VIRTUOSO_PORT
EOF
}
# odbc_check [ISQL_OPTION...] DSN [USER PASS]: "select 1" through unixODBC's isql.
odbc_check() {
  local d out; d=$(ODBC_DIR)
  if out=$(echo 'select 1' | ODBCSYSINI=$d ODBCINI=$d/odbc.ini timeout 20 isql -b -v "$@" 2>&1) \
    && [[ $out != *'[ISQL]ERROR'* ]]; then
    return 0
  fi
  printf '[servers] odbc: isql %s failed:\n%s\n' "$*" "$out" >&2
  return 1
}
# A DSN is listed in VIRT_MAIL_TEST_ODBC_DSNS when `isql -b DSN` works on its
# own (the DSN carries its credentials) and with explicit credentials.
# vm_virtuoso cannot be listed: the Virtuoso driver (libvirtodbc0 7.2.5) ignores
# credentials stored in a DSN, and its SQLColAttribute(SQL_DESC_NAME/LABEL/...)
# aborts the process ("stack smashing detected"); isql calls it to print the
# column header. It is checked with explicit credentials and -d (no header),
# and exported as VIRT_MAIL_TEST_ODBC_VIRTUOSO_DSN. Never try Virtuoso without
# the right password: 4 failed logins from one IP lock that IP out for 60 s.
start_odbc() {
  local d dsn server working=() broken=() virt_dsn="" t0; d=$(ODBC_DIR); t0=$(now)
  need_cmd isql
  odbc_write_ini
  for dsn in vm_sqlite vm_pg vm_mariadb; do
    server=${dsn#vm_}
    if [[ $server != sqlite ]] && ! is_running "$server"; then continue; fi
    if [[ $server == sqlite ]] || odbc_check "$dsn" "$DB_USER" "$DB_PASS"; then
      if odbc_check "$dsn"; then working+=("$dsn"); continue; fi
    fi
    broken+=("$dsn")
  done
  if is_running virtuoso; then
    if odbc_check -d'|' vm_virtuoso dba dba; then virt_dsn=vm_virtuoso; else broken+=(vm_virtuoso); fi
  fi
  cat >"$VM_RUN_DIR/env.d/odbc.sh" <<EOF
export ODBCSYSINI=$d
export ODBCINI=$d/odbc.ini
export VIRT_MAIL_TEST_ODBC_DSNS="${working[*]}"
export VIRT_MAIL_TEST_ODBC_VIRTUOSO_DSN=$virt_dsn
export VIRT_MAIL_TEST_ODBC_SQLITE_DB=$d/mail.db
EOF
  log "odbc: DSNs that connect: ${working[*]:-none}${virt_dsn:+ (+ $virt_dsn with explicit dba/dba)}${broken:+; FAILING: ${broken[*]}} ($(elapsed "$t0")s)"
  if ((${#broken[@]})); then
    printf '[servers] ERROR: odbc: DSN(s) %s do not connect although their server runs\n' "${broken[*]}" >&2
    return 1
  fi
}

# ------------------------------------------------------ generic lifecycle ---
# start_server NAME: (re)use a healthy data dir or make a fresh one, launch,
# wait until it accepts connections, provision, write env.d/NAME.sh.
start_server() {
  local name=$1 d=$VM_RUN_DIR/$1 port t0 how
  port=$(port_of "$name"); t0=$(now)
  mkdir -p "$d"
  if is_running "$name"; then
    wait_ready "$name" || die "$name: running (pid $(read_pid "$name")) but not answering; try: scripts/servers.sh restart $name"
    how="already running"
  else
    rm -f "$(pid_file "$name")"
    if port_open "$port"; then
      die "$name: 127.0.0.1:$port is already in use by another process ($(ss -ltnpH "sport = :$port" 2>/dev/null | head -n1)); stop it or set VM_${name^^}_PORT"
    fi
    how="existing data dir"
    if [[ ! -f $d/.initialized ]]; then
      rm -rf "$d/data"; "${name}_init"; how="fresh data dir"
    fi
    "${name}_launch"
    if ! wait_ready "$name"; then
      stop_pid "$name"
      [[ $how == "existing data dir" ]] || die "$name: failed to start on a fresh data dir"
      # Not recreated automatically: that would hide data loss from fault tests.
      die "$name: failed to start on its existing data dir $d/data (log above); if that data dir is damaged, start from scratch with: scripts/servers.sh purge $name"
    fi
  fi
  "${name}_provision"
  touch "$d/.initialized"
  mkdir -p "$VM_RUN_DIR/env.d"
  "${name}_env" >"$VM_RUN_DIR/env.d/$name.sh"
  log "$name: up, pid $(read_pid "$name"), $(address_of "$name") ($how, $(elapsed "$t0")s)"
}

stop_server() {
  local name=$1
  rm -f "$VM_RUN_DIR/env.d/$name.sh"
  [[ $name == odbc ]] && { log "odbc: config removed from env.sh"; return 0; }
  if is_running "$name"; then
    local pid; pid=$(read_pid "$name")
    stop_pid "$name"
    log "$name: stopped (was pid $pid)"
  else
    rm -f "$(pid_file "$name")"
    log "$name: not running"
  fi
}

kill_server() {
  local name=$1 pid
  [[ $name != odbc ]] || die "kill: odbc has no process"
  pid=$(read_pid "$name")
  if ! is_running "$name"; then log "$name: not running"; return 0; fi
  signal_server "$name" KILL
  wait_gone "$pid"
  log "$name: killed (SIGKILL to pid $pid and its process group); data dir kept, env.sh unchanged"
}

status_server() {
  local name=$1
  if [[ $name == odbc ]]; then
    if [[ -f $VM_RUN_DIR/env.d/odbc.sh ]]; then
      printf '%-9s up    dsns=%s\n' odbc "$(sed -n 's/^export VIRT_MAIL_TEST_ODBC_DSNS="\(.*\)"$/\1/p' "$VM_RUN_DIR/env.d/odbc.sh")"
    else
      printf '%-9s down\n' odbc
    fi
  elif is_running "$name"; then
    printf '%-9s up    pid=%-8s port=%s\n' "$name" "$(read_pid "$name")" "$(port_of "$name")"
  else
    printf '%-9s down  pid=%-8s port=%s\n' "$name" - "$(port_of "$name")"
  fi
}

# refresh_odbc: after servers came or went, re-check the DSNs if odbc is configured.
refresh_odbc() {
  if [[ -f $VM_RUN_DIR/env.d/odbc.sh ]]; then start_odbc || true; fi
}

# ---------------------------------------------------------------- commands ---
check_names() {
  local n
  for n in "$@"; do
    [[ " ${ALL_SERVERS[*]} " == *" $n "* ]] || die "unknown server '$n' (expected: ${ALL_SERVERS[*]})"
  done
}
# ordered NAME...: the names in canonical order (odbc last), deduplicated.
ordered() {
  local n out=()
  for n in "${ALL_SERVERS[@]}"; do [[ " $* " == *" $n "* ]] && out+=("$n"); done
  echo "${out[*]}"
}

prepare_run_dir() {
  ((${#VM_RUN_DIR} <= 70)) || die "VM_RUN_DIR=$VM_RUN_DIR is too long (unix socket paths must stay < 100 chars)"
  # Only ever use (and later delete) a directory this script created: an
  # existing non-empty directory without our marker is refused.
  if [[ ! -d $VM_RUN_DIR ]]; then
    mkdir -p "$VM_RUN_DIR" && chmod 755 "$VM_RUN_DIR"
    touch "$VM_RUN_DIR/$RUN_DIR_MARKER"
  elif [[ ! -f $VM_RUN_DIR/$RUN_DIR_MARKER ]]; then
    [[ -z $(ls -A "$VM_RUN_DIR") ]] \
      || die "VM_RUN_DIR=$VM_RUN_DIR exists, is not empty and was not created by scripts/servers.sh; choose another VM_RUN_DIR"
    touch "$VM_RUN_DIR/$RUN_DIR_MARKER"
  fi
  if id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$VM_RUN_DIR"; then
    die "$VM_RUN_DIR is not reachable by the postgres user (a parent directory is not world-searchable)"
  fi
  exec 9>"$VM_RUN_DIR/.lock"
  flock -w 300 9 || die "another scripts/servers.sh holds $VM_RUN_DIR/.lock"
}

cmd_start() {
  local n t0; t0=$(now)
  need_root start
  need_cmd "$PG_BIN/postgres"; need_cmd /usr/sbin/pgbouncer; need_cmd mariadb-install-db; need_cmd virtuoso-t; need_cmd isql-vt
  for n in "$@"; do
    [[ $n == odbc ]] || start_server "$n"
  done
  if [[ " $* " == *" odbc "* ]]; then
    start_odbc || { write_env; die "odbc: see above (env.sh written with the working DSNs only)"; }
  else
    refresh_odbc
  fi
  write_env
  log "start: done in $(elapsed "$t0")s; env: source $VM_RUN_DIR/env.sh"
}

cmd_stop() {
  local n names=() purge=0
  for n in "$@"; do if [[ $n == --purge ]]; then purge=1; else names+=("$n"); fi; done
  ((${#names[@]})) || names=("${ALL_SERVERS[@]}")
  check_names "${names[@]}"
  # shellcheck disable=SC2046
  set -- $(ordered "${names[@]}")
  [[ -d $VM_RUN_DIR ]] || { log "stop: $VM_RUN_DIR does not exist; nothing to stop"; return 0; }
  prepare_run_dir
  for n in "$@"; do stop_server "$n"; done
  if ((purge)); then purge_dirs "$@"; return 0; fi
  [[ " $* " == *" odbc "* ]] || refresh_odbc
  write_env
}

purge_dirs() {
  # only ever delete a run dir this script created (see prepare_run_dir)
  [[ $VM_RUN_DIR != / && -f $VM_RUN_DIR/$RUN_DIR_MARKER ]] || die "purge: $VM_RUN_DIR was not created by scripts/servers.sh; not deleting it"
  if [[ $(ordered "$@") == "${ALL_SERVERS[*]}" ]]; then
    rm -rf "$VM_RUN_DIR"; log "purge: removed $VM_RUN_DIR"
  else
    local n
    for n in "$@"; do rm -rf "${VM_RUN_DIR:?}/$n" "$VM_RUN_DIR/env.d/$n.sh"; log "purge: removed $VM_RUN_DIR/$n"; done
    write_env
  fi
}

main() {
  local cmd=${1:-} n
  [[ -n $cmd ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
  shift
  cd /   # all paths are absolute; the postgres/mysql users may not be able to read the caller's cwd
  case $cmd in
    install) cmd_install ;;
    start|restart|kill|status|purge)
      local names=("$@")
      ((${#names[@]})) || names=("${ALL_SERVERS[@]}")
      check_names "${names[@]}"
      # shellcheck disable=SC2046
      set -- $(ordered "${names[@]}")
      case $cmd in
        start) prepare_run_dir; cmd_start "$@" ;;
        restart)
          prepare_run_dir
          for n in "$@"; do [[ $n == odbc ]] || stop_server "$n"; done
          cmd_start "$@" ;;
        kill) prepare_run_dir; for n in "$@"; do kill_server "$n"; done ;;
        status) for n in "$@"; do status_server "$n"; done ;;
        purge) cmd_stop --purge "$@" ;;
      esac ;;
    stop) cmd_stop "$@" ;;
    -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (install|start|stop|status|restart|kill|purge)" ;;
  esac
}

main "$@"
