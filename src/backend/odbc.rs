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
//!   for the server to finish it.
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

use std::ffi::c_void;
use std::path::Path;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc};
use std::time::Duration;

use odbc_api::handles::{self, SqlResult};
use odbc_api::sys::{
    self, AttrOdbcVersion, CDataType, HStmt, Handle, HandleType, Len, ParamType, Pointer,
    SqlDataType, SqlReturn, StatementAttribute,
};

use super::{Backend, Limits, Row};
use crate::config::Statement;
use crate::error::{DbError, DbStep, Retry, one_line};
use crate::macros::{Macros, Placeholder, Value};
use crate::report::{dsn_secrets, mask_all, odbc_attributes};

/// Where the Virtuoso ODBC driver usually is (Debian/Ubuntu multiarch, other distributions,
/// OpenLink's own builds). `VIRT_MAIL_VIRTUOSO_DRIVER` overrides the search.
const VIRTUOSO_DRIVERS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/odbc/virtodbc_r.so",
    "/usr/lib/aarch64-linux-gnu/odbc/virtodbc_r.so",
    "/usr/lib/odbc/virtodbc_r.so",
    "/usr/lib64/odbc/virtodbc_r.so",
    "/usr/lib64/virtodbc_r.so",
    "/usr/local/lib/virtodbc_r.so",
    "/usr/local/virtuoso-opensource/lib/virtodbc_r.so",
    "/opt/virtuoso-opensource/lib/virtodbc_r.so",
    "/opt/virtuoso/lib/virtodbc_r.so",
];

/// The SQL type of every binary value, the message included.
const LONG_VARBINARY: SqlDataType = SqlDataType::EXT_LONG_VAR_BINARY;

/// Bytes per `SQLPutData` call: well under any MySQL `max_allowed_packet`.
const CHUNK: usize = 256 * 1024;

/// How long past the statement limit the watchdog waits before it cancels, so that a driver
/// enforcing the query timeout itself reports it first (its message is clearer).
const WATCHDOG_GRACE: Duration = Duration::from_secs(1);

/// At most this many diagnostic records are read after a failure.
const MAX_RECORDS: i16 = 20;

/// The database behind the driver, where its errors or its calls need special care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dbms {
    Virtuoso,
    PostgreSql,
    /// MySQL or MariaDB (Connector/ODBC reports server error numbers as native codes).
    MySql,
    /// SQLite (Christian Werner's driver reports SQLite result codes as native codes).
    Sqlite,
    Other,
}

impl Dbms {
    fn from_name(name: &str) -> Dbms {
        let name = name.to_ascii_lowercase();
        if name.contains("virtuoso") {
            Dbms::Virtuoso
        } else if name.contains("postgres") {
            Dbms::PostgreSql
        } else if name.contains("mysql") || name.contains("mariadb") {
            Dbms::MySql
        } else if name.contains("sqlite") {
            Dbms::Sqlite
        } else {
            Dbms::Other
        }
    }
}

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

/// One diagnostic record.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Diagnostic {
    state: String,
    native: i32,
    message: String,
}

fn diagnostics(handle_type: HandleType, handle: Handle) -> Vec<Diagnostic> {
    let mut records = Vec::new();
    for number in 1..=MAX_RECORDS {
        let mut state = [0u8; 6];
        let mut native = 0i32;
        let mut text = vec![0u8; 1024];
        let mut len = 0i16;
        // SAFETY: every buffer is valid and its length is passed; the handle is live.
        let ret = unsafe {
            sys::SQLGetDiagRec(
                handle_type,
                handle,
                number,
                state.as_mut_ptr(),
                &mut native,
                text.as_mut_ptr(),
                text.len() as i16,
                &mut len,
            )
        };
        if ret != SqlReturn::SUCCESS && ret != SqlReturn::SUCCESS_WITH_INFO {
            break;
        }
        // The text is NUL-terminated; some drivers misreport its length, so the NUL decides.
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        text.truncate(end);
        let state_len = state.iter().position(|&b| b == 0).unwrap_or(5);
        records.push(Diagnostic {
            state: String::from_utf8_lossy(&state[..state_len]).into_owned(),
            native,
            message: String::from_utf8_lossy(&text).into_owned(),
        });
    }
    records
}

/// Whether a record says that trying again later can succeed.
fn transient(dbms: Dbms, d: &Diagnostic) -> bool {
    let by_state = super::sqlstate_is_transient(&d.state);
    let by_native = match dbms {
        // Server and client error numbers: lock wait, deadlock, too many connections, server
        // gone or shutting down, read-only (fail-over), interrupted or timed-out query,
        // out of memory or disk.
        Dbms::MySql => matches!(
            d.native,
            1021 | 1037
                | 1038
                | 1040
                | 1053
                | 1203
                | 1205
                | 1213
                | 1290
                | 1317
                | 1836
                | 1927
                | 1969
                | 2002
                | 2003
                | 2006
                | 2013
                | 2055
                | 4031
        ),
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_INTERRUPT (the watchdog),
        // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
        Dbms::Sqlite => matches!(d.native & 0xff, 5 | 6 | 7 | 9 | 10 | 13 | 14),
        _ => false,
    };
    by_state || by_native
}

/// Whether a record says the statement itself is wrong (syntax, unknown table or procedure,
/// wrong parameters, unsupported feature): the configuration's fault, whenever the driver
/// happens to notice it.
fn configuration(dbms: Dbms, d: &Diagnostic) -> bool {
    super::sqlstate_is_configuration(&d.state)
        // SQLite ODBC reports prepare failures (syntax, no such table) as HY000/SQLITE_ERROR,
        // sometimes only when the statement runs.
        || (dbms == Dbms::Sqlite && d.state == "HY000" && d.native == 1)
}

/// A driver failure as a `DbError`: every record in the message, the first error's SQLSTATE
/// and native code, transient when any record says so, and the step moved to `Prepare` when
/// the statement itself is at fault.
fn classify(step: DbStep, dbms: Dbms, records: &[Diagnostic], what: &str) -> DbError {
    // A failure the driver cannot even describe (psqlODBC on a connection whose server
    // died) says nothing about the statement: assume the fault passes.
    let unexplained = records.iter().all(|d| d.state.starts_with("01"));
    let retry =
        if step == DbStep::Connect || unexplained || records.iter().any(|d| transient(dbms, d)) {
            Retry::Transient
        } else {
            Retry::Permanent
        };
    let step = if retry == Retry::Permanent
        && step == DbStep::Execute
        && records.iter().any(|d| configuration(dbms, d))
    {
        DbStep::Prepare
    } else {
        step
    };
    // The first record that is not a warning (01xxx) names the error.
    let main = records
        .iter()
        .find(|d| !d.state.starts_with("01"))
        .or(records.first());
    let mut message = String::new();
    for d in records {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&one_line(&d.message));
        if main.is_some_and(|m| !std::ptr::eq(m, d)) && !d.state.is_empty() {
            message.push_str(&format!(" (SQLSTATE={})", d.state));
        }
    }
    if message.is_empty() {
        message = format!("{what} failed without a diagnostic record");
    }
    let mut error = DbError::new(step, retry, message);
    if let Some(main) = main {
        if !main.state.is_empty() {
            error = error.with_sqlstate(main.state.clone());
        }
        if main.native != 0 {
            error = error.with_native(main.native.to_string());
        }
    }
    error
}

/// Replaces the connect string and its passwords wherever they appear in a message.
fn scrub(mut error: DbError, secrets: &[String]) -> DbError {
    error.message = mask_all(&error.message, secrets);
    error
}

/// The passwords in a connect string (and the string itself), never to be shown.
fn secrets(connect: &str) -> Vec<String> {
    let mut out = vec![connect.to_string()];
    out.extend(dsn_secrets(connect));
    out
}

/// What a connect string asks for.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    /// A data source or driver the driver manager knows: used as given.
    AsGiven,
    /// The original's Virtuoso form, rewritten for the Virtuoso driver.
    Virtuoso(String),
    /// The Virtuoso form, but no Virtuoso driver was found.
    NoVirtuosoDriver,
}

/// Recognises the original's "Virtuoso server at HOST" strings: a `HOST` attribute, no
/// `DRIVER` (or `FILEDSN`), and no data source name or the placeholder `noname` the original
/// composed. The rewrite names the driver and keeps every other attribute as written.
fn resolve(connect: &str, virtuoso_driver: Option<&str>) -> Resolved {
    if !super::is_originals_virtuoso_form(connect) {
        return Resolved::AsGiven;
    }
    let Some(driver) = virtuoso_driver else {
        return Resolved::NoVirtuosoDriver;
    };
    let mut out = format!("DRIVER={{{driver}}}");
    for (k, v) in odbc_attributes(connect) {
        if !k.eq_ignore_ascii_case("DSN") {
            out.push(';');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
    }
    Resolved::Virtuoso(out)
}

/// The Virtuoso ODBC driver to use for the original's DSN form.
fn virtuoso_driver() -> Option<String> {
    if let Some(path) = std::env::var_os("VIRT_MAIL_VIRTUOSO_DRIVER") {
        if !path.is_empty() {
            return Some(path.to_string_lossy().into_owned());
        }
    }
    VIRTUOSO_DRIVERS
        .iter()
        .find(|p| Path::new(p).is_file())
        .map(|p| p.to_string())
}

/// `{?=call …}` around a configured procedure call (`DB.DBA.CHECK_USER(?)`, or with a
/// leading `call`). PostgreSQL gets `{call …}`: see the module comment.
fn call_escape(sql: &str, dbms: Dbms) -> String {
    let body = super::procedure_call(sql);
    match dbms {
        Dbms::PostgreSql => format!("{{call {body}}}"),
        _ => format!("{{?=call {body}}}"),
    }
}

/// Why a CheckReturn statement failed to prepare, for the administrator.
fn call_hint(dbms: Dbms) -> &'static str {
    match dbms {
        Dbms::MySql => {
            "; CheckReturn runs the statement as {?=call …}, which MariaDB/MySQL Connector/ODBC \
             does not support: use Verify/Deliver without CheckReturn (e.g. SELECT f(…)) or the \
             native mysql:// backend"
        }
        Dbms::Sqlite => {
            "; CheckReturn runs the statement as {?=call …}, and SQLite has no procedures: use \
             Verify/Deliver without CheckReturn"
        }
        Dbms::PostgreSql => {
            "; CheckReturn runs the statement as {call …}: it must call a function that returns \
             an integer"
        }
        _ => {
            "; CheckReturn runs the statement as {?=call …}: it must call a procedure that \
             returns an integer, through a driver that supports that escape"
        }
    }
}

/// Text for a driver, NUL-terminated as well as measured: Virtuoso's driver reads statement
/// texts up to a NUL whatever length it is given, so an unterminated text picks up whatever
/// follows it in memory (seen as random "SQ074" syntax errors).
fn nul_terminated(text: &str) -> Option<Vec<u8>> {
    if text.contains('\0') {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() + 1);
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    Some(out)
}

/// A statement time limit fired (the driver's or ours).
fn timed_out(error: &DbError) -> bool {
    matches!(
        error.sqlstate.as_deref(),
        Some("HYT00" | "HYT01" | "S1T00" | "HY008")
    )
}

fn ok(ret: SqlReturn) -> bool {
    ret == SqlReturn::SUCCESS || ret == SqlReturn::SUCCESS_WITH_INFO
}

/// A statement handle, freed on drop without ever panicking (odbc-api's own handle types
/// panic when a free fails).
struct Stmt {
    handle: HStmt,
}

impl Stmt {
    fn diagnostics(&self) -> Vec<Diagnostic> {
        diagnostics(HandleType::Stmt, self.handle.as_handle())
    }

    /// Ends an unfinished data-at-execution exchange, so the handle can be freed.
    fn cancel_data_at_execution(&self) {
        // SAFETY: the handle is live; cancelling a need-data sequence is local to the driver.
        let _ = unsafe { sys::SQLCancel(self.handle) };
    }

    /// Binds an input parameter.
    ///
    /// # Safety
    ///
    /// `value` and `indicator` must stay valid and unmoved until the statement has run.
    #[allow(clippy::too_many_arguments)]
    unsafe fn bind_input(
        &self,
        number: u16,
        c_type: CDataType,
        sql_type: SqlDataType,
        size: usize,
        value: Pointer,
        length: Len,
        indicator: *mut Len,
    ) -> SqlReturn {
        // SAFETY: as the caller promises.
        unsafe {
            sys::SQLBindParameter(
                self.handle,
                number,
                ParamType::Input,
                c_type,
                sql_type,
                size,
                0,
                value,
                length,
                indicator,
            )
        }
    }

    /// `None` when the text cannot be sent (an embedded NUL, or too long).
    fn prepare(&self, sql: &str) -> Option<SqlReturn> {
        let text = nul_terminated(sql)?;
        let len = i32::try_from(sql.len()).ok()?;
        // SAFETY: the text outlives the call; it is NUL-terminated and its length is passed.
        Some(unsafe { sys::SQLPrepare(self.handle, text.as_ptr(), len) })
    }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the handle is live until SQLFreeHandle; return codes are ignored on purpose.
        // (No SQLCancel here: Virtuoso's waits for a timed-out statement to finish.)
        unsafe {
            let _ = sys::SQLFreeHandle(HandleType::Stmt, self.handle.as_handle());
        }
    }
}

/// Cancels a statement that is still running when its time is up, for drivers that accept a
/// query timeout but do not enforce it. Should the cancel not free the statement either (a
/// server that stopped answering), the watchdog reports it and raises SIGALRM, which ends
/// the run with the mailer's "try again" status (`signals.rs`): uncommitted, the mail waits.
/// Dropping the watchdog disarms it; the statement handle is never touched after that.
struct Watchdog {
    shared: Arc<WatchdogState>,
}

struct WatchdogState {
    /// Set when the statement is done; guards the handle while a cancel is in flight.
    done: Mutex<bool>,
    wake: Condvar,
    /// The same, readable while a cancel holds `done`.
    finished: AtomicBool,
}

/// How long a cancelled statement may take to give up before the run is ended.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// The raw handle, moved to the watchdog's threads.
#[derive(Clone, Copy)]
struct SendHandle(HStmt);

// SAFETY: ODBC allows SQLCancel on a statement from another thread while it executes; it is
// called only with the `done` lock held and `done` false, and `Watchdog::drop` takes that lock
// before the handle can be freed.
unsafe impl Send for SendHandle {}

impl Watchdog {
    fn arm(stmt: &Stmt, limit: Duration) -> Watchdog {
        let shared = Arc::new(WatchdogState {
            done: Mutex::new(false),
            wake: Condvar::new(),
            finished: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let handle = SendHandle(stmt.handle);
        let spawned = std::thread::Builder::new()
            .name("odbc-watchdog".into())
            .spawn(move || watch(&theirs, handle, limit));
        if let Err(e) = spawned {
            crate::debug!("odbc: no statement watchdog ({e})");
        }
        Watchdog { shared }
    }
}

fn watch(state: &Arc<WatchdogState>, handle: SendHandle, limit: Duration) {
    {
        let guard = state.done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = state
            .wake
            .wait_timeout_while(guard, limit, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        if *guard {
            return;
        }
    }
    crate::debug!("odbc: statement still running after {limit:?}: cancelling it");
    // The cancel itself may block (some drivers wait for the server): on its own thread.
    let canceller = Arc::clone(state);
    let _ = std::thread::Builder::new()
        .name("odbc-cancel".into())
        .spawn(move || {
            let handle = handle;
            let done = canceller.done.lock().unwrap_or_else(|e| e.into_inner());
            if !*done {
                // SAFETY: the statement cannot be freed while `done` is held and false.
                let _ = unsafe { sys::SQLCancel(handle.0) };
            }
        });
    let deadline = std::time::Instant::now() + CANCEL_GRACE;
    while std::time::Instant::now() < deadline {
        if state.finished.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::report::error(&format!(
        "a statement has been running for {} s, past its time limit, and does not react to \
         being cancelled: giving up (nothing was committed; the mail stays queued)",
        (limit + CANCEL_GRACE).as_secs()
    ));
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGALRM);
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.finished.store(true, Ordering::SeqCst);
        *self.shared.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
    }
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

/// Turns Nagle's algorithm off on the TCP sockets the driver opened. Some drivers write one
/// request in several small pieces (Virtuoso's sends the end of a data-at-execution value as
/// a 1-byte write of its own), and that piece then waits for the server's delayed ACK: 40 ms
/// per delivery, measured (docs/PERFORMANCE.md). The driver's sockets are the only TCP
/// sockets this process has; anything else (a unix socket, a pipe) is left alone.
fn no_delay_on_tcp_sockets() {
    use nix::libc;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let mut domain: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt/setsockopt with correctly sized buffers on a descriptor number;
        // on anything that is not a TCP socket they fail or are skipped, and nothing is
        // closed or changed but the option.
        unsafe {
            let ptr = (&raw mut domain).cast();
            if libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, ptr, &mut len) != 0
                || !matches!(domain, libc::AF_INET | libc::AF_INET6)
            {
                continue;
            }
            let one: libc::c_int = 1;
            let size = size_of::<libc::c_int>() as libc::socklen_t;
            let ok = libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const one).cast(),
                size,
            ) == 0;
            crate::debug!("odbc: TCP_NODELAY on descriptor {fd}: {ok}");
        }
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
        no_delay_on_tcp_sockets();
        Ok(Odbc {
            conn: Some(conn),
            dbms,
            limits,
            transaction: false,
            abandoned: false,
            secrets,
        })
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

    fn statement(&self) -> Result<Stmt, DbError> {
        let Some(conn) = &self.conn else {
            return Err(DbError::new(
                DbStep::Execute,
                Retry::Transient,
                "the ODBC connection is closed".into(),
            ));
        };
        let mut handle = Handle::null();
        // SAFETY: the connection handle is live; `handle` receives the new statement.
        let ret = unsafe {
            sys::SQLAllocHandle(HandleType::Stmt, conn.as_sys().as_handle(), &mut handle)
        };
        if !ok(ret) {
            return Err(self.connection_error(DbStep::Execute, "SQLAllocHandle"));
        }
        let stmt = Stmt {
            handle: handle.as_hstmt(),
        };
        let seconds = self.limits.statement.as_secs().max(1) as usize;
        // SAFETY: an integer attribute passed by value, as ODBC specifies.
        let ret = unsafe {
            sys::SQLSetStmtAttr(
                stmt.handle,
                StatementAttribute::QueryTimeout,
                seconds as Pointer,
                0,
            )
        };
        if !ok(ret) {
            // HYC00 "optional feature not implemented": the watchdog still applies.
            crate::debug!("odbc: the driver has no query timeout; the watchdog alone applies");
        }
        Ok(stmt)
    }

    /// Prepares, binds, executes (sending large values in chunks) and reads the first row.
    /// `returns`: the statement is `{?=call …}`; its integer output parameter is the row.
    fn execute(
        &self,
        stmt: &Stmt,
        sql: &str,
        params: &[Value<'_>],
        returns: bool,
    ) -> Result<Option<Row>, DbError> {
        let fail = |step: DbStep, what: &str| self.error(step, &stmt.diagnostics(), what);
        match stmt.prepare(sql) {
            Some(ret) if ok(ret) => {}
            Some(_) => return Err(fail(DbStep::Prepare, "SQLPrepare")),
            None => {
                return Err(DbError::new(
                    DbStep::Prepare,
                    Retry::Permanent,
                    "the statement contains a NUL character or is too long".into(),
                ));
            }
        }
        // Bound buffers: they must stay where they are until the statement has run. Texts
        // are sent NUL-terminated too (see `nul_terminated`); the indicator still gives their
        // length, so a NUL inside a value is kept by drivers that honour it.
        let offset = usize::from(returns);
        let texts: Vec<Vec<u8>> = params
            .iter()
            .map(|v| match v {
                Value::Text(t) => {
                    let mut b = Vec::with_capacity(t.len() + 1);
                    b.extend_from_slice(t.as_bytes());
                    b.push(0);
                    b
                }
                Value::Bytes(_) => Vec::new(),
            })
            .collect();
        let mut indicators: Vec<Len> = std::iter::repeat_n(0, offset)
            .chain(params.iter().map(|v| match v {
                Value::Text(t) => t.len() as Len,
                Value::Bytes(b) if b.is_empty() => 0,
                Value::Bytes(b) => sys::len_data_at_exec(b.len() as Len),
            }))
            .collect();
        let indicator = indicators.as_mut_ptr();
        let mut returned: i32 = 0;
        let empty = [0u8; 1];
        if u16::try_from(indicators.len()).is_err() {
            return Err(DbError::new(
                DbStep::Prepare,
                Retry::Permanent,
                "too many parameters".into(),
            ));
        }
        if returns {
            // SAFETY: `returned` and the indicator outlive the execution below.
            let ret = unsafe {
                sys::SQLBindParameter(
                    stmt.handle,
                    1,
                    ParamType::Output,
                    CDataType::SLong,
                    SqlDataType::INTEGER,
                    0,
                    0,
                    (&raw mut returned).cast::<c_void>(),
                    std::mem::size_of::<i32>() as Len,
                    indicator,
                )
            };
            if !ok(ret) {
                return Err(fail(DbStep::Prepare, "SQLBindParameter"));
            }
        }
        for (i, value) in params.iter().enumerate() {
            let slot = i + offset;
            let number = (slot + 1) as u16;
            // SAFETY: `slot` is within `indicators`, which is neither moved nor resized.
            let indicator = unsafe { indicator.add(slot) };
            // SAFETY (all three): the value and its indicator stay alive and unmoved until
            // the statement has run.
            let ret = match value {
                Value::Text(_) => {
                    let bytes = &texts[i][..texts[i].len() - 1];
                    let sql_type = if bytes.len() > 8000 {
                        SqlDataType::EXT_LONG_VARCHAR
                    } else {
                        SqlDataType::VARCHAR
                    };
                    let value = bytes.as_ptr() as Pointer;
                    let (size, length) = (bytes.len().max(1), bytes.len() as Len);
                    unsafe {
                        stmt.bind_input(
                            number,
                            CDataType::Char,
                            sql_type,
                            size,
                            value,
                            length,
                            indicator,
                        )
                    }
                }
                // Zero bytes: a valid pointer that is never read.
                Value::Bytes(bytes) if bytes.is_empty() => unsafe {
                    let value = empty.as_ptr() as Pointer;
                    stmt.bind_input(
                        number,
                        CDataType::Binary,
                        LONG_VARBINARY,
                        1,
                        value,
                        0,
                        indicator,
                    )
                },
                // Sent at execution: the "value" is a token (the slot + 1) that SQLParamData
                // hands back when the driver wants this parameter's data.
                Value::Bytes(bytes) => unsafe {
                    let token = (slot + 1) as Pointer;
                    let size = bytes.len();
                    stmt.bind_input(
                        number,
                        CDataType::Binary,
                        LONG_VARBINARY,
                        size,
                        token,
                        0,
                        indicator,
                    )
                },
            };
            if !ok(ret) {
                return Err(fail(DbStep::Prepare, "SQLBindParameter"));
            }
        }

        let _watchdog = Watchdog::arm(stmt, self.limits.statement + WATCHDOG_GRACE);
        // SAFETY: every bound buffer above is still alive and unmoved.
        let mut ret = unsafe { sys::SQLExecute(stmt.handle) };
        while ret == SqlReturn::NEED_DATA {
            let mut token: Pointer = null_mut();
            // SAFETY: as above; `token` receives the value pointer bound for the parameter.
            ret = unsafe { sys::SQLParamData(stmt.handle, &mut token) };
            if ret != SqlReturn::NEED_DATA {
                break;
            }
            let slot = (token as usize).wrapping_sub(1);
            let Some(Value::Bytes(bytes)) = slot.checked_sub(offset).and_then(|i| params.get(i))
            else {
                stmt.cancel_data_at_execution();
                return Err(DbError::new(
                    DbStep::Execute,
                    Retry::Permanent,
                    "the ODBC driver asked for data of an unknown parameter".into(),
                ));
            };
            for chunk in bytes.chunks(CHUNK) {
                // SAFETY: the chunk is valid for reads of its length.
                let put = unsafe {
                    sys::SQLPutData(stmt.handle, chunk.as_ptr() as Pointer, chunk.len() as Len)
                };
                if !ok(put) {
                    let error = fail(DbStep::Execute, "SQLPutData");
                    stmt.cancel_data_at_execution();
                    return Err(error);
                }
                crate::spool::release(chunk);
            }
        }
        if !ok(ret) && ret != SqlReturn::NO_DATA {
            return Err(fail(DbStep::Execute, "SQLExecute"));
        }

        let mut row = self.first_row(stmt)?;
        if returns {
            // The output parameter is set once every result is consumed (first_row did).
            // SAFETY: the driver is done with the output indicator.
            let value = if unsafe { indicator.read() } == sys::NULL_DATA {
                Value::empty()
            } else {
                Value::Text(returned.to_string().into())
            };
            row = Some(vec![value]);
        }
        Ok(row)
    }

    /// The first row of the first result set that has columns, then every remaining result
    /// consumed, so that batches finish and output parameters are set.
    fn first_row(&self, stmt: &Stmt) -> Result<Option<Row>, DbError> {
        let fail = |what: &str| self.error(DbStep::Execute, &stmt.diagnostics(), what);
        let mut first = None;
        loop {
            let mut columns: i16 = 0;
            // SAFETY: `columns` receives the count.
            let ret = unsafe { sys::SQLNumResultCols(stmt.handle, &mut columns) };
            if !ok(ret) {
                return Err(fail("SQLNumResultCols"));
            }
            if columns > 0 && first.is_none() {
                // SAFETY: no columns are bound; data is read with SQLGetData.
                let ret = unsafe { sys::SQLFetch(stmt.handle) };
                if ok(ret) {
                    let mut values = Vec::with_capacity(columns as usize);
                    for column in 1..=columns as u16 {
                        values.push(self.column(stmt, column)?);
                    }
                    first = Some(values);
                } else if ret != SqlReturn::NO_DATA {
                    return Err(fail("SQLFetch"));
                }
            }
            // SAFETY: moves to the next result (closing this one); nothing is bound.
            let ret = unsafe { sys::SQLMoreResults(stmt.handle) };
            if ret == SqlReturn::NO_DATA {
                break;
            }
            if !ok(ret) {
                let records = stmt.diagnostics();
                // A driver without SQLMoreResults has a single result: nothing is left.
                if !records.is_empty()
                    && records
                        .iter()
                        .all(|d| matches!(d.state.as_str(), "IM001" | "HYC00"))
                {
                    break;
                }
                return Err(self.error(DbStep::Execute, &records, "SQLMoreResults"));
            }
        }
        Ok(first)
    }

    /// One column of the current row: binary SQL types as bytes, everything else as the
    /// driver's text; NULL as empty text.
    fn column(&self, stmt: &Stmt, column: u16) -> Result<Value<'static>, DbError> {
        let fail = |what: &str| self.error(DbStep::Execute, &stmt.diagnostics(), what);
        let mut name = [0u8; 1024];
        let mut name_len = 0i16;
        let mut sql_type = SqlDataType::UNKNOWN_TYPE;
        let mut size = 0;
        let mut digits = 0i16;
        let mut nullable = sys::Nullability::UNKNOWN;
        // SAFETY: every out-pointer is valid; the name buffer is large and its size passed
        // (Virtuoso's driver overruns short name buffers).
        let ret = unsafe {
            sys::SQLDescribeCol(
                stmt.handle,
                column,
                name.as_mut_ptr(),
                name.len() as i16,
                &mut name_len,
                &mut sql_type,
                &mut size,
                &mut digits,
                &mut nullable,
            )
        };
        if !ok(ret) {
            return Err(fail("SQLDescribeCol"));
        }
        let binary = matches!(
            sql_type,
            SqlDataType::EXT_BINARY
                | SqlDataType::EXT_VAR_BINARY
                | SqlDataType::EXT_LONG_VAR_BINARY
        );
        let (c_type, terminator) = if binary {
            (CDataType::Binary, 0)
        } else {
            (CDataType::Char, 1)
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let mut indicator: Len = 0;
            // SAFETY: `buf` is valid for its length, which is passed.
            let ret = unsafe {
                sys::SQLGetData(
                    stmt.handle,
                    column,
                    c_type,
                    buf.as_mut_ptr() as Pointer,
                    buf.len() as Len,
                    &mut indicator,
                )
            };
            if ret == SqlReturn::NO_DATA {
                break;
            }
            if !ok(ret) {
                return Err(fail("SQLGetData"));
            }
            if indicator == sys::NULL_DATA {
                return Ok(Value::empty());
            }
            let room = buf.len() - terminator;
            let complete =
                indicator != sys::NO_TOTAL && usize::try_from(indicator).is_ok_and(|n| n <= room);
            let got = if complete {
                usize::try_from(indicator).unwrap_or(0)
            } else {
                room
            };
            out.extend_from_slice(&buf[..got]);
            if complete || ret == SqlReturn::SUCCESS {
                break;
            }
            // Truncated: fetch the rest, in one go when the driver said how much is left.
            let left = usize::try_from(indicator).map_or(0, |n| n.saturating_sub(room));
            let want = (left + terminator).clamp(buf.len(), 64 << 20);
            buf.resize(want, 0);
        }
        Ok(match String::from_utf8(out) {
            Ok(text) => Value::Text(text.into()),
            Err(e) => Value::Bytes(e.into_bytes().into()),
        })
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
        let Some(conn) = &self.conn else {
            return Err(self.connection_error(DbStep::Execute, "SQLSetConnectAttr"));
        };
        if !matches!(
            conn.set_autocommit(false),
            SqlResult::Success(()) | SqlResult::SuccessWithInfo(())
        ) {
            return Err(self.connection_error(DbStep::Execute, "SQLSetConnectAttr(AUTOCOMMIT)"));
        }
        self.transaction = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        let Some(conn) = &self.conn else {
            return Err(self.connection_error(DbStep::Commit, "SQLEndTran"));
        };
        // A driver that has seen its connection fail may forget the open transaction and
        // answer COMMIT with success without sending anything: psqlODBC does, when the
        // server goes away right after the Deliver statement (measured: exit 0, no row).
        // So the connection must still be alive before COMMIT (else nothing was committed)
        // and after it (else nobody can tell whether it was: deferring may store the
        // message twice, which a Duplicate statement prevents; reporting success might
        // lose it).
        if connection_dead(conn) {
            self.transaction = false;
            return Err(DbError::new(
                DbStep::Commit,
                Retry::Transient,
                "the connection to the data source was lost before COMMIT: nothing was committed"
                    .into(),
            ));
        }
        if !matches!(
            conn.commit(),
            SqlResult::Success(()) | SqlResult::SuccessWithInfo(())
        ) {
            return Err(self.connection_error(DbStep::Commit, "SQLEndTran(COMMIT)"));
        }
        self.transaction = false;
        if connection_dead(conn) {
            return Err(DbError::new(
                DbStep::Commit,
                Retry::Transient,
                "the connection to the data source was lost during COMMIT: whether the mail \
                 was committed is unknown, so it is deferred"
                    .into(),
            ));
        }
        if !matches!(
            conn.set_autocommit(true),
            SqlResult::Success(()) | SqlResult::SuccessWithInfo(())
        ) {
            crate::debug!("odbc: autocommit could not be switched back on after the commit");
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        if !self.transaction || self.abandoned {
            // Abandoned: the server rolls back when the session ends with the process.
            return Ok(());
        }
        let Some(conn) = &self.conn else {
            return Ok(());
        };
        if !matches!(
            conn.rollback(),
            SqlResult::Success(()) | SqlResult::SuccessWithInfo(())
        ) {
            return Err(self.connection_error(DbStep::Execute, "SQLEndTran(ROLLBACK)"));
        }
        self.transaction = false;
        let _ = conn.set_autocommit(true);
        Ok(())
    }
}

impl Drop for Odbc {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.abandoned {
            // The server ends the session when the process exits; nothing is committed.
            std::mem::forget(conn);
            return;
        }
        if self.transaction {
            let _ = conn.rollback();
        }
        disconnect(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVER: Option<&str> = Some("/x/virtodbc_r.so");

    #[test]
    fn the_originals_composed_dsn_goes_to_the_virtuoso_driver() {
        assert_eq!(
            resolve("DSN=noname;HOST=localhost:1111;UID=dba;PWD=dba", DRIVER),
            Resolved::Virtuoso(
                "DRIVER={/x/virtodbc_r.so};HOST=localhost:1111;UID=dba;PWD=dba".into()
            )
        );
        assert_eq!(
            resolve("HOST=127.0.0.1:11111;UID=dba;PWD={a;b}", DRIVER),
            Resolved::Virtuoso(
                "DRIVER={/x/virtodbc_r.so};HOST=127.0.0.1:11111;UID=dba;PWD={a;b}".into()
            )
        );
        assert_eq!(
            resolve("dsn=NONAME; host=h:1 ;uid=u;pwd=p;CHARSET=UTF-8", DRIVER),
            Resolved::Virtuoso(
                "DRIVER={/x/virtodbc_r.so};host=h:1;uid=u;pwd=p;CHARSET=UTF-8".into()
            )
        );
        assert_eq!(
            resolve("DSN=noname;HOST=h:1", None),
            Resolved::NoVirtuosoDriver
        );
    }

    #[test]
    fn named_data_sources_and_drivers_are_used_as_given() {
        for dsn in [
            "DSN=Virtuoso;HOST=localhost:1111;UID=dba;PWD=dba",
            "DSN=vm_pg",
            "DRIVER={Virtuoso};HOST=h:1111;UID=dba;PWD=dba",
            "DRIVER=/usr/lib/odbc/virtodbc_r.so;HOST=h:1",
            "FILEDSN=/etc/x.dsn;HOST=h",
            "DSN=noname;UID=dba;PWD=dba",
            "DRIVER={SQLite3};Database=/x",
        ] {
            assert_eq!(resolve(dsn, DRIVER), Resolved::AsGiven, "{dsn}");
        }
    }

    #[test]
    fn connect_string_attributes_respect_braces() {
        assert_eq!(
            odbc_attributes("DSN=a;PWD={x;y=z};;UID = u "),
            [("DSN", "a"), ("PWD", "{x;y=z}"), ("UID", "u")]
        );
        let s = secrets("DSN=a;PWD={x;y};Password=q");
        assert!(s.contains(&"x;y".to_string()) && s.contains(&"q".to_string()));
        assert!(s.contains(&"DSN=a;PWD={x;y};Password=q".to_string()));
        // `}}` inside braces is an escaped brace: the value goes on past it.
        assert_eq!(
            odbc_attributes("PWD={a}};b};UID=u"),
            [("PWD", "{a}};b}"), ("UID", "u")]
        );
        let s = secrets("PWD={a}};b};UID=u");
        assert!(s.contains(&"a};b".to_string()), "{s:?}");
    }

    #[test]
    fn messages_never_show_the_connect_string_or_password() {
        let cs = "DSN=x;UID=u;PWD=hunter2";
        let e = DbError::new(
            DbStep::Connect,
            Retry::Transient,
            format!("cannot connect with {cs}; password hunter2 rejected"),
        );
        let e = scrub(e, &secrets(cs));
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(!e.message.contains("PWD="), "{}", e.message);
    }

    fn d(state: &str, native: i32) -> Diagnostic {
        Diagnostic {
            state: state.into(),
            native,
            message: format!("{state}/{native}"),
        }
    }

    fn retry(dbms: Dbms, state: &str, native: i32) -> Retry {
        classify(DbStep::Execute, dbms, &[d(state, native)], "x").retry
    }

    #[test]
    fn transient_sqlstates() {
        for state in [
            "08001", "08S01", "08006", "40001", "40P01", "HYT00", "HYT01", "S1T00", "HY008",
            "57014", "57P01", "53300", "53100", "55P03", "25006",
        ] {
            assert_eq!(retry(Dbms::Other, state, 0), Retry::Transient, "{state}");
        }
        for state in [
            "42000", "23000", "23505", "22001", "HY000", "42S02", "07001", "25P02",
        ] {
            assert_eq!(retry(Dbms::Other, state, 0), Retry::Permanent, "{state}");
        }
    }

    #[test]
    fn mysql_error_numbers_decide_whatever_the_sqlstate() {
        for native in [
            1205, 1213, 1040, 2002, 2006, 2013, 1290, 1836, 1969, 1053, 1317,
        ] {
            assert_eq!(
                retry(Dbms::MySql, "HY000", native),
                Retry::Transient,
                "{native}"
            );
            // Only MySQL's numbers mean that.
            assert_eq!(retry(Dbms::PostgreSql, "HY000", native), Retry::Permanent);
        }
        assert_eq!(retry(Dbms::MySql, "23000", 1048), Retry::Permanent);
        assert_eq!(retry(Dbms::MySql, "HY000", 1105), Retry::Permanent);
    }

    #[test]
    fn sqlite_busy_is_transient() {
        assert_eq!(retry(Dbms::Sqlite, "HY000", 5), Retry::Transient);
        assert_eq!(retry(Dbms::Sqlite, "HY000", 6), Retry::Transient);
        assert_eq!(retry(Dbms::Sqlite, "HY000", 19), Retry::Permanent);
    }

    #[test]
    fn connect_errors_are_always_transient() {
        let e = classify(DbStep::Connect, Dbms::Other, &[d("28000", 0)], "x");
        assert_eq!((e.step, e.retry), (DbStep::Connect, Retry::Transient));
        let e = classify(DbStep::Connect, Dbms::Other, &[], "SQLDriverConnect");
        assert_eq!(e.retry, Retry::Transient);
        assert!(e.message.contains("SQLDriverConnect"));
    }

    #[test]
    fn a_failure_without_diagnostics_is_transient() {
        // psqlODBC after its server died: SQLExecute fails and says nothing more.
        let e = classify(DbStep::Execute, Dbms::PostgreSql, &[], "SQLExecute");
        assert_eq!(e.retry, Retry::Transient);
        let e = classify(DbStep::Execute, Dbms::Other, &[d("01004", 0)], "SQLExecute");
        assert_eq!(
            e.retry,
            Retry::Transient,
            "warnings only explain nothing either"
        );
    }

    #[test]
    fn a_wrong_statement_is_a_configuration_error_even_when_it_fails_late() {
        // psqlODBC prepares on the server only at execution.
        let e = classify(DbStep::Execute, Dbms::PostgreSql, &[d("42P01", 7)], "x");
        assert_eq!((e.step, e.retry), (DbStep::Prepare, Retry::Permanent));
        assert_eq!(e.sqlstate.as_deref(), Some("42P01"));
        assert_eq!(e.native.as_deref(), Some("7"));
        let e = classify(DbStep::Execute, Dbms::Sqlite, &[d("HY000", 1)], "x");
        assert_eq!(e.step, DbStep::Prepare);
        let e = classify(DbStep::Execute, Dbms::Sqlite, &[d("HY000", 19)], "x");
        assert_eq!(e.step, DbStep::Execute);
        let e = classify(DbStep::Execute, Dbms::Other, &[d("23502", 0)], "x");
        assert_eq!(e.step, DbStep::Execute);
    }

    #[test]
    fn every_record_is_kept_and_the_first_error_names_it() {
        let records = [d("01000", 0), d("HY000", 1105), d("42000", 1064)];
        let e = classify(DbStep::Execute, Dbms::MySql, &records, "x");
        assert_eq!(e.sqlstate.as_deref(), Some("HY000"));
        assert_eq!(e.native.as_deref(), Some("1105"));
        assert!(e.message.contains("01000/0") && e.message.contains("42000/1064"));
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn check_return_wraps_the_call() {
        assert_eq!(
            call_escape("DB.DBA.CHECK_USER(?)", Dbms::Virtuoso),
            "{?=call DB.DBA.CHECK_USER(?)}"
        );
        assert_eq!(
            call_escape(" call f(?, ?); ", Dbms::Other),
            "{?=call f(?, ?)}"
        );
        assert_eq!(call_escape("f(?)", Dbms::PostgreSql), "{call f(?)}");
        // Written as an escape already, as SPEC's examples do: not wrapped twice.
        assert_eq!(
            call_escape("{?=call f(?)}", Dbms::Virtuoso),
            "{?=call f(?)}"
        );
        assert_eq!(
            call_escape("{ ? = call f(?) };", Dbms::Other),
            "{?=call f(?)}"
        );
        assert_eq!(call_escape("{call f(?)}", Dbms::PostgreSql), "{call f(?)}");
    }

    #[test]
    fn dbms_names() {
        assert_eq!(Dbms::from_name("OpenLink Virtuoso"), Dbms::Virtuoso);
        assert_eq!(Dbms::from_name("PostgreSQL"), Dbms::PostgreSql);
        assert_eq!(Dbms::from_name("MariaDB"), Dbms::MySql);
        assert_eq!(Dbms::from_name("MySQL"), Dbms::MySql);
        assert_eq!(Dbms::from_name("SQLite"), Dbms::Sqlite);
        assert_eq!(Dbms::from_name("Oracle"), Dbms::Other);
    }
}
