//! The ODBC data sources `scripts/servers.sh` sets up: SQLite (SQLite3 ODBC driver),
//! PostgreSQL (psqlODBC), MariaDB (Connector/ODBC) and Virtuoso (virtodbc_r.so). virt_mail
//! reaches them through the same DSN names the test uses with odbc-api.
//!
//! Statement and connect texts are handed to the driver NUL-terminated as well as measured:
//! Virtuoso's driver ignores the length and reads up to a NUL.

use std::sync::Mutex;

use odbc_api::{ColumnDescription, ConnectionOptions, Cursor, DataType, ResultSetMetadata};

use super::{Cell, Dialect, Procedures, Store, env};

/// Which database is behind the data source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Mariadb,
    Virtuoso,
}

pub struct Odbc {
    kind: Kind,
    /// The connect string, for virt_mail and for the test alike.
    connect: String,
}

/// The data source is listed in `VIRT_MAIL_TEST_ODBC_DSNS`.
fn listed(dsn: &str) -> Result<(), String> {
    let list = env("VIRT_MAIL_TEST_ODBC_DSNS")?;
    if list.split_whitespace().any(|d| d == dsn) {
        Ok(())
    } else {
        Err(format!("{dsn} is not in VIRT_MAIL_TEST_ODBC_DSNS"))
    }
}

/// `text` in a buffer that also has a NUL after it; the returned slice excludes the NUL.
fn terminated(text: &str) -> String {
    format!("{text}\0")
}

impl Odbc {
    fn open(kind: Kind, connect: String) -> Result<Odbc, String> {
        env("ODBCINI")?;
        let store = Odbc { kind, connect };
        store.connection().map(drop)?;
        Ok(store)
    }

    /// SQLite through the SQLite3 ODBC driver, on the file `VIRT_MAIL_TEST_ODBC_SQLITE_DB`.
    /// Every test shares that file: a generous busy timeout queues parallel writers.
    pub fn sqlite_from_env() -> Result<Odbc, String> {
        env("VIRT_MAIL_TEST_ODBC_SQLITE_DB")?;
        listed("vm_sqlite")?;
        Odbc::open(Kind::Sqlite, "DSN=vm_sqlite;Timeout=60000".into())
    }

    pub fn postgres_from_env() -> Result<Odbc, String> {
        listed("vm_pg")?;
        Odbc::open(Kind::Postgres, "DSN=vm_pg".into())
    }

    pub fn mariadb_from_env() -> Result<Odbc, String> {
        listed("vm_mariadb")?;
        Odbc::open(Kind::Mariadb, "DSN=vm_mariadb".into())
    }

    /// Virtuoso's driver ignores credentials stored in the DSN: they go in the string.
    pub fn virtuoso_from_env() -> Result<Odbc, String> {
        let dsn = env("VIRT_MAIL_TEST_ODBC_VIRTUOSO_DSN")?;
        let user = env("VIRT_MAIL_TEST_VIRTUOSO_USER").unwrap_or_else(|_| "dba".into());
        let password = env("VIRT_MAIL_TEST_VIRTUOSO_PASSWORD").unwrap_or_else(|_| "dba".into());
        Odbc::open(
            Kind::Virtuoso,
            format!("DSN={dsn};UID={user};PWD={password}"),
        )
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn connection(&self) -> Result<odbc_api::Connection<'static>, String> {
        let env = odbc_api::environment().map_err(|e| e.to_string())?;
        let text = terminated(&self.connect);
        let options = ConnectionOptions {
            login_timeout_sec: Some(30),
            ..ConnectionOptions::default()
        };
        env.connect_with_connection_string(&text[..self.connect.len()], options)
            .map_err(|e| format!("{}: {e}", self.name()))
    }

    /// Runs a statement and returns its rows (every cell as bytes), or the driver's error.
    pub fn try_query(&self, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
        let conn = self.connection()?;
        let text = terminated(sql);
        let cursor = conn
            .execute(&text[..sql.len()], (), None)
            .map_err(|e| e.to_string())?;
        let Some(mut cursor) = cursor else {
            return Ok(Vec::new());
        };
        let columns = cursor.num_result_cols().map_err(|e| e.to_string())?;
        let mut binary = Vec::new();
        for column in 1..=columns as u16 {
            // A roomy name buffer: Virtuoso's driver does not respect short ones.
            let mut description = ColumnDescription {
                name: Vec::with_capacity(1024),
                ..ColumnDescription::default()
            };
            cursor
                .describe_col(column, &mut description)
                .map_err(|e| e.to_string())?;
            binary.push(matches!(
                description.data_type,
                DataType::Binary { .. }
                    | DataType::Varbinary { .. }
                    | DataType::LongVarbinary { .. }
            ));
        }
        // Row by row: Virtuoso's driver reports block cursors as empty.
        let mut rows = Vec::new();
        while let Some(mut row) = cursor.next_row().map_err(|e| e.to_string())? {
            let mut cells = Vec::with_capacity(binary.len());
            for (i, &is_binary) in binary.iter().enumerate() {
                let mut buf = Vec::new();
                let column = i as u16 + 1;
                let present = if is_binary {
                    row.get_binary(column, &mut buf)
                } else {
                    row.get_text(column, &mut buf)
                }
                .map_err(|e| e.to_string())?;
                cells.push(present.then_some(buf));
            }
            rows.push(cells);
        }
        Ok(rows)
    }
}

impl Store for Odbc {
    fn name(&self) -> String {
        let db = match self.kind {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::Mariadb => "mariadb",
            Kind::Virtuoso => "virtuoso",
        };
        format!("odbc {db}")
    }

    fn dsn(&self) -> String {
        self.connect.clone()
    }

    fn environment(&self) -> String {
        ["ODBCSYSINI", "ODBCINI"]
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| format!("{name} = {v}\n")))
            .collect()
    }

    /// Virtuoso does not isolate concurrent DDL: two `CREATE TABLE`s at once can both pick
    /// the same column ids and one is killed (SR175, unique index SYS_COLS). The tests run
    /// in parallel threads, so statements the test itself runs on Virtuoso take turns; a
    /// transaction Virtuoso killed anyway (rolled back whole) is run again.
    fn try_exec(&self, sql: &str) -> Result<(), String> {
        if self.kind != Kind::Virtuoso {
            return self.try_query(sql).map(drop);
        }
        static TURN: Mutex<()> = Mutex::new(());
        let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut tries = 0;
        loop {
            match self.try_query(sql) {
                Err(e) if tries < 5 && e.contains("Transaction killed") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50 * tries));
                }
                other => return other.map(drop),
            }
        }
    }

    fn query(&self, sql: &str) -> Vec<Vec<Cell>> {
        self.try_query(sql)
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.name()))
    }

    fn dialect(&self) -> Dialect {
        match self.kind {
            Kind::Sqlite => Dialect {
                blob: "BLOB",
                text: "TEXT",
                serial: "INTEGER PRIMARY KEY",
                native: false,
                // No procedures: a CheckReturn configuration is refused (78).
                procedures: None,
            },
            Kind::Postgres => Dialect {
                blob: "BYTEA",
                text: "TEXT",
                serial: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                native: false,
                procedures: Some(Procedures {
                    create: vec![
                        "CREATE FUNCTION {t}_exists(n text) RETURNS int LANGUAGE sql AS $$ \
                         SELECT CASE WHEN EXISTS (SELECT 1 FROM {t}_users WHERE name = n) \
                         THEN 1 ELSE 0 END $$"
                            .into(),
                        "CREATE FUNCTION {t}_store(r text, b bytea) RETURNS int LANGUAGE sql AS $$ \
                         INSERT INTO {t}_mail (recipient, body) VALUES (r, b); SELECT 0 $$"
                            .into(),
                    ],
                    drop: vec![
                        "DROP FUNCTION IF EXISTS {t}_exists(text)".into(),
                        "DROP FUNCTION IF EXISTS {t}_store(text, bytea)".into(),
                    ],
                    verify: "{t}_exists('$local')".into(),
                    deliver: "{t}_store('$local', $message)".into(),
                }),
            },
            Kind::Mariadb => Dialect {
                blob: "LONGBLOB",
                text: "VARCHAR(700)",
                serial: "BIGINT AUTO_INCREMENT PRIMARY KEY",
                native: false,
                // Connector/ODBC 3.1 cannot run {?=call …} (syntax error at prepare): 78.
                procedures: None,
            },
            Kind::Virtuoso => Dialect {
                blob: "LONG VARBINARY",
                text: "VARCHAR(700)",
                serial: "INTEGER IDENTITY PRIMARY KEY",
                native: false,
                procedures: Some(Procedures {
                    create: vec![
                        "CREATE PROCEDURE {t}_exists (IN n VARCHAR) { \
                         IF (EXISTS (SELECT 1 FROM {t}_users WHERE name = n)) RETURN 1; \
                         RETURN 0; }"
                            .into(),
                        "CREATE PROCEDURE {t}_store (IN r VARCHAR, IN b ANY) { \
                         INSERT INTO {t}_mail (recipient, body) VALUES (r, b); RETURN 0; }"
                            .into(),
                    ],
                    drop: vec![
                        "DROP PROCEDURE {t}_exists".into(),
                        "DROP PROCEDURE {t}_store".into(),
                    ],
                    verify: "{t}_exists('$local')".into(),
                    deliver: "{t}_store('$local', $message)".into(),
                }),
            },
        }
    }
}
