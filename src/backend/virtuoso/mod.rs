//! OpenLink Virtuoso, natively: its own client protocol over TCP, the one the original
//! `virt_mail` and Virtuoso's ODBC driver speak. No unixODBC, no driver to load, no TLS
//! library to initialise: that start-up was most of a small delivery's cost through ODBC.
//!
//! **DSN.** `virtuoso://USER:PASSWORD@HOST[:PORT]` (port 1111; reserved characters
//! percent-encoded), or the original's own form, which is what `HOST`/`PORT`/`UID`/`PWD`
//! compose: `DSN=noname;HOST=host:port;UID=…;PWD=…` (also without `DSN=`, or with an empty
//! one). A connect string that names a `DRIVER` or another data source goes to ODBC; in a
//! build without ODBC a data source name beside `HOST` is ignored, as the original ignored it.
//!
//! **Login.** The server's "caller identification" gives a session string; the password
//! goes as MD5(session ‖ user ‖ password), never in clear. A refused login, like every
//! connect failure, defers.
//!
//! **Statements** run in one round trip each: the text and its parameters in one `EXEC`
//! (no separate prepare). Values are always bound: texts as narrow strings (their bytes
//! unchanged), the message and any binary value as data at execution — the server asks for
//! it and it streams in pieces of 64 KiB — exactly as the ODBC driver sends
//! `SQLPutData` values, so the same columns and procedures (`NEW_MAIL(varchar, any)`) store
//! the same bytes, NUL and 8-bit bytes included, past the server's 10,000,000-byte string
//! limit.
//!
//! **Results.** The first row: integers, floats, decimals, dates and times as text (dates as
//! the ODBC driver writes them), strings and binaries as bytes (text when valid UTF-8), wide
//! strings one byte per character as the driver's narrow interface gives them, NULL empty. An IRI or a long column's handle is a configuration error that names the column:
//! cast it to `varchar` in the statement. Remaining rows are not fetched; the cursor is
//! closed.
//!
//! **CheckReturn** runs the configured call as a statement (`NEW_MAIL(?, ?)`; an ODBC escape
//! `{?=call …}` or a leading `call` is taken off) and compares the procedure's return value;
//! a `SELECT` works too (its first column).
//!
//! **Transactions.** Verify runs with autocommit; Deliver runs with autocommit off, then
//! `COMMIT` (or `ROLLBACK`) ends the transaction.
//!
//! **Time limits.** `ConnectTimeout` bounds the TCP connect and each read/write of the login;
//! `StatementTimeout` goes to the server as the statement's query timeout, and the socket's
//! read/write timeouts become StatementTimeout + 5 s, a backstop for a server that stops
//! answering. Every expiry defers.
//!
//! **Errors** carry Virtuoso's SQLSTATE and message (`S0002`, `SQ200: No table …`) and are
//! classified like ODBC's: a wrong statement is a configuration error, a deadlock, timeout
//! or lost connection defers.

pub mod wire;

use std::io::{self, BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use md5::{Digest, Md5};

use super::{Backend, Limits, Row};
use crate::config::Statement;
use crate::error::{DbError, DbStep, Retry, one_line};
use crate::macros::{Macros, Placeholder, Value};
use crate::report::{odbc_attributes, odbc_unbrace, percent_decode};
use wire::Value as Wire;

/// The version string the Virtuoso 7.2 ODBC driver announces at login.
const CLIENT_VERSION: &[u8] = b"07.20.3229";
/// Pieces of a value sent at execution. Interleaved runs on Virtuoso 7.2 (20 MiB messages):
/// 8 KiB and 64 KiB pieces 43–44 ms per delivery, 1 MiB pieces 65 ms.
const CHUNK: usize = crate::spool::PIECE;
/// Added to StatementTimeout for the socket's own timeouts.
const CLIENT_MARGIN: Duration = Duration::from_secs(5);

/// Answer kinds (`DA_FUTURE_ANSWER`, `DA_FUTURE_PARTIAL_ANSWER`).
const ANSWER: i64 = 2;
const PARTIAL_ANSWER: i64 = 3;

/// What an `EXEC` answer item says (Virtuoso's `QA_*`).
mod qa {
    pub const ROW: i64 = 1;
    pub const ERROR: i64 = 3;
    pub const COMPILED: i64 = 4;
    pub const NEED_DATA: i64 = 5;
    pub const PROC_RETURN: i64 = 6;
    pub const ROWS_AFFECTED: i64 = 7;
    /// The statement changed the session's qualifier (`USE`).
    pub const LOGIN: i64 = 9;
    pub const ROW_LAST_IN_BATCH: i64 = 13;
    pub const WARNING: i64 = 14;
}

/// Rows the server sends before it waits for a fetch. Only the first row is used; a second
/// tells "more rows follow" apart from "one row", so that a one-row result ends without
/// closing its cursor (one round trip less).
const PREFETCH: i64 = 2;

/// Where and as whom to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// The Virtuoso server a DSN names natively, if it names one: a `virtuoso://` URL, or the
/// original's `HOST=…` form (`backend::is_originals_virtuoso_form`).
pub fn address(dsn: &str) -> Option<Result<Address, String>> {
    let trimmed = dsn.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("virtuoso://") {
        return Some(url_address(&trimmed["virtuoso://".len()..]));
    }
    if !super::is_originals_virtuoso_form(trimmed) {
        return None;
    }
    let attrs = odbc_attributes(trimmed);
    let get = |key: &str| {
        attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| odbc_unbrace(v))
    };
    let host = get("HOST")?;
    let user = get("UID").or_else(|| get("UserName")).unwrap_or_default();
    let password = get("PWD").or_else(|| get("Password")).unwrap_or_default();
    Some(host_port(&host).map(|(host, port)| Address {
        host,
        port,
        user,
        password,
    }))
}

fn url_address(rest: &str) -> Result<Address, String> {
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if authority.len() != rest.len() && !rest[authority.len()..].trim_matches('/').is_empty() {
        return Err(
            "a virtuoso:// DSN takes no path or parameters (virtuoso://USER:PASSWORD@HOST:PORT)"
                .into(),
        );
    }
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = host_port(hostport)?;
    Ok(Address {
        host,
        port,
        user: percent_decode(user),
        password: percent_decode(password),
    })
}

/// `host`, `host:port`, `[v6]:port`; the port defaults to 1111.
fn host_port(text: &str) -> Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad Virtuoso host {text:?}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None => 1111,
        Some(p) => p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad Virtuoso port {p:?}"))?,
    };
    let host = if host.is_empty() { "localhost" } else { host };
    Ok((host.to_string(), port))
}

pub struct Virtuoso {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    next_id: i64,
    /// Inside `begin` … `commit`: statements run with autocommit off.
    transaction: bool,
    /// StatementTimeout in milliseconds, for the server.
    timeout_ms: i64,
    /// The server stopped answering mid-statement: the connection is no longer in step.
    broken: bool,
}

impl Virtuoso {
    pub fn connect(dsn: &str, limits: Limits) -> Result<Virtuoso, DbError> {
        let address = match address(dsn) {
            Some(Ok(address)) => address,
            Some(Err(why)) => return Err(connect_error(why)),
            None => return Err(connect_error("not a Virtuoso DSN".into())),
        };
        let stream = open(&address, limits.connect)
            .map_err(|e| connect_error(format!("{}:{}: {e}", address.host, address.port)))?;
        let mut session = Virtuoso {
            reader: BufReader::with_capacity(64 << 10, stream.try_clone().map_err(io_connect)?),
            writer: BufWriter::with_capacity(64 << 10, stream),
            next_id: 0,
            transaction: false,
            timeout_ms: limits.statement.as_millis().min(i32::MAX as u128) as i64,
            broken: false,
        };
        session.login(&address)?;
        crate::debug!(
            "virtuoso: logged in to {}:{} as {:?} (native protocol)",
            address.host,
            address.port,
            address.user
        );
        let backstop = limits.statement + CLIENT_MARGIN;
        let stream = session.writer.get_ref();
        stream
            .set_read_timeout(Some(backstop))
            .and_then(|()| stream.set_write_timeout(Some(backstop)))
            .map_err(io_connect)?;
        Ok(session)
    }

    fn login(&mut self, address: &Address) -> Result<(), DbError> {
        let id = self.call("caller_identification", |out| {
            wire::put_array(out, 1);
            wire::put_int(out, 0);
        });
        let session = self
            .answer(id)
            .map_err(io_connect)?
            .array()
            .and_then(|a| a.get(1))
            .and_then(|s| match s {
                Wire::Str(s) => Some(s.clone()),
                _ => None,
            })
            .ok_or_else(|| connect_error("the server did not identify itself".into()))?;
        let mut digest = Md5::new();
        digest.update(&session);
        digest.update(address.user.as_bytes());
        digest.update(address.password.as_bytes());
        let digest = digest.finalize();
        let id = self.call("SCON", |out| {
            wire::put_array(out, 4);
            wire::put_str(out, address.user.as_bytes());
            wire::put_str(out, &digest);
            wire::put_str(out, CLIENT_VERSION);
            // Application name, process id, machine, OS, user, flags: what the driver sends.
            wire::put_array(out, 6);
            wire::put_str(out, b"");
            wire::put_int(out, std::process::id() as i64);
            wire::put_str(out, b"");
            wire::put_str(out, b"unix");
            wire::put_str(out, b"");
            wire::put_int(out, 0);
        });
        let answer = self.answer(id).map_err(io_connect)?;
        if let Some(e) = error_of(&answer) {
            return Err(DbError {
                step: DbStep::Connect,
                retry: Retry::Transient,
                ..e
            });
        }
        match answer {
            Wire::Array(_) => Ok(()),
            // The server answers a refused login with a bare 0 (the ODBC driver calls it
            // `CL034: Bad login`); other refusals are the error box above.
            Wire::Int(_) => Err(DbError::new(
                DbStep::Connect,
                Retry::Transient,
                format!("Virtuoso refused the login of user {:?}", address.user),
            )
            .with_sqlstate("28000")),
            _ => Err(connect_error(
                "the server answered the login with something unexpected".into(),
            )),
        }
    }

    /// Queues a request, `[1, id, 0, SERVICE, args]` (`args` writes the arguments' array),
    /// and returns its id.
    fn call(&mut self, service: &str, args: impl FnOnce(&mut Vec<u8>)) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = Vec::with_capacity(256);
        wire::put_array(&mut out, 5);
        wire::put_int(&mut out, 1);
        wire::put_int(&mut out, id);
        wire::put_int(&mut out, 0);
        wire::put_str(&mut out, service.as_bytes());
        args(&mut out);
        self.pending(out);
        id
    }

    fn pending(&mut self, bytes: Vec<u8>) {
        // Buffered: written out by the next `flush` (before any read).
        if self.writer.write_all(&bytes).is_err() {
            self.broken = true;
        }
    }

    /// Reads the next message for request `id` and returns its result (the first element
    /// of its result array), sending whatever was still buffered first. Messages for
    /// earlier requests (the rest of a result whose cursor was closed early) are skipped.
    fn answer(&mut self, id: i64) -> io::Result<Wire> {
        self.writer.flush()?;
        loop {
            let message = wire::read(&mut self.reader)?;
            let items = message.array().unwrap_or_default();
            let kind = items.first().and_then(Wire::int);
            let answer_id = items.get(1).and_then(Wire::int);
            if !matches!(kind, Some(ANSWER | PARTIAL_ANSWER)) || answer_id.is_some_and(|a| a < id) {
                continue;
            }
            if answer_id != Some(id) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the server answered request {answer_id:?} while {id} was the last sent"
                    ),
                ));
            }
            let result = items.get(2).and_then(|r| r.array()).and_then(|r| r.first());
            return Ok(result.cloned().unwrap_or(Wire::Null));
        }
    }

    /// Runs one statement; returns the first row (or the procedure's return value).
    fn exec(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        returns: bool,
    ) -> Result<Option<Row>, DbError> {
        if self.broken {
            return Err(lost(DbStep::Execute));
        }
        let stmt = format!("s{}", self.next_id);
        let autocommit = i64::from(!self.transaction);
        let timeout_ms = self.timeout_ms;
        let id = self.call("EXEC", |out| {
            wire::put_array(out, 6);
            wire::put_str(out, stmt.as_bytes());
            wire::put_str(out, escaped(sql).as_bytes());
            wire::put_int(out, 0); // no cursor name
            wire::put_array(out, 1); // one row of parameters
            wire::put_array(out, params.len());
            for (i, value) in params.iter().enumerate() {
                match value {
                    Value::Text(t) => wire::put_str(out, t.as_bytes()),
                    Value::Bytes(_) => wire::put_data_at_execution(out, i + 1),
                }
            }
            wire::put_int(out, 0); // not "current of"
            // Concurrency read-only, synchronous, no row limit, no transaction timeout,
            // PREFETCH rows, autocommit or not, query timeout (ms), forward-only, no keyset,
            // no bookmarks, read committed, at most 16000 bytes per batch (as the ODBC
            // driver asks), rows not made unique.
            wire::put_longs(
                out,
                &[
                    1, 0, 0, 0, PREFETCH, autocommit, timeout_ms, 0, 0, 0, 2, 16000, 0,
                ],
            );
        });
        let mut row = None;
        let mut rows = 0;
        let mut open_cursor = false;
        loop {
            let item = self
                .answer(id)
                .map_err(|e| self.io_error(DbStep::Execute, e))?;
            let Wire::Array(fields) = &item else {
                // A bare integer ends a result set.
                break;
            };
            match fields.first().and_then(Wire::int) {
                Some(qa::COMPILED | qa::WARNING | qa::LOGIN) => {}
                Some(kind @ (qa::ROW | qa::ROW_LAST_IN_BATCH)) => {
                    if row.is_none() {
                        row = Some(to_row(&fields[1..])?);
                    }
                    rows += 1;
                    // A full batch (or one cut short by size) is followed by silence until
                    // a fetch: close the cursor instead; nothing more is needed.
                    if kind == qa::ROW_LAST_IN_BATCH || rows >= PREFETCH {
                        open_cursor = true;
                        break;
                    }
                }
                Some(qa::NEED_DATA) => {
                    let index = fields.get(1).and_then(Wire::int).unwrap_or(0);
                    let value = usize::try_from(index)
                        .ok()
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| params.get(i));
                    let Some(value) = value else {
                        self.broken = true;
                        return Err(protocol(
                            DbStep::Execute,
                            "asked for a parameter that does not exist",
                        ));
                    };
                    self.send_data(value.as_bytes())
                        .map_err(|e| self.io_error(DbStep::Execute, e))?;
                }
                Some(qa::PROC_RETURN) => {
                    if returns {
                        let value = fields.get(1).cloned().unwrap_or(Wire::Null);
                        row = Some(to_row(&[value])?);
                    }
                    break;
                }
                Some(qa::ROWS_AFFECTED) => break,
                Some(qa::ERROR) => {
                    return Err(error_of(&item).unwrap_or_else(|| {
                        protocol(DbStep::Execute, "sent an error without text")
                    }));
                }
                other => {
                    // Out of step from here on: nothing more can be read from this session.
                    self.broken = true;
                    return Err(protocol(
                        DbStep::Execute,
                        &format!("answered a statement with an unknown item {other:?}"),
                    ));
                }
            }
        }
        if open_cursor {
            self.close(&stmt)
                .map_err(|e| self.io_error(DbStep::Execute, e))?;
        }
        Ok(row)
    }

    /// Streams a value the server asked for, in pieces, then the end marker.
    fn send_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        for piece in bytes.chunks(CHUNK) {
            self.writer.write_all(&wire::chunk_header(piece.len()))?;
            self.writer.write_all(piece)?;
            crate::spool::release(piece);
        }
        self.writer.write_all(&[wire::END_OF_DATA])
    }

    /// Closes a statement's cursor (`FRST`, "drop").
    fn close(&mut self, stmt: &str) -> io::Result<()> {
        let id = self.call("FRST", |out| {
            wire::put_array(out, 2);
            wire::put_str(out, stmt.as_bytes());
            wire::put_int(out, 1);
        });
        self.answer(id).map(drop)
    }

    /// Ends the transaction: `TRXC` with 0 (commit) or 1 (rollback).
    fn end(&mut self, rollback: bool, step: DbStep) -> Result<(), DbError> {
        self.transaction = false;
        if self.broken {
            return Err(lost(step));
        }
        let id = self.call("TRXC", |out| {
            wire::put_array(out, 2);
            wire::put_int(out, i64::from(rollback));
            wire::put_int(out, 0);
        });
        let item = self.answer(id).map_err(|e| {
            let mut e = self.io_error(step, e);
            if !rollback {
                e.message
                    .push_str(" (whether the COMMIT took effect is unknown)");
            }
            e
        })?;
        match error_of(&item) {
            Some(e) => Err(DbError { step, ..e }),
            None => Ok(()),
        }
    }

    fn io_error(&mut self, step: DbStep, e: io::Error) -> DbError {
        self.broken = true;
        DbError::new(
            step,
            Retry::Transient,
            format!("Virtuoso: {}", describe(&e, "StatementTimeout")),
        )
    }
}

impl Backend for Virtuoso {
    fn run(&mut self, statement: &Statement, macros: &Macros<'_>) -> Result<Option<Row>, DbError> {
        let bound = statement.template.bind(macros, Placeholder::Question);
        let returns = statement.check_return.is_some();
        let sql = if returns {
            super::procedure_call(&bound.sql).to_string()
        } else {
            bound.sql
        };
        self.exec(&sql, &bound.params, returns)
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.transaction = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.end(false, DbStep::Commit)
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.end(true, DbStep::Execute)
    }
}

impl Drop for Virtuoso {
    fn drop(&mut self) {
        // No goodbye in this protocol: the server ends the session (and rolls back anything
        // uncommitted) when the socket closes.
        let _ = self.writer.get_ref().shutdown(Shutdown::Both);
    }
}

fn open(address: &Address, limit: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (address.host.as_str(), address.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(stream) => {
                // Requests are small and each waits for its answer: Nagle's algorithm would
                // hold them back for the peer's delayed ACK (40 ms).
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(limit))?;
                stream.set_write_timeout(Some(limit))?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

/// Statement text as Virtuoso's ODBC driver sends it: every byte outside ASCII as a `\xHH`
/// escape, which the server reads back as that byte in a narrow literal and as UTF-8 in a
/// wide one (`N'…'`). Sent raw, the text would be read as ISO-8859-1.
fn escaped(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.is_ascii() {
        return sql.into();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    for b in sql.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.into()
}

/// A row's columns as macro values.
fn to_row(columns: &[Wire]) -> Result<Row, DbError> {
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            Ok(match column {
                Wire::Null => Value::Text("".into()),
                Wire::Int(n) => Value::Text(n.to_string().into()),
                Wire::Float(f) => Value::Text(f.to_string().into()),
                // As the ODBC driver's narrow interface gives a wide string: one byte per
                // character (ISO-8859-1, `?` beyond), the same bytes the server reads back
                // from a narrow parameter. Raw bytes the text escapes in `N'…'` come back
                // as they went.
                Wire::Wide(s) => bytes_or_text(
                    s.chars()
                        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                        .collect(),
                ),
                Wire::Str(b) | Wire::Bin(b) => bytes_or_text(b.clone()),
                Wire::Array(_) | Wire::Unsupported(_) => {
                    // The statement must change: a configuration error.
                    return Err(DbError::new(
                        DbStep::Prepare,
                        Retry::Permanent,
                        format!(
                            "column {} of the result is of a type virt_mail does not read from \
                             Virtuoso (an IRI or a long column): cast it to varchar in the \
                             statement",
                            i + 1
                        ),
                    ));
                }
            })
        })
        .collect()
}

/// Text when the bytes are UTF-8, else the bytes.
fn bytes_or_text(bytes: Vec<u8>) -> Value<'static> {
    match String::from_utf8(bytes) {
        Ok(s) => Value::Text(s.into()),
        Err(e) => Value::Bytes(e.into_bytes().into()),
    }
}

/// An error item (`[3, SQLSTATE, message]`) as a `DbError` for the Execute step.
fn error_of(item: &Wire) -> Option<DbError> {
    let fields = item.array()?;
    if fields.first().and_then(Wire::int) != Some(qa::ERROR) {
        return None;
    }
    let state = fields.get(1).and_then(Wire::text).unwrap_or_default();
    let message = fields.get(2).and_then(Wire::text).unwrap_or_default();
    let retry = if super::sqlstate_is_transient(&state) {
        Retry::Transient
    } else {
        Retry::Permanent
    };
    let step = if retry == Retry::Permanent && super::sqlstate_is_configuration(&state) {
        DbStep::Prepare
    } else {
        DbStep::Execute
    };
    let mut error = DbError::new(step, retry, one_line(&message));
    if !state.is_empty() {
        error = error.with_sqlstate(state);
    }
    Some(error)
}

fn connect_error(message: String) -> DbError {
    DbError::new(
        DbStep::Connect,
        Retry::Transient,
        format!("Virtuoso: {message}"),
    )
}

fn io_connect(e: io::Error) -> DbError {
    connect_error(describe(&e, "ConnectTimeout"))
}

/// An I/O failure in words an administrator reads: a timeout names the limit.
fn describe(e: &io::Error, limit: &str) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no answer from the server within {limit}")
        }
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => e.to_string(),
    }
}

fn lost(step: DbStep) -> DbError {
    DbError::new(
        step,
        Retry::Transient,
        "Virtuoso: the connection was lost earlier in this delivery".into(),
    )
}

/// The server said something this client cannot follow: defer, the mail is safe.
fn protocol(step: DbStep, what: &str) -> DbError {
    DbError::new(
        step,
        Retry::Transient,
        format!("Virtuoso: the server {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16, user: &str, password: &str) -> Address {
        Address {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn dsns_that_name_a_virtuoso_server() {
        let ok = |dsn: &str| address(dsn).unwrap().unwrap();
        assert_eq!(
            ok("DSN=noname;HOST=127.0.0.1:11111;UID=dba;PWD=dba"),
            addr("127.0.0.1", 11111, "dba", "dba")
        );
        assert_eq!(
            ok("HOST=db.example;UID=u;PWD={a;b}"),
            addr("db.example", 1111, "u", "a;b")
        );
        assert_eq!(
            ok("virtuoso://mail:p%40ss@[::1]:1112"),
            addr("::1", 1112, "mail", "p@ss")
        );
        assert_eq!(ok("Virtuoso://dba:dba@h"), addr("h", 1111, "dba", "dba"));
        let named = address("DSN=Virtuoso;HOST=h:1112;UID=u;PWD=p");
        if cfg!(feature = "odbc") {
            assert!(named.is_none(), "a data source to look up");
        } else {
            assert_eq!(named.unwrap().unwrap(), addr("h", 1112, "u", "p"));
        }
        for odbc in [
            "DSN=Local Virtuoso;UID=dba",
            "DRIVER={/x/virtodbc_r.so};HOST=h:1111",
            "FILEDSN=/x.dsn;HOST=h",
            "Virtuoso",
            "postgres://u@h/db",
        ] {
            assert!(address(odbc).is_none(), "{odbc}");
        }
        for bad in [
            "virtuoso://h:0",
            "virtuoso://h:x",
            "HOST=h:99999",
            "virtuoso://h/db",
        ] {
            assert!(address(bad).unwrap().is_err(), "{bad}");
        }
    }

    /// A peer on loopback that answers each request with the next of `answers` (raw bytes;
    /// `None` closes the connection instead): not a database, a hostile or broken server.
    fn peer(answers: Vec<Option<Vec<u8>>>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            for answer in answers {
                if wire::read(&mut reader).is_err() {
                    return;
                }
                match answer {
                    Some(bytes) => writer.write_all(&bytes).unwrap(),
                    None => return,
                }
            }
        });
        format!("virtuoso://dba:dba@127.0.0.1:{port}")
    }

    fn answer(id: i64, result: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::put_array(&mut out, 4);
        wire::put_int(&mut out, ANSWER);
        wire::put_int(&mut out, id);
        wire::put_array(&mut out, 1);
        out.extend_from_slice(result);
        wire::put_int(&mut out, 0);
        out
    }

    fn identification() -> Vec<u8> {
        let mut ids = Vec::new();
        wire::put_array(&mut ids, 3);
        wire::put_str(&mut ids, b"127.0.0.1:1111");
        wire::put_str(&mut ids, b"127.0.0.1:1111:1\x001234");
        wire::put_array(&mut ids, 0);
        answer(0, &ids)
    }

    fn connect_to(dsn: &str) -> DbError {
        let limits = Limits {
            connect: Duration::from_secs(5),
            statement: Duration::from_secs(5),
        };
        match Virtuoso::connect(dsn, limits) {
            Ok(_) => panic!("connected"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_refused_or_broken_login_defers() {
        let mut refusal = Vec::new();
        wire::put_array(&mut refusal, 3);
        wire::put_int(&mut refusal, qa::ERROR);
        wire::put_str(&mut refusal, b"08004");
        wire::put_str(&mut refusal, b"CL057: too many connections");
        /// Name, the peer's answers (`None`: it hangs up), what the message must say.
        type Case = (&'static str, Vec<Option<Vec<u8>>>, &'static str);
        let cases: Vec<Case> = vec![
            (
                "error box",
                vec![Some(identification()), Some(answer(1, &refusal))],
                "CL057",
            ),
            (
                "bad login",
                vec![Some(identification()), Some(answer(1, b"\xbc\x00"))],
                "refused the login",
            ),
            (
                "closed",
                vec![Some(identification()), None],
                "closed the connection",
            ),
            (
                "garbage",
                vec![Some(b"\x07\x07\x07".to_vec())],
                "unknown type",
            ),
            (
                "wrong id",
                vec![Some(answer(5, b"\xbc\x00"))],
                "answered request",
            ),
            (
                "no identity",
                vec![Some(answer(0, b"\xbc\x00"))],
                "did not identify",
            ),
        ];
        for (name, answers, says) in cases {
            let e = connect_to(&peer(answers));
            assert_eq!(
                (e.step, e.retry),
                (DbStep::Connect, Retry::Transient),
                "{name}: {e:?}"
            );
            assert!(e.message.contains(says), "{name}: {}", e.message);
        }
    }

    #[test]
    fn a_statement_answer_out_of_shape_defers() {
        let mut login = Vec::new();
        wire::put_array(&mut login, 1);
        wire::put_int(&mut login, qa::LOGIN);
        let mut odd = Vec::new();
        wire::put_array(&mut odd, 1);
        wire::put_int(&mut odd, 99);
        let limits = Limits {
            connect: Duration::from_secs(5),
            statement: Duration::from_secs(5),
        };
        for (name, last, says) in [
            ("unknown item", Some(answer(2, &odd)), "unknown item"),
            ("closed", None, "closed the connection"),
        ] {
            let dsn = peer(vec![Some(identification()), Some(answer(1, &login)), last]);
            let mut session = Virtuoso::connect(&dsn, limits).unwrap();
            let e = session.exec("SELECT 1", &[], false).unwrap_err();
            assert_eq!(
                (e.step, e.retry),
                (DbStep::Execute, Retry::Transient),
                "{name}"
            );
            assert!(e.message.contains(says), "{name}: {}", e.message);
            let again = session.exec("SELECT 1", &[], false).unwrap_err();
            assert!(
                again.message.contains("lost earlier"),
                "{name}: {}",
                again.message
            );
        }
    }

    #[test]
    fn errors_are_classified_by_sqlstate() {
        let item = |state: &str| {
            Wire::Array(vec![
                Wire::Int(3),
                Wire::Str(state.as_bytes().to_vec()),
                Wire::Str(b"SQ200: No table x\nsecond line".to_vec()),
            ])
        };
        let e = error_of(&item("S0002")).unwrap();
        assert_eq!((e.step, e.retry), (DbStep::Prepare, Retry::Permanent));
        assert_eq!(e.message, "SQ200: No table x second line");
        let e = error_of(&item("40001")).unwrap();
        assert_eq!(e.retry, Retry::Transient);
        let e = error_of(&item("S1T00")).unwrap();
        assert_eq!(e.retry, Retry::Transient);
        let e = error_of(&item("22026")).unwrap();
        assert_eq!((e.step, e.retry), (DbStep::Execute, Retry::Permanent));
        assert!(error_of(&Wire::Array(vec![Wire::Int(7), Wire::Int(1)])).is_none());
    }

    /// The bytes libvirtodbc0 sent for `SELECT N'café', 'café'` (strace).
    #[test]
    fn statement_text_escapes_bytes_outside_ascii_as_the_driver_does() {
        assert_eq!(
            escaped("SELECT N'caf\u{e9}', 'caf\u{e9}'"),
            "SELECT N'caf\\xc3\\xa9', 'caf\\xc3\\xa9'"
        );
        assert!(matches!(escaped("SELECT 1"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn rows_become_text_except_binary() {
        let row = to_row(&[
            Wire::Int(42),
            Wire::Null,
            Wire::Str(b"alice".to_vec()),
            Wire::Bin(vec![0xff, 0]),
            Wire::Float(1.5),
            Wire::Wide("caf\u{c3}\u{a9} \u{2603}".into()),
        ])
        .unwrap();
        let texts: Vec<_> = row.iter().map(|v| v.as_bytes().to_vec()).collect();
        assert_eq!(
            texts,
            vec![
                b"42".to_vec(),
                vec![],
                b"alice".to_vec(),
                vec![0xff, 0],
                b"1.5".to_vec(),
                "caf\u{e9} ?".as_bytes().to_vec()
            ]
        );
        assert!(matches!(row[3], Value::Bytes(_)));
        assert!(to_row(&[Wire::Unsupported(243)]).is_err());
    }
}
