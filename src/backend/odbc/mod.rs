//! ODBC, through unixODBC and whatever driver the connect string names: the original's only
//! way to a database, so every connect string written for it must keep working.
//!
//! Why it looks the way it does:
//! - **The original's own DSN.** `DSN=noname;HOST=h:p;UID=u;PWD=p` (what `HOST`/`PORT`/`UID`/
//!   `PWD` compose) and `HOST=…` without a driver named the Virtuoso server at HOST: the original
//!   embedded Virtuoso's client and ignored odbc.ini. With the `virtuoso` feature such a
//!   string never gets here (`backend::virtuoso` speaks the protocol itself); without it, it
//!   is sent to the Virtuoso ODBC driver (`VIRT_MAIL_VIRTUOSO_DRIVER`, else the usual install
//!   paths) as `DRIVER=…;HOST=…;UID=…;PWD=…`. Named data sources are used as given.
//! - **Values are always bound**, never spliced: texts as `SQL_VARCHAR`, the message (and any
//!   binary value) as `SQL_LONGVARBINARY` sent at execution time in chunks (`SQLPutData`), so
//!   no NUL or 8-bit byte is lost, the message is not copied and no driver column-size limit
//!   applies. The same binding stores the body intact through Virtuoso's
//!   `NEW_MAIL(varchar, any)` (which takes at most 10,000,000 bytes: Virtuoso's string limit).
//! - **Texts go NUL-terminated** as well as measured: Virtuoso's driver ignores the length of
//!   a statement text and reads up to a NUL.
//! - **CheckReturn** runs the statement as `{?=call …}` with an integer output parameter.
//!   psqlODBC (13.x, with its default server-side prepare) passes wrong input values when the
//!   return slot is bound, so for PostgreSQL the call goes as `{call …}`, which psqlODBC
//!   answers with the function's value as a row. A driver that cannot call procedures
//!   (MariaDB Connector/ODBC, SQLite) fails to prepare the call: a configuration error
//!   (EX_CONFIG) that names `{?=call}`.
//! - **Results** are read one row at a time with `SQLGetData` (no block cursors, which
//!   Virtuoso's driver reports as empty), every column converted to text by the driver, binary
//!   columns as bytes; column names are never asked for (asking Virtuoso's driver for them
//!   overruns its stack).
//! - **Time limits.** The login timeout, plus a login thread that is given up on when a
//!   server accepts the connection but never answers (Virtuoso's and MariaDB's drivers wait
//!   forever then). The driver's query timeout, plus a watchdog that cancels a statement
//!   still running past the limit (MariaDB's and SQLite's drivers accept the timeout but do
//!   not enforce it). A statement that times out is not freed: Virtuoso's driver would wait
//!   for the server to finish it. COMMIT, ROLLBACK, the autocommit switch and the disconnect
//!   have no query timeout: past the same limit a watchdog shuts the connection's sockets
//!   down under the call, which the driver then fails (`Odbc::bounded`); a COMMIT so
//!   interrupted defers the mail, its outcome unknown. Every call stays on the one thread
//!   (MariaDB's driver, called from a second thread for COMMIT, aborted with a double free).
//! - **Errors** keep every diagnostic record (SQLSTATE, native code, text) and are classified
//!   by SQLSTATE, plus MySQL/MariaDB error numbers and SQLite result codes, which those drivers
//!   report under the catch-all `HY000`. A statement the database rejects as wrong (42xxx…)
//!   is a configuration error whenever the driver notices it (psqlODBC only at execution).
//!   The connect string and its password never appear in a message.
//!
//! odbc-api is used at the level of its handles: its connection API keeps only the first
//! diagnostic record of a failed login, and its handle types panic when a free fails. Every
//! handle here is freed without panicking; a driver that refuses to disconnect leaves its
//! connection to the process exit.
//!
//! Here: the connection (login thread, transactions). `dsn`: the connect string and the
//! call escape; `statement`: one statement's binding, data at execution, watchdog and first
//! row; `diagnostics`: the driver's records and their classification.

use std::ptr::null_mut;
use std::sync::{OnceLock, mpsc};

use odbc_api::handles::{self, SqlResult};
use odbc_api::sys::{self, AttrOdbcVersion, HandleType, SqlReturn};

use super::{Backend, Limits, Row};
use crate::config::Statement;
use crate::error::{DbError, DbStep, Retry};
use crate::macros::{Macros, Placeholder};

mod diagnostics;
mod dsn;
mod statement;
mod watchdog;

use diagnostics::{Dbms, Diagnostic, classify, diagnostics, scrub, secrets, timed_out};
use dsn::{Resolved, VIRTUOSO_DRIVERS, call_escape, call_hint, resolve, virtuoso_driver};
use statement::{WATCHDOG_GRACE, nul_terminated};
use watchdog::{INTERRUPT_GRACE, Watchdog};

/// The process's ODBC environment, made on first use. `handles::Environment` is `Send` but not
/// `Sync`; it is only ever used to allocate connection handles, which ODBC allows from any
/// thread, and virt_mail connects from its main thread only.
struct SharedEnvironment(handles::Environment);

// SAFETY: see above — the handle is used for SQLAllocHandle only, which the ODBC
// specification (and unixODBC) make safe to call concurrently.
unsafe impl Sync for SharedEnvironment {}

static ENVIRONMENT: OnceLock<Option<SharedEnvironment>> = OnceLock::new();

fn environment() -> Result<&'static SharedEnvironment, DbError> {
    let shared = ENVIRONMENT.get_or_init(|| {
        let env = match handles::Environment::new() {
            SqlResult::Success(env) | SqlResult::SuccessWithInfo(env) => env,
            _ => return None,
        };
        match env.declare_version(AttrOdbcVersion::Odbc3_80) {
            SqlResult::Success(()) | SqlResult::SuccessWithInfo(()) => Some(SharedEnvironment(env)),
            _ => None,
        }
    });
    shared.as_ref().ok_or_else(|| {
        DbError::new(
            DbStep::Connect,
            Retry::Transient,
            "cannot set up an ODBC 3.8 environment (is unixODBC installed?)".into(),
        )
    })
}

fn ok(ret: SqlReturn) -> bool {
    ret == SqlReturn::SUCCESS || ret == SqlReturn::SUCCESS_WITH_INFO
}

/// A connection to an ODBC data source.
pub struct Odbc {
    /// `None` only while being dropped.
    conn: Option<handles::Connection<'static>>,
    dbms: Dbms,
    limits: Limits,
    /// Autocommit is off (between `begin` and `commit`/`rollback`).
    transaction: bool,
    /// A statement timed out: the connection is left alone (see `run`).
    abandoned: bool,
    /// The connect strings and passwords, masked out of every message.
    secrets: Vec<String>,
    /// The sockets the driver opened for this connection, shut down under a call that
    /// outlives its time limit (`Odbc::bounded`).
    sockets: Vec<i32>,
}

/// Allocates a connection handle and logs in; runs on the connection thread.
fn login(
    env: &'static SharedEnvironment,
    text: &[u8],
    limits: Limits,
    secrets: &[String],
) -> Result<(handles::Connection<'static>, Dbms), DbError> {
    let env = &env.0;
    let conn = match env.allocate_connection() {
        SqlResult::Success(c) | SqlResult::SuccessWithInfo(c) => c,
        _ => {
            let records = diagnostics(HandleType::Env, env.as_raw().as_handle());
            return Err(classify(
                DbStep::Connect,
                Dbms::Other,
                &records,
                "SQLAllocHandle",
            ));
        }
    };
    let seconds = u32::try_from(limits.connect.as_secs().max(1)).unwrap_or(u32::MAX);
    // Not every driver has a login timeout; connecting without one is still right.
    let _ = conn.set_login_timeout_sec(seconds);
    let mut out_len = 0i16;
    // SAFETY: the connect string is NUL-terminated and its length (without the NUL, checked
    // to fit) is passed; no completed string is asked for and no prompt can appear.
    let ret = unsafe {
        sys::SQLDriverConnect(
            conn.as_sys(),
            null_mut(),
            text.as_ptr(),
            (text.len() - 1) as i16,
            null_mut(),
            0,
            &mut out_len,
            sys::DriverConnectOption::NoPrompt,
        )
    };
    if !ok(ret) {
        let records = diagnostics(HandleType::Dbc, conn.as_sys().as_handle());
        let error = classify(DbStep::Connect, Dbms::Other, &records, "SQLDriverConnect");
        return Err(scrub(error, secrets));
    }
    let mut name = Vec::new();
    let dbms = match conn.fetch_database_management_system_name(&mut name) {
        SqlResult::Success(()) | SqlResult::SuccessWithInfo(()) => {
            let name = String::from_utf8_lossy(&name).into_owned();
            crate::debug!("odbc: connected to {name}");
            Dbms::from_name(&name)
        }
        _ => Dbms::Other,
    };
    Ok((conn, dbms))
}

/// Whether the driver reports the connection as lost (`SQL_ATTR_CONNECTION_DEAD`). A driver
/// that does not know the attribute counts as alive: its COMMIT is trusted as before.
fn connection_dead(conn: &handles::Connection<'static>) -> bool {
    matches!(
        conn.is_dead(),
        SqlResult::Success(true) | SqlResult::SuccessWithInfo(true)
    )
}

fn succeeded(result: SqlResult<()>) -> bool {
    matches!(
        result,
        SqlResult::Success(()) | SqlResult::SuccessWithInfo(())
    )
}

/// How a COMMIT call ended, when it ended in time.
enum Ended {
    Committed,
    /// The driver reported an error (its records are on the connection handle).
    Failed,
    /// The connection was found lost before COMMIT: nothing was committed.
    DeadBefore,
    /// The connection was found lost after COMMIT: whether it took effect is unknown.
    DeadAfter,
}

/// Why a bounded call gave no answer.
enum Unanswered {
    /// Still running at the limit: interrupted, and the connection abandoned.
    Stalled(std::time::Duration),
    /// The connection is closed or was abandoned earlier.
    Closed,
}

impl Unanswered {
    /// The transient error for `what` (a COMMIT that was sent has an unknown outcome).
    fn error(self, step: DbStep, what: &str) -> DbError {
        let unknown = if step == DbStep::Commit {
            ": the outcome of the COMMIT is unknown, so the mail is deferred"
        } else {
            ""
        };
        let message = match self {
            Unanswered::Stalled(limit) => format!(
                "no answer to {what} within {} s (StatementTimeout = {} s, plus {} s){unknown}; \
                 connection abandoned",
                limit.as_secs(),
                limit.saturating_sub(WATCHDOG_GRACE).as_secs(),
                WATCHDOG_GRACE.as_secs()
            ),
            Unanswered::Closed => format!("{what}: the ODBC connection is closed"),
        };
        DbError::new(step, Retry::Transient, message)
    }
}

/// Turns Nagle's algorithm off on the TCP sockets the driver opened. Some drivers write one
/// request in several small pieces (Virtuoso's sends the end of a data-at-execution value as
/// a 1-byte write of its own), and that piece then waits for the server's delayed ACK: 40 ms
/// per delivery, measured (docs/PERFORMANCE.md). The driver's sockets are the only TCP
/// sockets this process has; anything else (a unix socket, a pipe) is left alone.
fn no_delay_on_tcp_sockets(sockets: &[(i32, nix::libc::c_int)]) {
    use nix::libc;
    for &(fd, domain) in sockets {
        if !matches!(domain, libc::AF_INET | libc::AF_INET6) {
            continue;
        }
        let one: libc::c_int = 1;
        let size = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: setsockopt with a correctly sized buffer on a socket descriptor; nothing is
        // closed or changed but the option.
        let ok = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const one).cast(),
                size,
            )
        } == 0;
        crate::debug!("odbc: TCP_NODELAY on descriptor {fd}: {ok}");
    }
}

/// The socket descriptors among them, with their address family.
fn sockets() -> Vec<(i32, nix::libc::c_int)> {
    use nix::libc;
    super::open_fds()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|fd| {
            let mut domain: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt with a correctly sized buffer; on a descriptor that is not
            // a socket it fails.
            let ret = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_DOMAIN,
                    (&raw mut domain).cast(),
                    &mut len,
                )
            };
            (ret == 0).then_some((fd, domain))
        })
        .collect()
}

/// Shuts the connection's sockets down, both ways: a driver blocked on one of them then
/// fails its call as a lost connection. The descriptors stay open (the driver owns them).
fn shut_down(sockets: &[i32]) {
    for &fd in sockets {
        // SAFETY: shutdown(2) on a descriptor number changes no memory; at worst it fails.
        let ok = unsafe { nix::libc::shutdown(fd, nix::libc::SHUT_RDWR) } == 0;
        crate::debug!("odbc: socket {fd} shut down: {ok}");
    }
}

/// Closes a connection. A driver that will not disconnect keeps it until the process exits
/// (freeing a connected handle fails, and odbc-api panics when a free fails).
fn disconnect(mut conn: handles::Connection<'static>) {
    let done =
        |r: SqlResult<()>| matches!(r, SqlResult::Success(()) | SqlResult::SuccessWithInfo(()));
    if done(conn.disconnect()) {
        return;
    }
    let _ = conn.rollback();
    if !done(conn.disconnect()) {
        std::mem::forget(conn);
    }
}

impl Odbc {
    pub fn connect(connect_string: &str, limits: Limits) -> Result<Odbc, DbError> {
        let mut secrets = secrets(connect_string);
        let fail = |message: String| DbError::new(DbStep::Connect, Retry::Transient, message);
        let target = match resolve(connect_string, virtuoso_driver().as_deref()) {
            Resolved::AsGiven => connect_string.to_string(),
            Resolved::Virtuoso(rewritten) => {
                crate::debug!(
                    "odbc: HOST without DRIVER or data source: the original's Virtuoso server, \
                     through the Virtuoso ODBC driver"
                );
                secrets.extend(self::secrets(&rewritten));
                rewritten
            }
            Resolved::NoVirtuosoDriver => {
                return Err(fail(format!(
                    "the DSN names a Virtuoso server (HOST=…) but no Virtuoso ODBC driver was \
                     found: set VIRT_MAIL_VIRTUOSO_DRIVER in [Environment] to the path of \
                     virtodbc_r.so (looked in {})",
                    VIRTUOSO_DRIVERS.join(", ")
                )));
            }
        };
        if i16::try_from(target.len()).is_err() {
            return Err(fail(
                "the ODBC connect string is longer than 32767 bytes".into(),
            ));
        }
        let Some(text) = nul_terminated(&target) else {
            return Err(fail(
                "the ODBC connect string contains a NUL character".into(),
            ));
        };
        let env = environment()?;
        // Some drivers (Virtuoso's, MariaDB's) ignore the login timeout while a server that
        // accepted the connection does not answer: the login runs on its own thread, and is
        // given up (the mail waits) when it takes too long.
        // Sockets only: listing the descriptors opens one of its own, free again afterwards.
        let before: Vec<i32> = sockets().into_iter().map(|(fd, _)| fd).collect();
        let (sender, receiver) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("odbc-connect".into())
            .spawn({
                let secrets = secrets.clone();
                move || {
                    let result = login(env, &text, limits, &secrets);
                    if let Err(mpsc::SendError(Ok((conn, _)))) = sender.send(result) {
                        // Given up on meanwhile: nobody will use this connection.
                        disconnect(conn);
                    }
                }
            });
        if let Err(e) = spawned {
            return Err(fail(format!("cannot start the connection thread: {e}")));
        }
        let (conn, dbms) = match receiver.recv_timeout(limits.connect + WATCHDOG_GRACE) {
            Ok(result) => result?,
            Err(_) => {
                return Err(fail(format!(
                    "no answer from the data source within {} s (ConnectTimeout)",
                    limits.connect.as_secs()
                )));
            }
        };
        // The driver's sockets: those the login opened.
        let mut sockets = sockets();
        sockets.retain(|(fd, _)| !before.contains(fd));
        no_delay_on_tcp_sockets(&sockets);
        let sockets = sockets.into_iter().map(|(fd, _)| fd).collect();
        Ok(Odbc {
            conn: Some(conn),
            dbms,
            limits,
            transaction: false,
            abandoned: false,
            sockets,
            secrets,
        })
    }

    /// Runs `work` on the connection within the statement limit plus the watchdog's grace.
    /// ODBC's query timeout is a statement attribute: nothing bounds SQLEndTran (a deferred
    /// trigger can make COMMIT run for as long as it likes) or a connection attribute the
    /// driver sends to the server, and there is no statement to cancel. Past the limit the
    /// watchdog shuts the connection's sockets down under the call, so that the driver
    /// fails it as a lost connection; the connection is then abandoned (the session ends
    /// with the process), and a call that does not return even so ends the run.
    fn bounded<R>(
        &mut self,
        what: &str,
        work: impl FnOnce(&handles::Connection<'static>) -> R,
    ) -> Result<R, Unanswered> {
        let Some(conn) = self.conn.as_ref().filter(|_| !self.abandoned) else {
            return Err(Unanswered::Closed);
        };
        let limit = self.limits.statement + WATCHDOG_GRACE;
        let sockets = self.sockets.clone();
        let watchdog = Watchdog::arm(
            limit,
            move || shut_down(&sockets),
            format!(
                "{what} has had no answer for {} s, past its time limit, even with the \
                 connection shut down: giving up (delivered if a COMMIT was acknowledged \
                 before, else deferred: the outcome of a COMMIT still running is unknown)",
                (limit + INTERRUPT_GRACE).as_secs()
            ),
        );
        let answer = work(conn);
        if watchdog.fired() {
            self.abandoned = true;
            return Err(Unanswered::Stalled(limit));
        }
        Ok(answer)
    }

    fn error(&self, step: DbStep, records: &[Diagnostic], what: &str) -> DbError {
        scrub(classify(step, self.dbms, records, what), &self.secrets)
    }

    fn connection_error(&self, step: DbStep, what: &str) -> DbError {
        let records = match &self.conn {
            Some(conn) => diagnostics(HandleType::Dbc, conn.as_sys().as_handle()),
            None => Vec::new(),
        };
        self.error(step, &records, what)
    }
}

impl Backend for Odbc {
    fn run(&mut self, statement: &Statement, macros: &Macros<'_>) -> Result<Option<Row>, DbError> {
        let bound = statement.template.bind(macros, Placeholder::Question);
        let call = statement.check_return.is_some();
        let sql = if call {
            call_escape(&bound.sql, self.dbms)
        } else {
            bound.sql.clone()
        };
        if call {
            crate::debug!("odbc: CheckReturn: running {sql}");
        }
        let stmt = self.statement()?;
        let returns = call && self.dbms != Dbms::PostgreSql;
        let result = self.execute(&stmt, &sql, &bound.params, returns);
        if result.as_ref().is_err_and(timed_out) {
            // Virtuoso's driver frees a timed-out statement only once the server has finished
            // it (however long that takes): leave statement and connection to the exit.
            std::mem::forget(stmt);
            self.abandoned = true;
        } else {
            drop(stmt);
        }
        result.map_err(|mut e| {
            if call && e.step == DbStep::Prepare && e.retry == Retry::Permanent {
                e.message.push_str(call_hint(self.dbms));
            }
            e
        })
    }

    fn begin(&mut self) -> Result<(), DbError> {
        // MariaDB's driver sends the switch to the server, which may not answer: bounded.
        match self.bounded("switching autocommit off", |conn| {
            succeeded(conn.set_autocommit(false))
        }) {
            Ok(true) => {
                self.transaction = true;
                Ok(())
            }
            Ok(false) => {
                Err(self.connection_error(DbStep::Execute, "SQLSetConnectAttr(AUTOCOMMIT)"))
            }
            Err(e) => Err(e.error(DbStep::Execute, "switching autocommit off")),
        }
    }

    fn commit(&mut self) -> Result<(), DbError> {
        // A driver that has seen its connection fail may forget the open transaction and
        // answer COMMIT with success without sending anything: psqlODBC does, when the
        // server goes away right after the Deliver statement (measured: exit 0, no row).
        // So the connection must still be alive before COMMIT (else nothing was committed)
        // and after it (else nobody can tell whether it was: deferring may store the
        // message twice, which a Duplicate statement prevents; reporting success might
        // lose it).
        let ended = self.bounded("COMMIT", |conn| {
            if connection_dead(conn) {
                Ended::DeadBefore
            } else if !succeeded(conn.commit()) {
                Ended::Failed
            } else if connection_dead(conn) {
                Ended::DeadAfter
            } else {
                Ended::Committed
            }
        });
        match ended {
            Ok(Ended::Committed) => {}
            Ok(Ended::Failed) => {
                return Err(self.connection_error(DbStep::Commit, "SQLEndTran(COMMIT)"));
            }
            Ok(Ended::DeadBefore) => {
                self.transaction = false;
                return Err(DbError::new(
                    DbStep::Commit,
                    Retry::Transient,
                    "the connection to the data source was lost before COMMIT: nothing was \
                     committed"
                        .into(),
                ));
            }
            Ok(Ended::DeadAfter) => {
                self.transaction = false;
                return Err(DbError::new(
                    DbStep::Commit,
                    Retry::Transient,
                    "the connection to the data source was lost during COMMIT: whether the \
                     mail was committed is unknown, so it is deferred"
                        .into(),
                ));
            }
            Err(e) => return Err(e.error(DbStep::Commit, "COMMIT")),
        }
        self.transaction = false;
        // Committed: the switch back on can only cost time (bounded on its own, so that it
        // cannot make a COMMIT that succeeded look unanswered).
        let switched = self.bounded("switching autocommit on", |conn| {
            succeeded(conn.set_autocommit(true))
        });
        if !matches!(switched, Ok(true)) {
            crate::debug!("odbc: autocommit could not be switched back on after COMMIT");
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        if !self.transaction || self.abandoned || self.conn.is_none() {
            // Abandoned: the server rolls back when the session ends with the process.
            return Ok(());
        }
        let rolled_back = self.bounded("ROLLBACK", |conn| {
            let done = succeeded(conn.rollback());
            if done {
                let _ = conn.set_autocommit(true);
            }
            done
        });
        match rolled_back {
            Ok(true) => {
                self.transaction = false;
                Ok(())
            }
            Ok(false) => Err(self.connection_error(DbStep::Execute, "SQLEndTran(ROLLBACK)")),
            Err(e) => Err(e.error(DbStep::Execute, "ROLLBACK")),
        }
    }
}

impl Drop for Odbc {
    /// Rolls back what is still open and disconnects, within the time limit too (a server
    /// that stopped answering must not hold the exit status back); past it, or when the
    /// connection was abandoned, the session ends with the process and nothing is committed.
    fn drop(&mut self) {
        if self.conn.is_some() && !self.abandoned {
            let transaction = self.transaction;
            let _ = self.bounded("closing the connection", move |conn| {
                if transaction {
                    let _ = conn.rollback();
                }
                // SAFETY: this connection's own handle, freed here only: the `Odbc` forgets
                // its copy below.
                disconnect(unsafe { handles::Connection::new(conn.as_sys()) });
            });
        }
        std::mem::forget(self.conn.take());
    }
}
