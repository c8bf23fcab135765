#!/usr/bin/env bash
# The fault matrix and the concurrency runs of docs/RELIABILITY.md, in one command.
#
# They run on database servers of their own (scripts/servers.sh with a separate run
# directory and ports), so stopping, killing and filling them disturbs nobody else's
# tests; the servers are stopped again at the end (their data is kept for the next run).
# Each fault is checked on every backend where it applies — SQLite, PostgreSQL, MariaDB,
# ODBC to SQLite/PostgreSQL/MariaDB/Virtuoso — under the mailer profiles; every run must
# end with the exit status SPEC §7 gives that mailer and leave the message stored exactly
# once (after the retry a deferral asks for): 0 lost, 0 duplicated, 0 partial. It prints a
# counts table (fault x backend x mailer) and exits non-zero on any problem.
#
#   scripts/fault-matrix.sh            CI variant: every fault once per backend, the mailer
#                                      profiles rotated (each one covered); 200 deliveries
#                                      through 8 pipes per backend. A few minutes.
#   scripts/fault-matrix.sh --full     every fault x backend x mailer, the racy faults
#                                      repeated; 1000 deliveries through 2, 8 and 32 pipes.
#   --matrix-only | --concurrency-only
#
# Environment: VIRT_MAIL_FAULT_ONLY=fault,...  VIRT_MAIL_FAULT_TARGETS=sqlite,odbc-virtuoso,...
#   VIRT_MAIL_FAULT_SEED=N (repeat a run's random timings; each run prints its seed)
#   VIRT_MAIL_CONCURRENCY=N:P,P (instead of the variant's plan)
#   VIRT_MAIL_FAULT_RUN_DIR (/tmp/virt_mail-faults), VIRT_MAIL_FAULT_{PG,MARIADB,VIRTUOSO}_PORT
#   (16432, 14306, 12111). Needs root (servers, tmpfs mounts, setpriv) and what
#   `scripts/servers.sh install` installs.
set -euo pipefail
cd "$(dirname "$0")/.."

variant=ci what=both
for arg in "$@"; do
  case $arg in
    --ci) variant=ci ;;
    --full) variant=full ;;
    --matrix-only) what=matrix ;;
    --concurrency-only) what=concurrency ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fault-matrix.sh: unknown argument $arg (--ci|--full|--matrix-only|--concurrency-only)" >&2; exit 2 ;;
  esac
done
[[ $EUID -eq 0 ]] || { echo "fault-matrix.sh: must run as root (servers, tmpfs, setpriv)" >&2; exit 2; }

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }
started=$(date +%s)

# ---------------------------------------------------------------- our own servers ---
export VM_RUN_DIR=${VIRT_MAIL_FAULT_RUN_DIR:-/tmp/virt_mail-faults}
export VM_PG_PORT=${VIRT_MAIL_FAULT_PG_PORT:-16432}
export VM_MARIADB_PORT=${VIRT_MAIL_FAULT_MARIADB_PORT:-14306}
export VM_VIRTUOSO_PORT=${VIRT_MAIL_FAULT_VIRTUOSO_PORT:-12111}
export VM_VIRTUOSO_HTTP_PORT=0
step "start the fault servers in $VM_RUN_DIR (ports $VM_PG_PORT, $VM_MARIADB_PORT, $VM_VIRTUOSO_PORT)"
scripts/servers.sh start
trap 'scripts/servers.sh stop >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
source "$VM_RUN_DIR/env.sh"
# A backend without its server fails the run instead of being skipped.
export CI=true

# The delivery user with a connection limit of 1 (too-many-connections): a dedicated role
# and user on these servers, never a change to a server's global settings.
limited_user=vmrel_limited limited_pass=limited-pw
runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -X -q -v ON_ERROR_STOP=1 \
  -h "$VIRT_MAIL_TEST_PG_SOCKET_DIR" -p "$VM_PG_PORT" -d mail >/dev/null <<EOF
SELECT 'CREATE ROLE $limited_user' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$limited_user') \gexec
ALTER ROLE $limited_user LOGIN PASSWORD '$limited_pass' CONNECTION LIMIT 1;
GRANT virt TO $limited_user;
EOF
mariadb --no-defaults -uroot -S "$VIRT_MAIL_TEST_MYSQL_SOCKET" -e "
  CREATE USER IF NOT EXISTS '$limited_user'@'127.0.0.1' IDENTIFIED BY '$limited_pass';
  ALTER USER '$limited_user'@'127.0.0.1' IDENTIFIED BY '$limited_pass' WITH MAX_USER_CONNECTIONS 1;
  GRANT ALL PRIVILEGES ON mail.* TO '$limited_user'@'127.0.0.1';
  FLUSH PRIVILEGES;"
export VIRT_MAIL_FAULT_LIMITED_USER=$limited_user
export VIRT_MAIL_FAULT_LIMITED_PASSWORD=$limited_pass
export VIRT_MAIL_FAULT_PG_LIMITED_URL=postgres://$limited_user:$limited_pass@127.0.0.1:$VM_PG_PORT/mail
export VIRT_MAIL_FAULT_MYSQL_LIMITED_URL=mysql://$limited_user:$limited_pass@127.0.0.1:$VM_MARIADB_PORT/mail

# ---------------------------------------------------------------------------- runs ---
export CARGO_TERM_COLOR=never
features=(--all-features)
step "build (cargo test ${features[*]} --test it --no-run)"
cargo test "${features[@]}" --test it --no-run

run_test() {  # run_test NAME: one ignored test of the integration binary, serially
  nice -n "${VIRT_MAIL_FAULT_NICE:-10}" cargo test "${features[@]}" --test it "reliability::$1" \
    -- --ignored --exact --nocapture --test-threads=1
}

status=0
if [[ $what != concurrency ]]; then
  step "fault matrix ($variant)"
  VIRT_MAIL_FAULT_MATRIX=$variant run_test fault_matrix || status=1
fi
if [[ $what != matrix ]]; then
  step "concurrency ($variant)"
  VIRT_MAIL_CONCURRENCY=${VIRT_MAIL_CONCURRENCY:-$variant} run_test concurrency || status=1
fi

step "fault-matrix.sh $variant: $([[ $status == 0 ]] && echo passed || echo FAILED) in $(( $(date +%s) - started )) s"
exit "$status"
