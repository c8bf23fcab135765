//! The embedded default: a SQLite file in a temporary directory.

use super::{Cell, Dialect, Store};

pub struct Sqlite {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Sqlite {
    pub fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        rusqlite::Connection::open(&path).unwrap();
        Sqlite { _dir: dir, path }
    }
}

impl Store for Sqlite {
    fn name(&self) -> String {
        "sqlite".into()
    }

    fn dsn(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn try_exec(&self, sql: &str) -> Result<(), String> {
        let conn = rusqlite::Connection::open(&self.path).map_err(|e| e.to_string())?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        conn.execute_batch(sql).map_err(|e| e.to_string())
    }

    fn query(&self, sql: &str) -> Vec<Vec<Cell>> {
        query_file(&self.path, sql)
    }

    fn dialect(&self) -> Dialect {
        Dialect {
            blob: "BLOB",
            text: "TEXT",
            serial: "INTEGER PRIMARY KEY",
            native: true,
            // SQLite has no procedures; its CheckReturn is the RETURNING/SELECT form.
            procedures: None,
        }
    }
}

/// Rows of `sql` on the SQLite file at `path`, every value as bytes (waiting up to 30 s for
/// a locked database).
pub fn query_file(path: &std::path::Path, sql: &str) -> Vec<Vec<Cell>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        (0..n)
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(v) => Some(v.to_string().into_bytes()),
                    rusqlite::types::ValueRef::Real(v) => Some(v.to_string().into_bytes()),
                    rusqlite::types::ValueRef::Text(t) => Some(t.to_vec()),
                    rusqlite::types::ValueRef::Blob(b) => Some(b.to_vec()),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}
