//! MariaDB (or MySQL) from `scripts/servers.sh`: virt_mail reaches it over TCP
//! (`VIRT_MAIL_TEST_MYSQL_URL`), the test through the same `mysql` crate, text protocol.

use std::sync::Mutex;

use mysql::prelude::Queryable;

use super::{Cell, Dialect, Procedures, Store};

pub struct Mysql {
    url: String,
    conn: Mutex<mysql::Conn>,
}

impl Mysql {
    pub fn from_env() -> Result<Mysql, String> {
        let url = super::env("VIRT_MAIL_TEST_MYSQL_URL")?;
        let conn = connect(&url)?;
        Ok(Mysql {
            url,
            conn: Mutex::new(conn),
        })
    }

    /// The TCP URL virt_mail gets (also used by the MySQL-specific tests).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` on the test's connection; after a failure (the fault tests stop and kill the
    /// server) it reconnects and tries once more.
    fn with_conn<T>(&self, f: impl Fn(&mut mysql::Conn) -> mysql::Result<T>) -> mysql::Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        match f(&mut conn) {
            Ok(v) => Ok(v),
            Err(first) => match connect(&self.url) {
                Ok(fresh) => {
                    *conn = fresh;
                    f(&mut conn)
                }
                Err(_) => Err(first),
            },
        }
    }
}

/// A connection of the test's own (no socket detour, no TLS).
pub fn connect(url: &str) -> Result<mysql::Conn, String> {
    let opts = mysql::Opts::from_url(url).map_err(|e| format!("VIRT_MAIL_TEST_MYSQL_URL: {e}"))?;
    let opts = mysql::OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .tcp_connect_timeout(Some(std::time::Duration::from_secs(5)));
    mysql::Conn::new(opts).map_err(|e| format!("cannot connect to MariaDB: {e}"))
}

/// A cell as bytes: the text protocol gives every value as its text.
pub fn cell(value: mysql::Value) -> Cell {
    match value {
        mysql::Value::NULL => None,
        mysql::Value::Bytes(b) => Some(b),
        other => Some(other.as_sql(true).into_bytes()),
    }
}

impl Store for Mysql {
    fn name(&self) -> String {
        "mariadb".into()
    }

    fn dsn(&self) -> String {
        self.url.clone()
    }

    fn try_exec(&self, sql: &str) -> Result<(), String> {
        self.with_conn(|c| c.query_drop(sql))
            .map_err(|e| e.to_string())
    }

    fn query(&self, sql: &str) -> Vec<Vec<Cell>> {
        let rows: Vec<mysql::Row> = self
            .with_conn(|c| c.query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter()
            .map(|row| row.unwrap().into_iter().map(cell).collect())
            .collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect {
            blob: "LONGBLOB",
            // utf8mb4 (the database default): 700 characters = 2800 bytes, under InnoDB's
            // 3072-byte key limit, so it can be a primary key.
            text: "VARCHAR(700)",
            serial: "BIGINT AUTO_INCREMENT PRIMARY KEY",
            native: true,
            // MySQL procedures have no return value: CheckReturn calls stored functions
            // through SELECT. The server here runs without binary logging, so a function that
            // modifies data needs no DETERMINISTIC or log_bin_trust_function_creators; the
            // characteristics below are the honest ones.
            procedures: Some(Procedures {
                create: vec![
                    "CREATE FUNCTION {t}_exists(n VARCHAR(700)) RETURNS INT \
                     READS SQL DATA \
                     RETURN EXISTS (SELECT 1 FROM {t}_users WHERE name = n)"
                        .into(),
                    "CREATE FUNCTION {t}_store(r VARCHAR(700), b LONGBLOB) RETURNS INT \
                     MODIFIES SQL DATA \
                     BEGIN INSERT INTO {t}_mail (recipient, body) VALUES (r, b); RETURN 0; END"
                        .into(),
                ],
                drop: vec![
                    "DROP FUNCTION IF EXISTS {t}_exists".into(),
                    "DROP FUNCTION IF EXISTS {t}_store".into(),
                ],
                verify: "SELECT {t}_exists('$local')".into(),
                deliver: "SELECT {t}_store('$local', $message)".into(),
            }),
        }
    }
}
