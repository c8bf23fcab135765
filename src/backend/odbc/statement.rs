//! One statement through the driver: prepared, its values bound (texts NUL-terminated as
//! well as measured, binary values sent at execution time in chunks), run under a
//! watchdog, and its first row read with `SQLGetData`.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::time::Duration;

use odbc_api::sys::{
    self, CDataType, HStmt, Handle, HandleType, Len, ParamType, Pointer, SqlDataType, SqlReturn,
    StatementAttribute,
};

use super::diagnostics::{Diagnostic, diagnostics};
use super::watchdog::{INTERRUPT_GRACE, Watchdog};
use super::{Odbc, ok};
use crate::backend::Row;
use crate::error::{DbError, DbStep, Retry};
use crate::macros::Value;

/// The SQL type of every binary value, the message included.
const LONG_VARBINARY: SqlDataType = SqlDataType::EXT_LONG_VAR_BINARY;

/// Bytes per `SQLPutData` call: well under any MySQL `max_allowed_packet`.
const CHUNK: usize = 256 * 1024;

/// How long past the statement limit the watchdog waits before it cancels, so that a driver
/// enforcing the query timeout itself reports it first (its message is clearer).
pub(super) const WATCHDOG_GRACE: Duration = Duration::from_secs(1);

/// Text for a driver, NUL-terminated as well as measured: Virtuoso's driver reads statement
/// texts up to a NUL whatever length it is given, so an unterminated text picks up whatever
/// follows it in memory (seen as random "SQ074" syntax errors).
pub(super) fn nul_terminated(text: &str) -> Option<Vec<u8>> {
    if text.contains('\0') {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() + 1);
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    Some(out)
}

/// A statement handle, freed on drop without ever panicking (odbc-api's own handle types
/// panic when a free fails).
pub(super) struct Stmt {
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

/// The raw handle, moved to the watchdog's interrupting thread.
#[derive(Clone, Copy)]
struct SendHandle(HStmt);

// SAFETY: ODBC allows SQLCancel on a statement from another thread while it executes; the
// watchdog cancels only while the statement is not done, and the statement is freed only
// after its watchdog is dropped.
unsafe impl Send for SendHandle {}

/// A watchdog that cancels a statement still running when its time is up, for drivers
/// that accept a query timeout but do not enforce it.
fn watchdog(stmt: &Stmt, limit: Duration) -> Watchdog {
    let handle = SendHandle(stmt.handle);
    Watchdog::arm(
        limit,
        move || {
            let handle = handle;
            // SAFETY: the statement cannot be freed while the watchdog is armed.
            let _ = unsafe { sys::SQLCancel(handle.0) };
        },
        format!(
            "a statement has been running for {} s, past its time limit, and does not react \
             to being cancelled: giving up (nothing was committed; the mail stays queued)",
            (limit + INTERRUPT_GRACE).as_secs()
        ),
    )
}

impl Odbc {
    pub(super) fn statement(&self) -> Result<Stmt, DbError> {
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
    pub(super) fn execute(
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

        let _watchdog = watchdog(stmt, self.limits.statement + WATCHDOG_GRACE);
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
