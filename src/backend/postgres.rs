//! PostgreSQL (`postgres://…`, `postgresql://…`) through the synchronous `postgres` crate.
//!
//! **Connecting.** The DSN is a libpq-style URL parsed by `postgres::Config`. A unix socket is
//! named by a host that is a path: `postgresql://user:pw@/mail?host=/run/postgresql` or the
//! percent-encoded form `postgresql://user:pw@%2Frun%2Fpostgresql/mail`. This build has no
//! TLS library, so `sslmode=require` (or `verify-ca`, `verify-full`, `sslnegotiation=direct`)
//! is refused with a connect error that says so: the mail waits, and nothing ever goes out in
//! clear text when the administrator asked for encryption. `sslmode=prefer` (the default)
//! and `disable` connect without TLS.
//!
//! **Time limits.** The statement limit reaches the server in the startup packet (`options`:
//! `statement_timeout`, `lock_timeout`, `idle_in_transaction_session_timeout`), so it costs no
//! round trip; the server cancels the statement (SQLSTATE 57014 / 55P03, transient) and the
//! mail is deferred. Options already in the DSN come after ours and win. For a network that
//! dies under us, TCP keepalives and `TCP_USER_TIMEOUT` close the socket a little after the
//! limit. And since a peer can keep a connection alive while saying nothing, the client runs
//! on a thread of its own and every wait has a hard limit: ConnectTimeout for the whole
//! start-up (socket, authentication, session), StatementTimeout plus a few seconds for each
//! call. Each of these is a transient error.
//!
//! **Parameters.** Each statement is prepared once (the server infers the parameter types)
//! and each value is sent the way libpq's text mode sends it: as text, parsed by the type's
//! own input function, so `'42'` fills an integer. Values for a `bytea` parameter go in
//! binary format instead, raw, every byte kept (NUL included). Bytes that a text parameter
//! cannot hold (invalid UTF-8, NUL) are refused with a permanent error naming the parameter
//! ("use a bytea column"): never converted lossily.
//!
//! **Large values.** A statement with a value past 256 KiB is not handed to the crate, which
//! would hold two copies of it: `direct` writes it onto the crate's socket itself, a piece
//! at a time from the spool, and reads the answers the same way (see there).
//!
//! **Results.** All rows are read (an `INSERT … RETURNING` completes only then); the first is
//! kept, each column as the text PostgreSQL prints for it (numbers, booleans `t`/`f`, dates in
//! ISO form; `timestamptz` in UTC with `+00`), `bytea` as bytes, NULL as empty text.
//!
//! **CheckReturn.** Nothing special: the first column of the first row is the return value.
//! A function is called with `SELECT my_func('$local')`, a procedure with INOUT parameters
//! with `CALL my_proc('$local', NULL)` (it returns one row), and `INSERT … RETURNING x`
//! works too.
//!
//! **Errors** carry the server's SQLSTATE. Transient (the mail waits): connection (class 08),
//! serialization failure and deadlock, lock and statement timeouts, server shutdown or
//! restart, insufficient resources (class 53), read-only after fail-over (25006), system and
//! internal errors (classes 58, XX), and every error without a SQLSTATE (I/O, closed
//! connection, time-out, TLS). Everything else is permanent.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
use postgres::{Client, Config, NoTls};

use super::{Backend, Limits, Row};
use crate::config::Statement;
use crate::error::{DbError, DbStep, Retry};
use crate::macros::{Macros, Placeholder, Value};
use direct::Socket;
use values::{Param, Raw, to_value};

mod direct;
mod values;

/// Values past this size are written by `direct`, from the spool, rather than by the crate.
const DIRECT_AT: usize = crate::message::SPOOL_AT;

/// Extra time the client-side limits allow beyond the statement limit, so that the
/// server's own time-out (a clean, classified error) normally fires first.
const BACKSTOP_GRACE: Duration = Duration::from_secs(5);

/// Work for the connection's thread: the client, and its socket when it was found (see
/// `direct`).
type Job = Box<dyn FnOnce(&mut Client, Option<&Socket>) + Send>;

/// A connection to PostgreSQL. The `postgres::Client` lives on a thread of its own and every
/// call waits for it with a hard limit: the crate's `connect_timeout` covers only reaching
/// the socket, and neither the server's `statement_timeout` nor TCP keepalives help when
/// the peer keeps the connection alive but says nothing (a listener on the wrong port, a
/// hung proxy or pooler, a stopped backend). Without the limit we would wait until the MTA
/// gives up, which Postfix and Exim answer with a bounce.
pub struct Postgres {
    jobs: Option<Sender<Job>>,
    /// The hard limit for one call (statement limit plus grace).
    call_limit: Duration,
    /// Whether `begin` opened a transaction that is not yet committed or rolled back.
    in_transaction: bool,
    /// A call ran past its limit: the connection is left behind, unusable.
    abandoned: bool,
}

impl Postgres {
    pub fn connect(dsn: &str, limits: Limits) -> Result<Postgres, DbError> {
        let dsn = normalize_scheme(dsn.trim());
        refuse_tls(&dsn)?;
        // The parser's messages name options, never their values: no password can leak.
        let mut config = Config::from_str(&dsn).map_err(|e| {
            let mut error = error(DbStep::Connect, &e);
            error.message = format!("invalid PostgreSQL URL: {}", error.message);
            error
        })?;
        if config.get_ssl_mode() != SslMode::Disable && config.get_ssl_mode() != SslMode::Prefer {
            return Err(tls_unsupported());
        }
        if !limits.connect.is_zero() {
            config.connect_timeout(limits.connect);
        }
        let options = session_options(limits.statement, config.get_options());
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("virt_mail");
        }
        if !limits.statement.is_zero() {
            // A network that dies under us: the socket is closed a little after the limit.
            let probe = (limits.statement / 4).max(Duration::from_secs(1));
            config
                .tcp_user_timeout(limits.statement + BACKSTOP_GRACE)
                .keepalives(true)
                .keepalives_idle(probe)
                .keepalives_interval(probe)
                .keepalives_retries(3);
        }
        config.notice_callback(|notice| {
            crate::debug!("postgres {}: {}", notice.severity(), notice.message());
        });
        let target = describe(&config);
        crate::debug!("postgres: connecting to {target} (options {options})");
        let in_target = |mut error: DbError| {
            error.message = format!("{target}: {}", error.message);
            error
        };

        let (jobs, job_queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                crate::signals::keep_off_this_thread();
                let before = super::open_fds();
                let mut client = match config.connect(NoTls) {
                    Ok(client) => client,
                    Err(e) => {
                        let _ = ready_tx.send(Err(error(DbStep::Connect, &e)));
                        return;
                    }
                };
                let socket = before.and_then(|before| Socket::opened_since(&before));
                match &socket {
                    Some(s) => crate::debug!("postgres: connected; large values go on {s}"),
                    None => crate::debug!(
                        "postgres: connected; socket not identified: the crate sends large values"
                    ),
                }
                if ready_tx.send(Ok(())).is_err() {
                    return;
                }
                while let Ok(job) = job_queue.recv() {
                    job(&mut client, socket.as_ref());
                }
                drop(client);
            })
            .map_err(|e| {
                DbError::new(
                    DbStep::Connect,
                    Retry::Transient,
                    format!("cannot start the connection's thread: {e}"),
                )
            })?;
        match ready.recv_timeout(unlimited_if_zero(limits.connect)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(in_target(e)),
            Err(RecvTimeoutError::Timeout) => {
                return Err(in_target(DbError::new(
                    DbStep::Connect,
                    Retry::Transient,
                    format!(
                        "no answer within {} s (ConnectTimeout)",
                        limits.connect.as_secs_f64()
                    ),
                )));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(in_target(DbError::new(
                    DbStep::Connect,
                    Retry::Transient,
                    "the connection's thread ended without a result".into(),
                )));
            }
        }
        Ok(Postgres {
            jobs: Some(jobs),
            call_limit: if limits.statement.is_zero() {
                Duration::ZERO
            } else {
                limits.statement + BACKSTOP_GRACE
            },
            in_transaction: false,
            abandoned: false,
        })
    }

    /// Runs `work` on the connection's thread and waits at most `call_limit` for it. Past
    /// that the connection is abandoned and the error is transient (`step` names it).
    fn call<R: Send + 'static>(
        &mut self,
        step: DbStep,
        work: impl FnOnce(&mut Client, Option<&Socket>) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let gone = |what: &str| DbError::new(step, Retry::Transient, what.to_string());
        if self.abandoned {
            return Err(gone(
                "the connection was abandoned after an earlier time-out",
            ));
        }
        let Some(jobs) = &self.jobs else {
            return Err(gone("the connection is closed"));
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client, socket| {
            let _ = reply.send(work(client, socket));
        });
        if jobs.send(job).is_err() {
            return Err(gone("the connection's thread has ended"));
        }
        match answer.recv_timeout(unlimited_if_zero(self.call_limit)) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                self.abandoned = true;
                // statement_timeout does not stop a COMMIT's own work (deferred triggers):
                // the server may still commit after we gave up.
                let unknown = if step == DbStep::Commit {
                    ": the outcome of the COMMIT is unknown, so the mail is deferred"
                } else {
                    ""
                };
                Err(gone(&format!(
                    "no answer from the server within {} s (StatementTimeout = {} s, plus {} \
                     s){unknown}; connection abandoned",
                    self.call_limit.as_secs_f64(),
                    self.call_limit.as_secs_f64() - BACKSTOP_GRACE.as_secs_f64(),
                    BACKSTOP_GRACE.as_secs()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => Err(gone("the connection's thread has ended")),
        }
    }

    /// A statement without parameters or results (BEGIN, COMMIT, ROLLBACK).
    fn simple(&mut self, sql: &'static str, step: DbStep) -> Result<(), DbError> {
        self.call(step, move |client, _| {
            client.batch_execute(sql).map_err(|e| {
                let mut error = error(step, &e);
                error.message = format!("{sql}: {}", error.message);
                error
            })
        })
    }
}

impl Drop for Postgres {
    /// Closing the queue ends the thread's loop; it then says goodbye to the server. Nobody
    /// waits for that: by now the transaction is committed or rolled back, and a process that
    /// exits first closes the socket, which the server takes as the same goodbye (outside a
    /// transaction it logs nothing). Waiting cost 0.3–0.8 ms per delivery: the server's
    /// backend exits while we watch (bench: `virt_mail postgres socket`).
    fn drop(&mut self) {
        drop(self.jobs.take());
    }
}

impl Backend for Postgres {
    fn run(&mut self, statement: &Statement, macros: &Macros<'_>) -> Result<Option<Row>, DbError> {
        let bound = statement.template.bind(macros, Placeholder::Numbered);
        let sql = bound.sql;
        // The values travel to the connection's thread: copies, but for the message, which
        // lives as long as the process and is lent (20 MiB less at 20 MiB).
        let params: Vec<Value<'static>> = bound
            .params
            .into_iter()
            .map(|value| owned(value, macros.message))
            .collect();
        self.call(DbStep::Execute, move |client, socket| {
            query(client, socket, &sql, &params)
        })
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.simple("BEGIN", DbStep::Execute)?;
        self.in_transaction = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        // Whatever COMMIT answers, the transaction is over (committed, rolled back, or the
        // connection is gone).
        self.in_transaction = false;
        self.simple("COMMIT", DbStep::Commit)
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        if !std::mem::take(&mut self.in_transaction) {
            return Ok(());
        }
        self.simple("ROLLBACK", DbStep::Execute)
    }
}

/// Prepares `sql` (the server infers the parameter types), binds `params` by those types,
/// reads every row and returns the first. A statement with a large value is sent by
/// `direct` on `socket`, when it is known.
fn query(
    client: &mut Client,
    socket: Option<&Socket>,
    sql: &str,
    params: &[Value<'_>],
) -> Result<Option<Row>, DbError> {
    let prepared = client
        .prepare(sql)
        .map_err(|e| error(DbStep::Prepare, &e))?;
    let types = prepared.params();
    if types.len() != params.len() {
        return Err(DbError::new(
            DbStep::Prepare,
            Retry::Permanent,
            format!(
                "the statement has {} parameters but its macros give {}",
                types.len(),
                params.len()
            ),
        ));
    }
    let params = params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (value, ty))| Param::new(i + 1, value, ty))
        .collect::<Result<Vec<_>, _>>()?;
    let large = params.iter().any(|p| p.bytes.len() > DIRECT_AT);
    if let Some(socket) = socket
        .filter(|_| large && !client.is_closed())
        .and_then(Socket::current)
    {
        crate::debug!("postgres: {} values written onto the socket", params.len());
        let columns: Vec<Type> = prepared
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        return direct::run(socket, sql, types, &columns, &params);
    }
    let mut rows = client
        .query_raw(&prepared, params.iter())
        .map_err(|e| error(DbStep::Execute, &e))?;
    let mut first = None;
    // Read to the end: an INSERT … RETURNING has done its work only when all rows are in.
    while let Some(row) = rows.next().map_err(|e| error(DbStep::Execute, &e))? {
        if first.is_none() {
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let Raw(raw) = row.try_get(i).map_err(|e| error(DbStep::Execute, &e))?;
                values.push(to_value(column.type_(), raw));
            }
            first = Some(values);
        }
    }
    Ok(first)
}

/// `value` for another thread: `message` itself is lent (the same bytes: same address and
/// length), everything else copied.
fn owned(value: Value<'_>, message: Option<&'static [u8]>) -> Value<'static> {
    match (value, message) {
        (Value::Bytes(Cow::Borrowed(b)), Some(m)) if std::ptr::eq(m, b) => Value::Bytes(m.into()),
        (Value::Text(t), _) => Value::Text(t.into_owned().into()),
        (Value::Bytes(b), _) => Value::Bytes(b.into_owned().into()),
    }
}

/// A zero limit means none (`recv_timeout` waits without a deadline it cannot represent).
fn unlimited_if_zero(limit: Duration) -> Duration {
    if limit.is_zero() {
        Duration::MAX
    } else {
        limit
    }
}

/// `POSTGRES://` → `postgres://`: the crate's URL parser only knows the lower-case schemes.
fn normalize_scheme(dsn: &str) -> String {
    for scheme in ["postgresql://", "postgres://"] {
        if dsn.len() >= scheme.len()
            && dsn.is_char_boundary(scheme.len())
            && dsn[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            return format!("{scheme}{}", &dsn[scheme.len()..]);
        }
    }
    dsn.to_string()
}

fn tls_unsupported() -> DbError {
    DbError::new(
        DbStep::Connect,
        Retry::Transient,
        "the DSN asks for TLS (sslmode=require/verify-ca/verify-full or sslnegotiation=direct), \
         but TLS is not supported in this build of virt_mail; not connecting in clear text \
         (use a unix socket, or sslmode=disable on a trusted network)"
            .into(),
    )
}

/// Refuses a DSN that asks for TLS. `verify-ca`/`verify-full` are checked here because the
/// crate's parser would only call them an invalid value, which hides what is wrong.
fn refuse_tls(dsn: &str) -> Result<(), DbError> {
    let Some((_, query)) = dsn.split_once('?') else {
        return Ok(());
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let wants_tls = match key {
            "sslmode" => matches!(value, "require" | "verify-ca" | "verify-full"),
            "sslnegotiation" => value == "direct",
            _ => false,
        };
        if wants_tls {
            return Err(tls_unsupported());
        }
    }
    Ok(())
}

/// The startup `options`: our time limits first, then the DSN's own options (which win,
/// since the server applies `-c` settings in order).
fn session_options(statement: Duration, dsn_options: Option<&str>) -> String {
    let ms = statement.as_millis();
    let mut options = format!(
        "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={}",
        ms.saturating_mul(2)
    );
    if let Some(extra) = dsn_options.map(str::trim).filter(|o| !o.is_empty()) {
        options.push(' ');
        options.push_str(extra);
    }
    options
}

/// `host:port/dbname` for messages: never the user's password.
fn describe(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_string()
    } else {
        hosts.join(",")
    };
    format!("PostgreSQL {hosts}/{}", config.get_dbname().unwrap_or(""))
}

/// SQLSTATEs after which the same delivery may well succeed later: the list every backend
/// shares (`sqlstate_is_transient`: connection, resources, serialization, 40003, the
/// 25P03/25P04 and 57014 time limits, lock not available, read-only…), plus PostgreSQL's
/// system (58) and internal (XX) error classes.
fn is_transient(sqlstate: &str) -> bool {
    let class = sqlstate.get(..2).unwrap_or("");
    super::sqlstate_is_transient(sqlstate) || matches!(class, "58" | "XX")
}

/// A driver error as a `DbError`: the server's message, detail and hint on one line, with its
/// SQLSTATE; errors without one (I/O, closed connection, time-out, TLS) are transient.
fn error(step: DbStep, e: &postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        return server_error(step, db.code().code(), db.message(), db.detail(), db.hint());
    }
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    DbError::new(step, Retry::Transient, message)
}

/// An error the server reported, with its SQLSTATE `code`, as one line.
fn server_error(
    step: DbStep,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) -> DbError {
    let retry = if is_transient(code) {
        Retry::Transient
    } else {
        Retry::Permanent
    };
    let mut message = message.to_string();
    if let Some(detail) = detail {
        message.push_str(" DETAIL: ");
        message.push_str(detail);
    }
    if let Some(hint) = hint {
        message.push_str(" HINT: ");
        message.push_str(hint);
    }
    if code == "57014" {
        message.push_str(" (StatementTimeout)");
    }
    DbError::new(step, retry, message).with_sqlstate(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_lent_to_the_connection_thread_and_the_rest_copied() {
        let message: &'static [u8] = Vec::from(&b"Subject: x\n\nbody"[..]).leak();
        let lent = owned(Value::Bytes(Cow::Borrowed(message)), Some(message));
        assert!(matches!(&lent, Value::Bytes(Cow::Borrowed(b)) if std::ptr::eq(*b, message)));
        // The same bytes elsewhere (a column value equal to the message) are copied.
        let copy = message.to_vec();
        let copied = owned(Value::Bytes(Cow::Borrowed(&copy)), Some(message));
        assert!(matches!(&copied, Value::Bytes(Cow::Owned(b)) if b == message));
        let text = owned(Value::Text(Cow::Borrowed("alice")), Some(message));
        assert!(matches!(text, Value::Text(Cow::Owned(t)) if t == "alice"));
        let outside_deliver = owned(Value::Bytes(Cow::Borrowed(message)), None);
        assert!(matches!(outside_deliver, Value::Bytes(Cow::Owned(_))));
    }

    #[test]
    fn sqlstates_are_classified() {
        let transient = [
            "08000", "08001", "08003", "08006", "08P01", "40001", "40P01", "55P03", "57014",
            "57P01", "57P02", "57P03", "57P05", "53000", "53100", "53200", "53300", "53400",
            "25006", "58000", "58030", "XX000", "XX001", "XX002",
            // idle_in_transaction_session_timeout, transaction_timeout (PostgreSQL 17),
            // statement_completion_unknown
            "25P03", "25P04", "40003",
        ];
        for code in transient {
            assert!(is_transient(code), "{code} should be transient");
        }
        let permanent = [
            "42601", "42P01", "42703", "42883", "42501", "23505", "23502", "23503", "22P02",
            "22001", "22021", "22012", "0A000", "28P01", "3D000", "40002", "55000", "P0001",
            "2BP01", "25P02", "",
        ];
        for code in permanent {
            assert!(!is_transient(code), "{code} should be permanent");
        }
    }

    #[test]
    fn tls_requests_are_refused_before_connecting() {
        for dsn in [
            "postgres://u:p@h/db?sslmode=require",
            "postgres://u:p@h/db?x=1&sslmode=verify-full",
            "postgresql://u@h/db?sslmode=verify-ca",
            "postgres://u@h/db?sslnegotiation=direct",
        ] {
            let e = refuse_tls(dsn).unwrap_err();
            assert_eq!(e.step, DbStep::Connect);
            assert_eq!(e.retry, Retry::Transient);
            assert!(e.message.contains("TLS is not supported"), "{}", e.message);
            assert!(!e.message.contains(dsn));
        }
        for dsn in [
            "postgres://u:p@h/db",
            "postgres://u:p@h/db?sslmode=disable",
            "postgres://u:p@h/db?sslmode=prefer",
        ] {
            assert!(refuse_tls(dsn).is_ok(), "{dsn}");
        }
    }

    #[test]
    fn limits_go_into_the_startup_options() {
        let limits = Limits {
            connect: Duration::from_secs(3),
            statement: Duration::from_secs(7),
        };
        assert_eq!(
            session_options(limits.statement, None),
            "-c statement_timeout=7000 -c lock_timeout=7000 -c idle_in_transaction_session_timeout=14000"
        );
        assert!(
            session_options(limits.statement, Some("-c search_path=mail"))
                .ends_with(" -c search_path=mail")
        );
    }

    #[test]
    fn urls_parse_in_both_socket_forms_and_any_case() {
        let by_param: Config = normalize_scheme("postgresql://u:pw@/mail?host=/run/pg&port=5433")
            .parse()
            .unwrap();
        assert!(matches!(&by_param.get_hosts()[0], Host::Unix(p) if p.as_os_str() == "/run/pg"));
        let encoded: Config = normalize_scheme("POSTGRES://u:pw@%2Frun%2Fpg:5433/mail")
            .parse()
            .unwrap();
        assert!(matches!(&encoded.get_hosts()[0], Host::Unix(p) if p.as_os_str() == "/run/pg"));
        assert_eq!(encoded.get_ports(), [5433]);
        assert_eq!(describe(&encoded), "PostgreSQL /run/pg/.s.PGSQL.5433/mail");
        let tcp: Config = "postgres://u:secret@db.example:5432/mail".parse().unwrap();
        assert_eq!(describe(&tcp), "PostgreSQL db.example:5432/mail");
    }
}
