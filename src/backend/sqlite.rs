//! SQLite, the embedded default (`sqlite:PATH`).
//!
//! WAL journal with `synchronous = FULL`, so a commit is on disk before we report delivery;
//! `BEGIN IMMEDIATE` plus a busy handler (`wait_for_lock`), so parallel deliveries queue for
//! the write lock instead of failing; a progress handler that interrupts a statement past its
//! time limit.
//! The file is never created: a missing database is a fault to fix, and the mail waits.
//! `CheckReturn` here means the statement's first column (e.g. `INSERT … RETURNING`).
//! A large message is written after its row where that is safe (`stream`), so that SQLite
//! does not hold a second copy of it.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, ffi};

use super::{Backend, Limits, Row};
use crate::config::Statement;
use crate::error::{DbError, DbStep, Retry};
use crate::macros::{Bound, Macros, Placeholder, Value};

mod dirsync;
pub mod insert;
mod memory;
mod shm_reset;
mod stream;
mod vfs;
mod wal_reuse;

/// Progress-handler granularity, in VM instructions (cheap: a clock read per call).
const PROGRESS_OPS: i32 = 10_000;

/// WAL content past which a delivery checkpoints it after committing, and the WAL starts
/// again from its beginning (`wal_reuse`). Every new process rebuilds the WAL index by
/// reading the WAL's frames, so it must stay small; each checkpoint costs a database fsync,
/// so not too small (measured: 64–256 KiB is flat).
const WAL_LIMIT: u64 = 256 * 1024;
/// A WAL frame's header, before each page.
const FRAME_HEADER: u64 = 24;
/// The connection's own settings (no I/O): commits durable before we report delivery; no
/// automatic checkpoint (see `open`); and a 256 KiB page cache: one delivery touches a few
/// pages of each index and then the message's overflow pages, each once, so SQLite's default
/// 2 MiB cache only held those, 1 MiB of RSS per MiB of message. 256 KiB keeps the B-tree
/// paths of a Verify and an INSERT (64 pages of 4 KiB); measured: no change in time, peak
/// RSS 1.2 MiB less at 1 MiB and 1.9 at 20 MiB. Foreign keys are enforced: the bundled
/// SQLite's default already, said here so that it does not hang on a build flag.
const SETTINGS: &str = "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; \
    PRAGMA cache_size = -256; PRAGMA foreign_keys = ON";
/// How long that checkpoint may wait for other connections before it is left for later.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(200);
/// The database file grows by this much at a time, allocated in one `fallocate` before a
/// checkpoint writes into it (`SQLITE_FCNTL_CHUNK_SIZE`, set just before the checkpoint). A mail store grows with every
/// message, and otherwise the file system allocates each new block at the checkpoint's
/// fsync (ext4's delayed allocation). Measured, interleaved: 20 MiB 3–7 % quicker, 1 MiB
/// 1 %, 2 KiB unchanged. The file is at most this much larger than its pages.
const GROWTH_CHUNK: c_int = 1024 * 1024;

pub struct Sqlite {
    conn: Connection,
    limits: Limits,
    /// The WAL's path, as SQLite names it.
    wal: String,
    /// The database's page size, for the WAL's size in bytes.
    page_size: u64,
    /// Set when a commit of this connection wrote (and so synced) the main database's WAL.
    wal_synced: Arc<AtomicBool>,
    /// The frames in the main database's WAL after this connection's last commit.
    wal_frames: Arc<AtomicU64>,
}

impl Sqlite {
    pub fn open(path: &str, limits: Limits) -> Result<Sqlite, DbError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        memory::install();
        let opened = match vfs::name() {
            Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
            None => Connection::open_with_flags(path, flags),
        };
        let mut conn = opened.map_err(|e| error(DbStep::Connect, e, &format!("{path}: ")))?;
        set_busy_wait(&mut conn, limits.statement)
            .map_err(|e| error(DbStep::Connect, e, &format!("{path}: ")))?;
        let setup = || -> rusqlite::Result<(u64, String)> {
            // One process per message: the default checkpoint on close (and the automatic
            // one after commits) would cost a second fsync per delivery and delete the WAL
            // file each time. Instead the WAL is checkpointed once it is long, and then
            // starts again from its beginning (`after_commit`, `wal_reuse`), which also bounds
            // what each new process must read to rebuild the WAL index.
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
            conn.execute_batch(SETTINGS)?;
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let mode = if mode.eq_ignore_ascii_case("wal") {
                mode
            } else {
                let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
                crate::debug!("sqlite: journal_mode set to {mode}");
                mode
            };
            Ok((u64::from(page_size), mode))
        };
        // Opening while another process switches the journal mode or rebuilds the WAL index
        // can report SQLITE_BUSY without consulting the busy handler: retry until the limit.
        let deadline = Instant::now() + limits.connect;
        let (page_size, mode) = loop {
            match setup() {
                Ok(set) => break set,
                Err(e) if busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(error(DbStep::Connect, e, &format!("{path}: "))),
            }
        };
        // Every durability argument here is the WAL's (one fsync per commit, the directory
        // synced, `wal_reuse`); SQLite keeps another mode only for a database it cannot give
        // a WAL (in memory, or on a VFS without shared memory). Not a place for mail.
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::new(
                DbStep::Connect,
                Retry::Transient,
                format!(
                    "{path}: journal mode {mode}, not WAL: SQLite cannot keep a WAL here (an \
                     in-memory or temporary database cannot keep mail)"
                ),
            ));
        }
        // After the settings: `wal_autocheckpoint` replaces the connection's WAL hook.
        let wal_synced = Arc::new(AtomicBool::new(false));
        let wal_frames = Arc::new(AtomicU64::new(0));
        let (synced, frames) = (Arc::clone(&wal_synced), Arc::clone(&wal_frames));
        conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, n: c_int| {
            if wal.name() == c"main" {
                synced.store(true, Ordering::Relaxed);
                frames.store(n.try_into().unwrap_or(0), Ordering::Relaxed);
            }
            Ok(())
        }))
        .map_err(|e| error(DbStep::Connect, e, &format!("{path}: ")))?;
        // SQLite's own full path, from which it names the WAL.
        let wal = format!("{}-wal", conn.path().unwrap_or(path));
        crate::debug!("sqlite: {}", dirsync::describe(&wal));
        Ok(Sqlite {
            conn,
            limits,
            wal,
            page_size,
            wal_synced,
            wal_frames,
        })
    }

    /// Prepares, binds and runs `bound`; the parameter `zeros`, if any, is bound as a
    /// zero-filled BLOB of its length (see `stream`).
    fn execute(&self, bound: &Bound<'_>, zeros: Option<usize>) -> Result<Option<Row>, DbError> {
        let mut stmt = self
            .conn
            .prepare(&bound.sql)
            .map_err(|e| error(DbStep::Prepare, e, ""))?;
        // SAFETY: `stmt` is the connection's only prepared statement (see `only_statement`).
        let raw = unsafe { only_statement(&self.conn) };
        for (i, value) in bound.params.iter().enumerate() {
            let result = match (value, raw) {
                // SAFETY: `raw` is `stmt`, alive here.
                (value, Some(raw)) if zeros == Some(i) => unsafe {
                    bind_zeroblob(raw, i + 1, value.as_bytes().len())
                },
                (_, None) if zeros.is_some() => Err(rusqlite::Error::InvalidQuery),
                // SAFETY: `bound` was declared before `stmt`, so the bytes outlive it.
                (Value::Bytes(b), Some(raw)) => unsafe { bind_blob_static(raw, i + 1, b) },
                (Value::Bytes(b), None) => stmt.raw_bind_parameter(i + 1, b.as_ref()),
                (Value::Text(t), _) => stmt.raw_bind_parameter(i + 1, t.as_ref()),
            };
            result.map_err(|e| error(DbStep::Prepare, e, ""))?;
        }
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut first = None;
        // Step to the end: an INSERT … RETURNING completes only when all its rows are read.
        while let Some(row) = rows.next().map_err(|e| error(DbStep::Execute, e, ""))? {
            if first.is_none() {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    let v = row.get_ref(i).map_err(|e| error(DbStep::Execute, e, ""))?;
                    values.push(to_value(v));
                }
                first = Some(values);
            }
        }
        Ok(first)
    }

    fn arm_timeout(&mut self) {
        let deadline = Instant::now() + self.limits.statement;
        self.conn
            .progress_handler(PROGRESS_OPS, Some(move || Instant::now() > deadline))
            .ok();
    }
}

impl Backend for Sqlite {
    fn run(&mut self, statement: &Statement, macros: &Macros<'_>) -> Result<Option<Row>, DbError> {
        let bound = statement.template.bind(macros, Placeholder::Question);
        self.arm_timeout();
        if let Some(message) = macros.message.filter(|m| m.len() >= stream::MIN) {
            if let Some(row) = stream::deliver(self, &bound, message)? {
                return Ok(row);
            }
        }
        self.execute(&bound, None)
    }

    fn begin(&mut self) -> Result<(), DbError> {
        // IMMEDIATE takes the write lock now (waiting up to the busy timeout), so the
        // transaction never has to upgrade a read lock and fail with SQLITE_BUSY midway.
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| error(DbStep::Execute, e, "BEGIN: "))
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| error(DbStep::Commit, e, "COMMIT: "))
    }

    fn after_commit(&mut self) {
        if self.wal_synced.load(Ordering::Relaxed) {
            dirsync::remember(&self.wal);
        }
        // The WAL's content, not its file: the file keeps its blocks for reuse (`wal_reuse`).
        let frames = self.wal_frames.load(Ordering::Relaxed);
        let size = frames * (self.page_size + FRAME_HEADER);
        if size < WAL_LIMIT {
            return;
        }
        // In WAL mode only a checkpoint writes the database file: the chunk is for it alone.
        set_growth_chunk(&self.conn);
        // Best effort: the mail is already committed; a busy database just waits for the
        // next delivery to try again.
        let checkpoint = |conn: &mut Connection| -> rusqlite::Result<()> {
            set_busy_wait(conn, CHECKPOINT_WAIT)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        };
        match checkpoint(&mut self.conn) {
            Ok(()) => crate::debug!("sqlite: checkpointed {frames} frames ({size} bytes) of WAL"),
            Err(e) => crate::debug!("sqlite: checkpoint postponed: {e}"),
        }
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(|e| error(DbStep::Execute, e, "ROLLBACK: "))
    }
}

/// Makes the main database grow by `GROWTH_CHUNK`. Best effort, as SQLite treats it: on a
/// full disk, or where the file system has no `fallocate` (glibc then writes the chunk a
/// block at a time; musl reports an error), the checkpoint's size hint is ignored and the
/// pages are written as before. Nothing without `posix_fallocate` in SQLite's VFS (see
/// `vfs::has_fallocate`).
fn set_growth_chunk(conn: &Connection) {
    if !vfs::has_fallocate() {
        return;
    }
    let mut chunk = GROWTH_CHUNK;
    // SAFETY: the handle is valid while `conn` is; this file control reads one int.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_CHUNK_SIZE,
            (&raw mut chunk).cast(),
        )
    };
    if rc != ffi::SQLITE_OK {
        crate::debug!("sqlite: no growth chunk (file control: {rc})");
    }
}

/// How long one lock wait may last, for `wait_for_lock` (a plain function: SQLite's busy
/// handler cannot carry state, and there is one connection per process).
static LOCK_WAIT_MS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static LOCK_WAIT_START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Installs `wait_for_lock` as the busy handler with a limit of `limit` per lock.
fn set_busy_wait(conn: &mut Connection, limit: Duration) -> rusqlite::Result<()> {
    LOCK_WAIT_MS.store(
        limit.as_millis().try_into().unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    conn.busy_handler(Some(wait_for_lock))
}

/// SQLite's own busy handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25, 50 … ms
/// between tries, while a delivery holds the write lock for about one fsync (~1 ms): a
/// waiting delivery would sleep many times longer than the lock is held. This one retries
/// after 0.1 ms, doubling up to 2 ms, with a little jitter so waiting processes do not wake
/// in step, until the limit for this lock has passed.
fn wait_for_lock(attempt: i32) -> bool {
    let now = Instant::now();
    let start = LOCK_WAIT_START.with(|s| {
        if attempt == 0 || s.get().is_none() {
            s.set(Some(now));
        }
        s.get().unwrap_or(now)
    });
    let limit = Duration::from_millis(LOCK_WAIT_MS.load(Ordering::Relaxed));
    if now.duration_since(start) >= limit {
        return false;
    }
    let step = 100u64 << attempt.clamp(0, 5) as u32; // µs: 100 … 3200
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = u64::from(nanos ^ std::process::id()) % 100;
    std::thread::sleep(Duration::from_micros(step.min(2_000) + jitter));
    true
}

/// The connection's one prepared statement, if it has exactly one: a delivery prepares,
/// runs and finalizes one statement at a time (no statement cache), so right after
/// `prepare` this is the statement just made. rusqlite does not hand out its handle.
///
/// # Safety
/// The pointer is valid only while that statement lives.
unsafe fn only_statement(conn: &Connection) -> Option<*mut ffi::sqlite3_stmt> {
    // SAFETY: the connection handle is valid while `conn` is.
    unsafe {
        let db = conn.handle();
        let first = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        (!first.is_null() && ffi::sqlite3_next_stmt(db, first).is_null()).then_some(first)
    }
}

/// Binds a blob without copying it (`SQLITE_STATIC`; rusqlite always binds
/// `SQLITE_TRANSIENT`, a copy): the message is the one large value, and a copy of it would
/// be as large again in memory.
///
/// # Safety
/// `stmt` must be valid, and `bytes` must outlive it (or the next bind of that parameter).
unsafe fn bind_blob_static(
    stmt: *mut ffi::sqlite3_stmt,
    index: usize,
    bytes: &[u8],
) -> rusqlite::Result<()> {
    let index = std::os::raw::c_int::try_from(index).unwrap_or(std::os::raw::c_int::MAX);
    // SAFETY: as the caller promises; SQLite reads `bytes.len()` bytes from the pointer.
    let rc = unsafe {
        ffi::sqlite3_bind_blob64(
            stmt,
            index,
            bytes.as_ptr().cast(),
            bytes.len() as u64,
            ffi::SQLITE_STATIC(),
        )
    };
    match rc {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)),
    }
}

/// Binds a zero-filled BLOB of `len` bytes, which SQLite does not allocate as such.
///
/// # Safety
/// `stmt` must be valid.
unsafe fn bind_zeroblob(
    stmt: *mut ffi::sqlite3_stmt,
    index: usize,
    len: usize,
) -> rusqlite::Result<()> {
    let index = std::os::raw::c_int::try_from(index).unwrap_or(std::os::raw::c_int::MAX);
    // SAFETY: as the caller promises.
    match unsafe { ffi::sqlite3_bind_zeroblob64(stmt, index, len as u64) } {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)),
    }
}

fn busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn to_value(v: ValueRef<'_>) -> Value<'static> {
    match v {
        ValueRef::Null => Value::empty(),
        ValueRef::Integer(i) => Value::Text(i.to_string().into()),
        ValueRef::Real(f) => Value::Text(f.to_string().into()),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Value::Text(s.to_string().into()),
            Err(_) => Value::Bytes(t.to_vec().into()),
        },
        ValueRef::Blob(b) => Value::Bytes(b.to_vec().into()),
    }
}

/// SQLite result codes that a later attempt can get past: locks, I/O, space, memory, our
/// own interrupt, and a database file that is missing, unreadable or damaged (an
/// administrator's problem, not the sender's: the mail waits for the fix).
fn is_transient(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly
            | ErrorCode::OperationInterrupted
            | ErrorCode::OperationAborted
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotFound
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::SchemaChanged
            | ErrorCode::NoLargeFileSupport
            | ErrorCode::NotADatabase
            | ErrorCode::PermissionDenied
            | ErrorCode::InternalMalfunction
    )
}

fn error(step: DbStep, e: rusqlite::Error, context: &str) -> DbError {
    let (retry, code) = match &e {
        rusqlite::Error::SqliteFailure(f, _) => {
            let retry = if is_transient(f.code) {
                Retry::Transient
            } else {
                Retry::Permanent
            };
            (retry, Some(format!("sqlite {}", f.extended_code)))
        }
        _ => (Retry::Permanent, None),
    };
    let message = match (&e, retry) {
        (rusqlite::Error::SqliteFailure(f, _), Retry::Transient)
            if f.code == ErrorCode::OperationInterrupted =>
        {
            format!("{context}statement time limit reached ({e})")
        }
        _ => format!("{context}{e}"),
    };
    let error = DbError::new(step, retry, message);
    match code {
        Some(code) => error.with_native(code),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The busy handler keeps retrying within the limit of one lock wait, gives up after
    /// it, and starts counting again for the next lock (attempt 0).
    #[test]
    fn lock_wait_retries_until_its_limit() {
        LOCK_WAIT_MS.store(60, Ordering::Relaxed);
        let started = Instant::now();
        let mut attempt = 0;
        while wait_for_lock(attempt) {
            attempt += 1;
            assert!(attempt < 10_000, "never gave up");
        }
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(60), "{waited:?}");
        // Short sleeps: some 30 tries in 60 ms (SQLite's own handler, sleeping 1, 2, 5,
        // 10, 15, 20 ms, makes 6 or 7).
        assert!(attempt >= 10, "{attempt} tries");
        // A new lock starts a new wait.
        assert!(wait_for_lock(0));
    }
}
