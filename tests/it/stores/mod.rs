//! The databases the scenario suite runs against. A `Store` is a live database reached two
//! ways: by virt_mail through a DSN, and by the test through its own client (to create
//! tables and read back what was stored). Server stores come from the environment that
//! `scripts/servers.sh start` writes; without it they are skipped, except under `CI=true`,
//! where a missing server fails the test loudly.

use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "odbc")]
pub mod odbc;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;
#[cfg(all(feature = "odbc", feature = "virtuoso"))]
pub mod virtuoso;

/// One row value as the test's client read it (NULL is `None`).
pub type Cell = Option<Vec<u8>>;

/// How a database spells the things the scenarios need.
#[derive(Clone, Debug)]
pub struct Dialect {
    /// Column type for message bodies (bytes, unlimited).
    pub blob: &'static str,
    /// Column type for texts up to a few hundred characters (usable as a primary key).
    pub text: &'static str,
    /// An auto-numbered primary key column definition.
    pub serial: &'static str,
    /// virt_mail reaches it natively (CheckReturn = the statement's first column), so the
    /// portable `SELECT CASE …` / `INSERT … RETURNING` forms apply.
    pub native: bool,
    /// Procedures returning an integer, where the database has them; through ODBC they are
    /// the only CheckReturn form (`{?=call …}`). `None` with `native == false`: virt_mail
    /// must refuse a CheckReturn configuration (exit 78).
    pub procedures: Option<Procedures>,
}

/// SQL that creates and calls procedures returning an integer, for the CheckReturn cases.
/// `{t}` in each string is replaced by the scenario's table prefix. The procedures work on
/// the scenario tables `{t}_users (name, folder)` and `{t}_mail (recipient, folder, sender,
/// body)`.
#[derive(Clone, Debug)]
pub struct Procedures {
    /// Statements creating `{t}_exists(name) -> 1/0` and `{t}_store(rcpt, body) -> 0`
    /// (inserts a row into `{t}_mail` and returns 0).
    pub create: Vec<String>,
    /// Statements dropping them.
    pub drop: Vec<String>,
    /// Verify calling `{t}_exists` with `$local` (returns 1 when the user exists).
    pub verify: String,
    /// Deliver calling `{t}_store` with `$local` and `$message` (returns 0).
    pub deliver: String,
}

pub trait Store: Send + Sync {
    /// For messages: which database, reached how.
    fn name(&self) -> String;
    /// The `DSN =` value virt_mail gets.
    fn dsn(&self) -> String;
    /// Lines for an `[Environment]` section (e.g. ODBCINI).
    fn environment(&self) -> String {
        String::new()
    }
    /// Runs one statement through the test's own client, or says why it failed.
    fn try_exec(&self, sql: &str) -> Result<(), String>;
    /// Runs one statement through the test's own client; a failure fails the test.
    fn exec(&self, sql: &str) {
        self.try_exec(sql)
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.name()));
    }
    /// Runs a query through the test's own client; every cell as bytes.
    fn query(&self, sql: &str) -> Vec<Vec<Cell>>;
    fn dialect(&self) -> Dialect;
}

/// A store from the environment, or why there is none. Under `CI=true` "none" is fatal.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(dead_code)
)]
pub fn require<S>(name: &str, found: Result<S, String>) -> Option<S> {
    match found {
        Ok(store) => Some(store),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{name}: no server ({why}); CI must run scripts/servers.sh start first")
        }
        Err(why) => {
            eprintln!(
                "skipping {name}: {why} (run scripts/servers.sh start and source its env.sh)"
            );
            None
        }
    }
}

/// A fresh table prefix, unique across concurrently running tests and processes.
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("vm{}_{n}_{:x}", std::process::id(), nanos & 0xfffff)
}

#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(dead_code)
)]
pub fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}
