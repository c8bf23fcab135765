//! MySQL and MariaDB (`mysql://…`, `mariadb://…`), through the pure-Rust `mysql` crate: no
//! client library, no system libraries.
//!
//! **DSN.** A URL: `mysql://USER:PASSWORD@HOST[:PORT]/DATABASE` (port 3306 by default) or, for
//! the server's unix socket, `mysql://USER:PASSWORD@localhost/DATABASE?socket=/run/mysqld/mysqld.sock`
//! (the host is then not used). `mariadb://` is the same URL. Reserved characters in the user
//! or password are percent-encoded (`p%40ss` for `p@ss`). Unlike libmysqlclient, `localhost`
//! without `socket=` means TCP to localhost; and the crate's habit of asking a loopback server
//! for its socket and reconnecting (`prefer_socket`) is off unless the URL sets it, since it
//! costs a query and a second connection per message. Other parameters of the crate work
//! (`compress=true`, `tcp_keepalive_time_ms=…`, `max_allowed_packet=…`); unknown ones are a
//! connect error.
//!
//! **TLS** is not built in (it would add a TLS stack to every build for a loopback or socket
//! connection that rarely needs it). A DSN that asks for it (`require_ssl=true`, `ssl-mode=…`,
//! `root_cert_path=…`, any `ssl`/`tls` parameter not set to false) is refused at connect
//! (exit 75 with the reason on stderr): the mail waits rather than travel in clear text.
//!
//! **Time limits.** `ConnectTimeout` bounds the TCP connect and each read/write of the
//! handshake. Once connected, one `SET SESSION` (the only extra round trip) sets the server's
//! own limits from `StatementTimeout`: `innodb_lock_wait_timeout` (whole seconds, at least 1)
//! and, on MariaDB, `max_statement_time` (fractional seconds, every statement); on MySQL ≥ 5.7.8
//! `max_execution_time` (milliseconds, read-only SELECTs only). MariaDB or MySQL is read from
//! the version in the server's greeting; the MariaDB variable sits in a `/*M!…*/` comment that
//! MySQL ignores, so a misread version cannot break the connection. The socket's read/write
//! timeouts become StatementTimeout + 5 s, a client-side backstop for a server that stops
//! answering. Every expiry (1205 lock wait, 1969 MariaDB statement time, 3024 MySQL, the client
//! timeout) is transient: the MTA retries.
//!
//! **Binding.** Prepared statements (binary protocol), positional `?`, every macro value a
//! string parameter: text as UTF-8, the message as its exact bytes (NUL included) — into a
//! BLOB column they are stored unchanged. Into a utf8mb4 TEXT column invalid UTF-8 is refused
//! by the server (error 1366): permanent, exit 70, nothing stored. The session adds
//! `STRICT_ALL_TABLES` to the server's `sql_mode` (in the same `SET SESSION`), so a server
//! configured non-strict cannot store a body or an address altered (`?` for bad bytes,
//! truncated) with only a warning.
//! Bodies belong in a BLOB column. The crate reads `:name` outside quotes as a named
//! parameter; such SQL fails to prepare (exit 78) rather than run changed.
//!
//! **Results.** The first row of the first result set; the rest (more rows, a CALL's extra
//! result sets and final OK) is read to the end so a late error is not missed. Columns become
//! text as the `mysql` client prints them (integers, floats, DECIMAL, dates as
//! `YYYY-MM-DD HH:MM:SS[.ffffff]`); binary strings and BLOBs (charset 63) stay bytes; NULL is
//! empty (`values`).
//!
//! **CheckReturn** is the first column of the first row: `SELECT my_function(…)`, a procedure
//! whose last statement is `SELECT <value>` (`CALL proc(…)`), or MariaDB's
//! `INSERT … RETURNING …`. MySQL procedures have no return value, and OUT parameters read back
//! through session variables (`CALL p(?, @r); SELECT @r`) are not supported: that is two
//! statements.
//!
//! **Transactions.** Autocommit stays on; `Deliver` runs inside `START TRANSACTION` … `COMMIT`.
//!
//! **Large values in pieces (MariaDB).** The crate builds every parameter into one
//! `COM_STMT_EXECUTE` packet from owned buffers, so a 20 MiB message sat in memory three or
//! four times. On MariaDB, without `compress=true`, a statement with a value of more than
//! `message::SPOOL_AT` bytes (256 KiB) sends every parameter first as `COM_STMT_SEND_LONG_DATA`
//! packets of at most 64 KiB, written straight to the connection's socket from the value (a
//! spooled or mapped message drops each piece's pages once sent), as the crate itself does
//! past 16 MiB. That command has no reply, and the crate writes and flushes whole commands
//! and reads only what it asked for, so the packets slot in between two of its commands.
//! The crate's execute request then carries an empty string per parameter: the type
//! (`VAR_STRING`, as inline) that the server checks accepts long data, and the server skips a
//! parameter with long data when it reads the values, so the empty strings trail unread
//! (MariaDB's `insert_params`). The server converts the gathered value as it would an inline
//! string, up to its `max_allowed_packet`. Against a MySQL server (not tested here) the crate
//! sends values its own way.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Params};

use super::{Backend, Limits, Row};
use crate::config::Statement;
use crate::error::{DbError, DbStep, Retry};
use crate::macros::{Macros, Placeholder};
// Long data travels in the spool's pieces, as to Virtuoso.
use crate::spool::PIECE;
use values::to_row;

mod values;

/// The client-side backstop waits this much longer than the server's own statement limit.
const CLIENT_MARGIN: Duration = Duration::from_secs(5);

/// The largest packet the protocol allows. Setting it spares the crate its
/// `SELECT @@max_allowed_packet` at connect; the server still applies its own limit.
const MAX_PACKET: usize = 1 << 30;

/// Values longer than this go to MariaDB as long data (the module comment): the size past
/// which the message is spooled rather than held, so such a value is never copied whole.
const LONG_DATA_AT: usize = crate::message::SPOOL_AT;

pub struct Mysql {
    conn: Conn,
    limits: Limits,
    /// Large values may be written as long data onto the socket (MariaDB, no compression).
    long_data: bool,
}

impl Mysql {
    pub fn connect(dsn: &str, limits: Limits) -> Result<Mysql, DbError> {
        let opts = options(dsn, limits)?;
        let compressed = opts.get_compress().is_some();
        let mut conn = Conn::new(opts).map_err(|e| error(DbStep::Connect, e, limits))?;
        let backstop = at_least_a_second(limits.statement) + CLIENT_MARGIN;
        set_socket_timeouts(conn.as_raw_fd(), backstop).map_err(|e| {
            DbError::new(
                DbStep::Connect,
                Retry::Transient,
                format!("cannot set the socket timeouts: {e}"),
            )
        })?;
        // From the greeting, no query. (The crate panics here only for a greeting without
        // an `X.Y.Z` version, which no MySQL-protocol server sends; main turns a panic into
        // a deferral anyway.)
        let version = conn.server_version();
        let setup = session_setup(version, limits.statement);
        crate::debug!("mysql: server version {version:?}; {setup}");
        conn.query_drop(&setup)
            .map_err(|e| error(DbStep::Connect, e, limits))?;
        Ok(Mysql {
            conn,
            limits,
            long_data: is_mariadb(version) && !compressed,
        })
    }

    fn simple(&mut self, sql: &str, step: DbStep) -> Result<(), DbError> {
        let limits = self.limits;
        self.conn.query_drop(sql).map_err(|e| {
            let mut e = error(step, e, limits);
            e.message = format!("{sql}: {}", e.message);
            e
        })
    }
}

impl Backend for Mysql {
    fn run(&mut self, statement: &Statement, macros: &Macros<'_>) -> Result<Option<Row>, DbError> {
        let limits = self.limits;
        let bound = statement.template.bind(macros, Placeholder::Question);
        let stmt = self
            .conn
            .prep(&bound.sql)
            .map_err(|e| error(DbStep::Prepare, e, limits))?;
        if usize::from(stmt.num_params()) != bound.params.len() {
            // A `?` or `:name` written in the SQL itself: the configuration's mistake.
            return Err(DbError::new(
                DbStep::Prepare,
                Retry::Permanent,
                format!(
                    "the statement has {} parameter markers but {} macro values (a literal `?` or `:name` in the SQL?)",
                    stmt.num_params(),
                    bound.params.len()
                ),
            ));
        }
        let sent: usize = bound.params.iter().map(|v| v.as_bytes().len()).sum();
        let as_long_data = self.long_data
            && bound
                .params
                .iter()
                .any(|v| v.as_bytes().len() > LONG_DATA_AT);
        if as_long_data {
            crate::debug!("mysql: {} values as long data", bound.params.len());
        }
        let mut params = Vec::with_capacity(bound.params.len());
        for (index, value) in bound.params.iter().enumerate() {
            if as_long_data {
                // Index < 65,536: the protocol's limit on parameters, which prepare enforced.
                send_long_data(
                    self.conn.as_raw_fd(),
                    stmt.id(),
                    index as u16,
                    value.as_bytes(),
                )
                .map_err(|e| too_big_hint(io_error(DbStep::Execute, &e, limits), sent))?;
                params.push(mysql::Value::Bytes(Vec::new()));
            } else {
                params.push(mysql::Value::Bytes(value.as_bytes().to_vec()));
            }
        }
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params)
        };
        let mut result = self
            .conn
            .exec_iter(&stmt, params)
            .map_err(|e| too_big_hint(error(DbStep::Execute, e, limits), sent))?;
        // The first result set with columns decides; everything after it is still read, so
        // an error in a later statement of a procedure fails the run.
        let mut first: Option<Option<Row>> = None;
        while let Some(set) = result.iter() {
            let has_columns = !set.columns().as_ref().is_empty();
            let mut row_of_set = None;
            for row in set {
                let row = row.map_err(|e| error(DbStep::Execute, e, limits))?;
                if row_of_set.is_none() && first.is_none() {
                    row_of_set = Some(to_row(row));
                }
            }
            if has_columns && first.is_none() {
                first = Some(row_of_set);
            }
        }
        Ok(first.flatten())
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.simple("START TRANSACTION", DbStep::Execute)
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.simple("COMMIT", DbStep::Commit)
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.simple("ROLLBACK", DbStep::Execute)
    }
}

/// Sends `bytes` as the long data of parameter `param` of statement `stmt`: one
/// `COM_STMT_SEND_LONG_DATA` packet per piece, written to the connection's socket between two
/// of the crate's commands (see the module comment). The server answers none of them; it
/// reports a problem (a value over `max_allowed_packet`) when the statement is executed.
fn send_long_data(fd: RawFd, stmt: u32, param: u16, bytes: &[u8]) -> io::Result<()> {
    use std::io::IoSlice;
    use std::os::fd::BorrowedFd;
    // SAFETY: `fd` is the crate's open socket, which outlives this call.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    // An empty value is one empty piece: the parameter must still be marked as long data.
    let pieces = bytes
        .chunks(PIECE)
        .chain(bytes.is_empty().then_some(&[][..]));
    for piece in pieces {
        let header = long_data_header(stmt, param, piece.len());
        let mut slices = [IoSlice::new(&header), IoSlice::new(piece)];
        let mut left = &mut slices[..];
        while !left.is_empty() {
            match nix::sys::uio::writev(socket, left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        crate::spool::release(piece);
    }
    Ok(())
}

/// The packet header and command fields before a piece of long data: payload length (3 bytes,
/// little-endian), sequence number 0 (each packet is a command of its own), the command byte
/// 0x18, the statement id (4 bytes) and the parameter's index (2 bytes).
fn long_data_header(stmt: u32, param: u16, piece: usize) -> [u8; 11] {
    const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
    debug_assert!(piece <= PIECE);
    let payload = (piece + 7) as u32;
    let mut header = [0u8; 11];
    header[..3].copy_from_slice(&payload.to_le_bytes()[..3]);
    header[4] = COM_STMT_SEND_LONG_DATA;
    header[5..9].copy_from_slice(&stmt.to_le_bytes());
    header[9..11].copy_from_slice(&param.to_le_bytes());
    header
}

/// A server closes the connection on a packet over its `max_allowed_packet` (16 MiB by
/// default on MariaDB, 64 MiB on MySQL 8), so a big message shows up as a lost connection:
/// transient, the mail waits, and the administrator gets a hint.
fn too_big_hint(mut e: DbError, sent: usize) -> DbError {
    const SUSPECT: usize = 1 << 20;
    let lost = e.retry == Retry::Transient
        && (e.native.is_none() || e.native.as_deref() == Some("mysql 1153"));
    if lost && sent >= SUSPECT {
        e.message = format!(
            "{} (sending {sent} bytes: if that is more than the server's max_allowed_packet, \
             raise it or set MaxMessageSize below it)",
            e.message
        );
    }
    e
}

/// Driver options from the DSN, with our limits and without the crate's extra round trips.
fn options(dsn: &str, limits: Limits) -> Result<Opts, DbError> {
    let refuse = |message: String| DbError::new(DbStep::Connect, Retry::Permanent, message);
    let url = driver_url(dsn).map_err(refuse)?;
    let parsed =
        Opts::from_url(&url.url).map_err(|e| refuse(format!("invalid MySQL/MariaDB URL: {e}")))?;
    let connect = at_least_a_second(limits.connect);
    let mut builder = OptsBuilder::from_opts(parsed)
        .tcp_connect_timeout(Some(connect))
        .read_timeout(Some(connect))
        .write_timeout(Some(connect));
    if !url.prefer_socket_given {
        builder = builder.prefer_socket(false);
    }
    if !url.max_packet_given {
        builder = builder.max_allowed_packet(Some(MAX_PACKET));
    }
    let opts = Opts::from(builder);
    if opts.get_ssl_opts().is_some() {
        // Without a TLS feature the crate would panic here; never connect in clear text.
        return Err(refuse(no_tls("TLS options")));
    }
    Ok(opts)
}

/// A DSN rewritten for the crate, and which of its defaults the DSN overrides.
#[derive(Debug, PartialEq, Eq)]
struct DriverUrl {
    url: String,
    prefer_socket_given: bool,
    max_packet_given: bool,
}

/// `mariadb://` becomes `mysql://`; a TLS request is refused (this build has no TLS), an
/// explicit "no TLS" (`require_ssl=false`) is dropped. Messages never contain the DSN.
fn driver_url(dsn: &str) -> Result<DriverUrl, String> {
    let dsn = dsn.trim();
    let rest = match dsn.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("mysql") || scheme.eq_ignore_ascii_case("mariadb") =>
        {
            rest
        }
        _ => return Err("a MySQL/MariaDB DSN starts with mysql:// or mariadb://".into()),
    };
    let (base, query) = match rest.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (rest, None),
    };
    let mut kept = Vec::new();
    let mut prefer_socket_given = false;
    let mut max_packet_given = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = key.to_ascii_lowercase().replace('-', "_");
        if asks_about_tls(&name) {
            if is_false(value) {
                continue;
            }
            return Err(no_tls(&format!("`{key}`")));
        }
        prefer_socket_given |= name == "prefer_socket";
        max_packet_given |= name == "max_allowed_packet";
        kept.push(pair);
    }
    let mut url = format!("mysql://{base}");
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&kept.join("&"));
    }
    Ok(DriverUrl {
        url,
        prefer_socket_given,
        max_packet_given,
    })
}

fn asks_about_tls(name: &str) -> bool {
    name.contains("ssl")
        || name.contains("tls")
        || matches!(
            name,
            "root_cert_path"
                | "cert_chain_path"
                | "priv_key_path"
                | "pkcs12_path"
                | "pkcs12_pass"
                | "cipher_suites"
                | "danger_skip_domain_validation"
                | "danger_accept_invalid_certs"
                | "verify_ca"
                | "verify_identity"
        )
}

fn is_false(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "false" | "0" | "no" | "off" | "disable" | "disabled"
    )
}

fn no_tls(what: &str) -> String {
    format!(
        "the DSN asks for TLS ({what}), but this virt_mail is built without TLS for MySQL/MariaDB; \
         not connecting in clear text (use the server's unix socket or a local tunnel)"
    )
}

/// The one statement that sets the server-side limits (see the module comment).
fn session_setup(version: (u16, u16, u16), statement: Duration) -> String {
    // Strict mode for this session whatever the server's default: a body or address the
    // column cannot hold must fail (70, nothing stored), never be stored altered.
    const STRICT: &str = "sql_mode = CONCAT(@@session.sql_mode, ',STRICT_ALL_TABLES')";
    let lock_wait = statement.as_secs_f64().ceil().clamp(1.0, 1_073_741_824.0) as u64;
    if !is_mariadb(version) && version >= (5, 7, 8) {
        let ms = statement.as_millis().clamp(1, u128::from(u32::MAX));
        format!(
            "SET SESSION {STRICT}, innodb_lock_wait_timeout = {lock_wait}, max_execution_time = {ms}"
        )
    } else {
        let seconds = statement.as_secs_f64();
        format!(
            "SET SESSION {STRICT}, innodb_lock_wait_timeout = {lock_wait} \
             /*M!100108 , max_statement_time = {seconds:.6} */"
        )
    }
}

/// MariaDB ≥ 10 greets as "5.5.5-10.x.y-MariaDB" (read as 5.5.5) or, later, as "11.x.y";
/// MySQL as 5.x or 8.x.
fn is_mariadb(version: (u16, u16, u16)) -> bool {
    version.0 >= 10 || version == (5, 5, 5)
}

fn at_least_a_second(d: Duration) -> Duration {
    d.max(Duration::from_secs(1))
}

/// SO_RCVTIMEO/SO_SNDTIMEO on the connection's socket (TCP or unix): the crate only sets them
/// when it connects, and the handshake should be bounded by ConnectTimeout, not this.
fn set_socket_timeouts(fd: RawFd, timeout: Duration) -> io::Result<()> {
    use nix::libc;
    let tv = libc::timeval {
        // (Types inferred: musl's libc crate deprecates the names `time_t` and `suseconds_t`.)
        tv_sec: timeout.as_secs().try_into().unwrap_or(i32::MAX.into()),
        tv_usec: timeout.subsec_micros().into(),
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: `fd` is the connection's open socket, borrowed for the call; `tv` outlives
        // it and the length given is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&raw const tv).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The crate's error as a `DbError`: retry decided by the error number (no number: the
/// connection or the driver failed, which is transient, except parameter mismatches, which
/// are the configuration's).
fn error(step: DbStep, e: mysql::Error, limits: Limits) -> DbError {
    use mysql::{DriverError, Error as E};
    match e {
        E::MySqlError(server) => {
            let retry = if super::mysql_errors::is_transient(server.code.into()) {
                Retry::Transient
            } else {
                Retry::Permanent
            };
            let mut message = server.message;
            if matches!(server.code, 1205 | 1969 | 3024) {
                message = format!(
                    "{message} (StatementTimeout = {} s)",
                    limits.statement.as_secs_f64()
                );
            }
            DbError::new(step, retry, message)
                .with_sqlstate(server.state)
                .with_native(format!("mysql {}", server.code))
        }
        E::IoError(io) => io_error(step, &io, limits),
        // The packet codec wraps the socket's errors (a silent server during the handshake).
        E::CodecError(c) => match std::error::Error::source(&c).and_then(|s| s.downcast_ref()) {
            Some(io) => io_error(step, io, limits),
            None => DbError::new(step, Retry::Transient, format!("protocol error: {c}")),
        },
        E::DriverError(
            d @ (DriverError::MismatchedStmtParams(..)
            | DriverError::Params(_)
            | DriverError::MixedParams),
        ) => DbError::new(step, Retry::Permanent, d.to_string()),
        E::DriverError(d) => DbError::new(step, Retry::Transient, d.to_string()),
        E::UrlError(u) => DbError::new(
            step,
            Retry::Permanent,
            format!("invalid MySQL/MariaDB URL: {u}"),
        ),
        other => DbError::new(step, Retry::Permanent, other.to_string()),
    }
}

/// A failed or silent connection: always transient.
fn io_error(step: DbStep, io: &io::Error, limits: Limits) -> DbError {
    let message = if matches!(
        io.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        let waited = if step == DbStep::Connect {
            at_least_a_second(limits.connect)
        } else {
            at_least_a_second(limits.statement) + CLIENT_MARGIN
        };
        format!(
            "no answer from the server within {} s ({io})",
            waited.as_secs_f64()
        )
    } else {
        format!("connection to the server failed: {io}")
    };
    DbError::new(step, Retry::Transient, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_are_classified() {
        let table: &[(u16, Retry, &str)] = &[
            (1205, Retry::Transient, "lock wait timeout"),
            (1213, Retry::Transient, "deadlock"),
            (1040, Retry::Transient, "too many connections"),
            (1203, Retry::Transient, "user has too many connections"),
            (1226, Retry::Transient, "resource limit"),
            (1053, Retry::Transient, "server shutdown"),
            (1077, Retry::Transient, "normal shutdown"),
            (1079, Retry::Transient, "shutdown complete"),
            (1080, Retry::Transient, "forcing close"),
            (1290, Retry::Transient, "read-only"),
            (1836, Retry::Transient, "read-only mode"),
            (1792, Retry::Transient, "read-only transaction"),
            (1021, Retry::Transient, "disk full"),
            (1114, Retry::Transient, "table full"),
            (1030, Retry::Transient, "storage engine error"),
            (1969, Retry::Transient, "MariaDB max_statement_time"),
            (3024, Retry::Transient, "MySQL max_execution_time"),
            (1317, Retry::Transient, "query interrupted"),
            (1927, Retry::Transient, "connection killed"),
            (2002, Retry::Transient, "cannot connect (socket)"),
            (2003, Retry::Transient, "cannot connect (TCP)"),
            (2006, Retry::Transient, "server has gone away"),
            (2013, Retry::Transient, "lost connection"),
            (2055, Retry::Transient, "lost connection (system error)"),
            (1153, Retry::Transient, "packet over max_allowed_packet"),
            (
                1223,
                Retry::Transient,
                "conflicting global read lock (backup)",
            ),
            (1615, Retry::Transient, "statement needs re-prepare"),
            (1047, Retry::Transient, "Galera node not ready"),
            (1020, Retry::Transient, "snapshot isolation: record changed"),
            (1412, Retry::Transient, "table definition changed"),
            (3101, Retry::Transient, "rolled back by group replication"),
            (
                1045,
                Retry::Permanent,
                "access denied (but at connect: 75 anyway)",
            ),
            (1064, Retry::Permanent, "syntax error"),
            (1146, Retry::Permanent, "no such table"),
            (1054, Retry::Permanent, "unknown column"),
            (1048, Retry::Permanent, "NOT NULL"),
            (1062, Retry::Permanent, "duplicate key"),
            (1366, Retry::Permanent, "invalid string value (bad UTF-8)"),
            (1406, Retry::Permanent, "data too long"),
            (1305, Retry::Permanent, "no such function"),
        ];
        for &(code, retry, what) in table {
            let e = error(
                DbStep::Execute,
                mysql::Error::MySqlError(mysql::MySqlError {
                    state: "HY000".into(),
                    message: what.into(),
                    code,
                }),
                limits(),
            );
            assert_eq!(e.retry, retry, "{code} {what}");
            assert_eq!(e.native.as_deref(), Some(format!("mysql {code}").as_str()));
            assert_eq!(e.sqlstate.as_deref(), Some("HY000"));
        }
    }

    #[test]
    fn exit_codes_follow_from_step_and_number() {
        use crate::exit::ExitCode;
        let server = |code| {
            mysql::Error::MySqlError(mysql::MySqlError {
                state: "42S02".into(),
                message: "x".into(),
                code,
            })
        };
        assert_eq!(
            error(DbStep::Prepare, server(1146), limits()).exit_code(),
            ExitCode::Config
        );
        assert_eq!(
            error(DbStep::Execute, server(1048), limits()).exit_code(),
            ExitCode::Software
        );
        assert_eq!(
            error(DbStep::Execute, server(1205), limits()).exit_code(),
            ExitCode::TempFail
        );
        assert_eq!(
            error(DbStep::Connect, server(1045), limits()).exit_code(),
            ExitCode::TempFail
        );
        assert_eq!(
            error(DbStep::Commit, server(1213), limits()).exit_code(),
            ExitCode::TempFail
        );
        // MariaDB 11.6's snapshot isolation conflict defers like a deadlock.
        assert_eq!(
            error(DbStep::Execute, server(1020), limits()).exit_code(),
            ExitCode::TempFail
        );
        // A resource limit under a syntax-error SQLSTATE: the number decides, even at prepare.
        assert_eq!(
            error(DbStep::Prepare, server(1226), limits()).exit_code(),
            ExitCode::TempFail
        );
    }

    #[test]
    fn driver_and_io_errors_are_transient_except_parameter_mismatches() {
        let io = mysql::Error::IoError(io::Error::new(io::ErrorKind::WouldBlock, "x"));
        let e = error(DbStep::Execute, io, limits());
        assert_eq!(e.retry, Retry::Transient);
        assert!(
            e.message.contains("no answer from the server within 7 s"),
            "{}",
            e.message
        );
        let silent = mysql::Error::IoError(io::Error::new(io::ErrorKind::TimedOut, "x"));
        let e = error(DbStep::Connect, silent, limits());
        assert!(
            e.message.contains("no answer from the server within 3 s"),
            "{}",
            e.message
        );
        let gone = mysql::Error::server_disconnected();
        assert_eq!(
            error(DbStep::Commit, gone, limits()).retry,
            Retry::Transient
        );
        let sync = mysql::Error::DriverError(mysql::DriverError::PacketOutOfSync);
        assert_eq!(
            error(DbStep::Execute, sync, limits()).retry,
            Retry::Transient
        );
        let mixed = mysql::Error::DriverError(mysql::DriverError::MixedParams);
        assert_eq!(
            error(DbStep::Prepare, mixed, limits()).retry,
            Retry::Permanent
        );
        let count = mysql::Error::DriverError(mysql::DriverError::MismatchedStmtParams(2, 1));
        assert_eq!(
            error(DbStep::Prepare, count, limits()).retry,
            Retry::Permanent
        );
    }

    fn limits() -> Limits {
        Limits {
            connect: Duration::from_secs(3),
            statement: Duration::from_secs(2),
        }
    }

    #[test]
    fn long_data_packets_follow_the_protocol() {
        // COM_STMT_SEND_LONG_DATA for statement 0x0102_0304, parameter 2, a 65,536-byte piece:
        // payload 65,543 = 0x01_0007 bytes, sequence 0.
        assert_eq!(
            long_data_header(0x0102_0304, 2, PIECE),
            [
                0x07, 0x00, 0x01, 0x00, 0x18, 0x04, 0x03, 0x02, 0x01, 0x02, 0x00
            ]
        );
        assert_eq!(long_data_header(1, 0, 0)[..5], [7, 0, 0, 0, 0x18]);
    }

    #[test]
    fn dsn_is_rewritten_for_the_driver() {
        let u = driver_url("mariadb://u:p@h:1/db").unwrap();
        assert_eq!(u.url, "mysql://u:p@h:1/db");
        assert!(!u.prefer_socket_given && !u.max_packet_given);
        let u = driver_url(" MariaDB://u:p@localhost/db?socket=/run/m.sock&prefer_socket=true")
            .unwrap();
        assert_eq!(
            u.url,
            "mysql://u:p@localhost/db?socket=/run/m.sock&prefer_socket=true"
        );
        assert!(u.prefer_socket_given);
        let u = driver_url("mysql://u@h/db?require_ssl=false&max_allowed_packet=4096").unwrap();
        assert_eq!(u.url, "mysql://u@h/db?max_allowed_packet=4096");
        assert!(u.max_packet_given);
        assert!(driver_url("postgres://u@h/db").is_err());
    }

    #[test]
    fn tls_requests_are_refused_without_the_password() {
        for dsn in [
            "mysql://u:s3cret@h/db?require_ssl=true",
            "mysql://u:s3cret@h/db?ssl-mode=REQUIRED",
            "mariadb://u:s3cret@h/db?sslmode=verify-full",
            "mysql://u:s3cret@h/db?root_cert_path=/etc/ca.pem",
            "mysql://u:s3cret@h/db?x=1&useSSL=true",
        ] {
            let e = driver_url(dsn).unwrap_err();
            assert!(e.contains("TLS") && !e.contains("s3cret"), "{dsn}: {e}");
            let e = options(dsn, limits()).unwrap_err();
            assert_eq!(e.step, DbStep::Connect);
            assert!(!e.message.contains("s3cret"));
        }
    }

    #[test]
    fn options_skip_the_crates_extra_round_trips() {
        let opts = options("mysql://u:p@127.0.0.1:3306/db", limits()).unwrap();
        assert!(!opts.get_prefer_socket());
        assert_eq!(opts.get_max_allowed_packet(), Some(MAX_PACKET));
        assert_eq!(opts.get_tcp_connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(opts.get_read_timeout(), Some(&Duration::from_secs(3)));
        assert!(opts.get_init().is_empty());
        let opts = options("mysql://u:p@localhost/db?socket=/tmp/s.sock", limits()).unwrap();
        assert_eq!(opts.get_socket(), Some("/tmp/s.sock"));
        let e = options("mysql://u:p@h/db?bogus=1", limits()).unwrap_err();
        assert!(e.message.contains("bogus"), "{}", e.message);
    }

    #[test]
    fn session_limits_depend_on_the_server() {
        let s = Duration::from_millis(1500);
        assert_eq!(
            session_setup((5, 5, 5), s),
            "SET SESSION sql_mode = CONCAT(@@session.sql_mode, ',STRICT_ALL_TABLES'), \
             innodb_lock_wait_timeout = 2 /*M!100108 , max_statement_time = 1.500000 */"
        );
        assert!(session_setup((11, 4, 2), s).contains("max_statement_time = 1.500000"));
        assert_eq!(
            session_setup((8, 0, 36), s),
            "SET SESSION sql_mode = CONCAT(@@session.sql_mode, ',STRICT_ALL_TABLES'), \
             innodb_lock_wait_timeout = 2, max_execution_time = 1500"
        );
        assert!(!session_setup((5, 6, 51), s).contains("max_execution_time"));
        assert!(
            session_setup((8, 0, 36), Duration::ZERO).contains("innodb_lock_wait_timeout = 1,")
        );
    }
}
