//! A large message written after its row (incremental BLOB I/O), so that SQLite does not
//! build a second, whole copy of it in memory for the row: the row is inserted with a
//! zero-filled BLOB of the message's length in its place, which SQLite leaves out of the
//! record it builds when it is the row's last value, and the message is then written into
//! that BLOB a piece at a time. A spooled message (past 256 KiB, `spool`) leaves memory
//! piece by piece as it is written, so peak memory is the same at any size.
//!
//! Only where the zeros cannot change what is stored or decided while the row is inserted:
//! `insert::target` checks the statement (the message a plain value of a one-row `INSERT`),
//! `slot` the table (no trigger, a TEMP one included, no CHECK, generated column or partial
//! index; the message's column last), and the update hook that exactly that one row was
//! inserted. SQLite itself gives no BLOB handle on an indexed column or a foreign key (they
//! are enforced: `SETTINGS`). Otherwise, or on any failure on the way, the transaction goes
//! back to a savepoint and the statement runs as written; unless SQLite rolled the whole
//! transaction back (a full disk, an I/O error), and then that error is the delivery's.

use std::sync::{Arc, Mutex};

use rusqlite::hooks::Action;
use rusqlite::{Connection, OptionalExtension};

use super::insert::{self, Target};
use super::{Sqlite, error};
use crate::backend::Row;
use crate::error::{DbError, DbStep, Retry};
use crate::macros::Bound;
use crate::spool::{self, PIECE};

/// Messages from this size on are streamed. Below it the copy SQLite makes is at most 1 MiB
/// (peak RSS 4 MiB in all), and streaming would cost time: SQLite writes the zeros into its
/// pages, spilling them to the WAL past its page cache, then reads them back to write the
/// message (measured: 5–9 % more CPU from 1 to 2 MiB from the heap; from the spool even at
/// 4 MiB and quicker at 20 MiB, with no record of the message's size to build).
pub const MIN: usize = 1024 * 1024;

/// Table-level words that make SQLite read the message while it inserts the row: a CHECK
/// constraint or a generated column (`… AS (expr)`, `GENERATED ALWAYS`) would see zeros.
/// `WITHOUT ROWID` and virtual tables have no BLOB handles.
const TABLE_REFUSALS: &[&str] = &["CHECK", "AS", "GENERATED", "WITHOUT", "VIRTUAL"];

/// Where the message goes: a column of an ordinary table of the main database.
#[derive(Debug)]
struct Slot {
    table: String,
    column: String,
}

/// Runs `bound` with its message written after the row. `Ok(Some(row))`: delivered so;
/// `Ok(None)`: not attempted or undone, run the statement as written; `Err`: the error that
/// made SQLite roll the whole transaction back, or a failed savepoint.
pub fn deliver(
    db: &mut Sqlite,
    bound: &Bound<'_>,
    message: &[u8],
) -> Result<Option<Option<Row>>, DbError> {
    let Some(index) = message_param(bound, message) else {
        return Ok(None);
    };
    // Outside a transaction the savepoint would be a transaction of its own.
    if db.conn.is_autocommit() {
        return Ok(None);
    }
    let Some(target) = insert::target(&bound.sql, index, bound.params.len()) else {
        crate::debug!("sqlite: message stored with its row (not a one-row INSERT … VALUES)");
        return Ok(None);
    };
    let slot = match slot(&db.conn, &target) {
        Ok(Ok(slot)) => slot,
        Ok(Err(why)) => {
            crate::debug!("sqlite: message stored with its row ({why})");
            return Ok(None);
        }
        Err(e) => {
            crate::debug!("sqlite: message stored with its row (schema: {e})");
            return Ok(None);
        }
    };
    let savepoint = |conn: &Connection, sql: &str| {
        conn.execute_batch(sql)
            .map_err(|e| error(DbStep::Execute, e, "SAVEPOINT: "))
    };
    savepoint(&db.conn, "SAVEPOINT virt_mail_blob")?;
    match write(db, bound, index, &slot, message) {
        Ok(row) => {
            savepoint(&db.conn, "RELEASE virt_mail_blob")?;
            crate::debug!(
                "sqlite: message written into {}.{}",
                slot.table,
                slot.column
            );
            Ok(Some(row))
        }
        Err(undo) => {
            crate::debug!("sqlite: message stored with its row ({})", undo.why);
            if db.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk, an I/O error, no
                // memory) and the savepoint with it: that error is the delivery's.
                return Err(undo
                    .error
                    .unwrap_or_else(|| DbError::new(DbStep::Execute, Retry::Transient, undo.why)));
            }
            savepoint(
                &db.conn,
                "ROLLBACK TO virt_mail_blob; RELEASE virt_mail_blob",
            )?;
            Ok(None)
        }
    }
}

/// Why a streamed row is undone, with the database's error if it was one.
struct Undo {
    why: String,
    error: Option<DbError>,
}

impl Undo {
    fn because(why: String) -> Undo {
        Undo { why, error: None }
    }

    fn of(context: &str, e: rusqlite::Error) -> Undo {
        let error = error(DbStep::Execute, e, context);
        Undo {
            why: error.to_string(),
            error: Some(error),
        }
    }
}

/// The index of the parameter that is the message itself (a lone `$message`; a literal
/// built around it is a copy of its own), if the statement uses it once: only one
/// parameter can be the zeros.
fn message_param(bound: &Bound<'_>, message: &[u8]) -> Option<usize> {
    let mut uses = bound.params.iter().enumerate().filter(|(_, value)| {
        let bytes = value.as_bytes();
        bytes.as_ptr() == message.as_ptr() && bytes.len() == message.len()
    });
    match (uses.next(), uses.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// The table and column `target` names, if writing the message after the row is safe
/// there; otherwise why not.
fn slot(conn: &Connection, target: &Target) -> rusqlite::Result<Result<Slot, String>> {
    if target
        .schema
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("main"))
    {
        return Ok(Err("not the main database".into()));
    }
    let mut table = None;
    let mut objects = conn.prepare(
        "SELECT type, name, sql FROM main.sqlite_schema WHERE tbl_name = ?1 COLLATE NOCASE",
    )?;
    let mut rows = objects.query([&target.table])?;
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        let name: String = row.get(1)?;
        let sql: Option<String> = row.get(2)?;
        let sql = sql.unwrap_or_default();
        match kind.as_str() {
            "table" if insert::mentions(&sql, TABLE_REFUSALS) => {
                return Ok(Err(format!(
                    "table {name} has a constraint or generated column"
                )));
            }
            "table" => table = Some(name),
            "trigger" => return Ok(Err(format!("trigger {name}"))),
            "index" if insert::mentions(&sql, &["WHERE"]) => {
                return Ok(Err(format!("partial index {name}")));
            }
            "index" => {}
            _ => return Ok(Err(format!("{kind} {name}"))),
        }
    }
    let Some(table) = table else {
        return Ok(Err(format!("no table {}", target.table)));
    };
    // A TEMP trigger, made on this connection by an earlier statement (a Duplicate or Quota
    // query may be any SQL), fires on a main table too.
    let temp: Option<String> = conn
        .query_row(
            "SELECT name FROM temp.sqlite_schema WHERE type = 'trigger' \
             AND tbl_name = ?1 COLLATE NOCASE",
            [&table],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(name) = temp {
        return Ok(Err(format!("trigger {name}")));
    }
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1, 'main') ORDER BY cid")?
        .query_map([&table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let position = match &target.column {
        Some(name) => columns.iter().position(|c| c.eq_ignore_ascii_case(name)),
        None => Some(target.position),
    };
    match position {
        Some(p) if p + 1 == columns.len() => Ok(Ok(Slot {
            column: columns[p].clone(),
            table,
        })),
        _ => Ok(Err(format!(
            "the message's column is not the last of {table}"
        ))),
    }
}

/// Inserts the row with zeros for the message, then writes the message into them. `Err`
/// says why the result must be undone (a database error is one: the statement runs again
/// as written and reports its own errors).
fn write(
    db: &mut Sqlite,
    bound: &Bound<'_>,
    index: usize,
    slot: &Slot,
    message: &[u8],
) -> Result<Option<Row>, Undo> {
    type Seen = (usize, Option<(Action, String, String, i64)>);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let hook = Arc::clone(&seen);
    let watch = db.conn.update_hook(Some(
        move |action: Action, database: &str, table: &str, rowid: i64| {
            if let Ok(mut seen) = hook.lock() {
                seen.0 += 1;
                seen.1 = Some((action, database.to_string(), table.to_string(), rowid));
            }
        },
    ));
    let row = watch
        .map_err(|e| Undo::of("update hook: ", e))
        .and_then(|()| {
            db.execute(bound, Some(index)).map_err(|e| Undo {
                why: format!("zero-filled row refused: {e}"),
                error: Some(e),
            })
        });
    db.conn
        .update_hook(None::<fn(Action, &str, &str, i64)>)
        .map_err(|e| Undo::of("update hook: ", e))?;
    let row = row?;
    let seen = seen
        .lock()
        .map_err(|e| Undo::because(e.to_string()))?
        .clone();
    let rowid = match seen {
        (1, Some((Action::SQLITE_INSERT, database, table, rowid)))
            if database == "main" && table.eq_ignore_ascii_case(&slot.table) =>
        {
            rowid
        }
        (n, _) => {
            return Err(Undo::because(format!(
                "{n} row changes instead of one insert"
            )));
        }
    };
    let mut blob = db
        .conn
        .blob_open(
            "main",
            slot.table.as_str(),
            slot.column.as_str(),
            rowid,
            false,
        )
        .map_err(|e| Undo::of("BLOB handle: ", e))?;
    if blob.len() != message.len() {
        let stored = blob.len();
        return Err(Undo::because(format!(
            "{stored} bytes stored, not {}",
            message.len()
        )));
    }
    // In pieces, each dropped from memory once written when the message is spooled: SQLite
    // keeps the pages in its own small cache, or in the WAL past it.
    for (i, piece) in message.chunks(PIECE).enumerate() {
        blob.write_at(piece, i * PIECE)
            .map_err(|e| Undo::of("BLOB write: ", e))?;
        spool::release(piece);
    }
    blob.close().map_err(|e| Undo::of("BLOB write: ", e))?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(sql: &str) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(sql).unwrap();
        conn
    }

    fn target(table: &str, column: Option<&str>, position: usize) -> Target {
        Target {
            schema: None,
            table: table.into(),
            column: column.map(Into::into),
            position,
        }
    }

    #[test]
    fn a_plain_table_with_the_message_last_is_a_slot() {
        let conn = schema("CREATE TABLE Mail (id INTEGER PRIMARY KEY, who TEXT, body BLOB);");
        let slot = slot_of(&conn, &target("mail", Some("BODY"), 1)).unwrap();
        assert_eq!(
            (slot.table.as_str(), slot.column.as_str()),
            ("Mail", "body")
        );
        let slot = slot_of(&conn, &target("mail", None, 2));
        assert_eq!(slot.unwrap().column, "body");
    }

    fn slot_of(conn: &Connection, target: &Target) -> Result<Slot, String> {
        slot(conn, target).unwrap()
    }

    #[test]
    fn what_would_read_the_zeros_is_refused() {
        let base = "CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB);";
        for (extra, why) in [
            (
                "CREATE TRIGGER t AFTER INSERT ON m BEGIN SELECT 1; END;",
                "trigger",
            ),
            (
                "CREATE INDEX i ON m (id) WHERE body IS NOT NULL;",
                "partial index",
            ),
        ] {
            let conn = schema(&format!("{base}{extra}"));
            let why_not = slot_of(&conn, &target("m", Some("body"), 1)).unwrap_err();
            assert!(why_not.contains(why), "{extra}: {why_not}");
        }
        for table in [
            "CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB CHECK (body NOT LIKE '%x%'));",
            "CREATE TABLE m (id INTEGER PRIMARY KEY, head AS (substr(body, 1, 9)), body BLOB);",
            "CREATE TABLE m (id TEXT PRIMARY KEY, body BLOB) WITHOUT ROWID;",
        ] {
            let conn = schema(table);
            let why_not = slot_of(&conn, &target("m", Some("body"), 1)).unwrap_err();
            assert!(
                why_not.contains("constraint or generated"),
                "{table}: {why_not}"
            );
        }
        // Not the last column: the zeros would be built into the row after all.
        let conn = schema("CREATE TABLE m (body BLOB, id INTEGER);");
        assert!(slot_of(&conn, &target("m", None, 0)).is_err());
        // A TEMP trigger on a main table.
        let conn = schema(&format!(
            "{base}CREATE TEMP TRIGGER t AFTER INSERT ON main.m BEGIN SELECT 1; END;"
        ));
        let why_not = slot_of(&conn, &target("m", Some("body"), 1)).unwrap_err();
        assert!(why_not.contains("trigger t"), "{why_not}");
        // A view, or no such table.
        let conn = schema("CREATE TABLE t (a, body); CREATE VIEW m AS SELECT * FROM t;");
        assert!(slot_of(&conn, &target("m", Some("body"), 1)).is_err());
        assert!(slot_of(&conn, &target("nothing", Some("body"), 1)).is_err());
        let mut other = target("t", Some("body"), 1);
        other.schema = Some("temp".into());
        assert!(slot_of(&conn, &other).is_err());
    }
}
