//! Databases behind one small trait. Each backend runs configured statements with bound
//! parameters only, reduces its driver's errors to `DbError` (step, transient or permanent,
//! SQLSTATE), and leaves policy — what a row means, when to commit — to `app.rs`.
//!
//! The DSN picks the backend: `sqlite:PATH`, `postgres://…`, `mysql://…`, `virtuoso://…` or
//! the original's `HOST=…` form (Virtuoso's own protocol), or else an ODBC connect string.
//! Each backend is a cargo feature; a DSN for one that was not built in says so by name.

use std::time::Duration;

use crate::config::Statement;
use crate::error::{DbError, DbStep, Retry};
use crate::macros::{Macros, Value};

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(any(feature = "mysql", feature = "odbc"))]
mod mysql_errors;
#[cfg(feature = "odbc")]
mod odbc;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "virtuoso")]
pub mod virtuoso;

/// The databases this build reaches, as `--version` lists them.
pub const BUILT: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "virtuoso")]
    "virtuoso",
    #[cfg(feature = "odbc")]
    "odbc",
];

/// The first row a statement returned, each column as a macro value (`$1`, `$2`, …).
pub type Row = Vec<Value<'static>>;

/// Limits every backend applies.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connect: Duration,
    pub statement: Duration,
}

/// A connection to the mail store.
pub trait Backend {
    /// Runs a configured statement and returns its first row, if any. When the statement
    /// has a CheckReturn value it is a procedure call, and the row's first column is the
    /// procedure's return value (each backend documents how it calls one).
    fn run(&mut self, statement: &Statement, macros: &Macros<'_>) -> Result<Option<Row>, DbError>;

    /// Starts the transaction that `Deliver` runs in.
    fn begin(&mut self) -> Result<(), DbError>;

    /// Makes the delivery durable; success is reported to the MTA only after this returns.
    fn commit(&mut self) -> Result<(), DbError>;

    /// Housekeeping once the delivery is committed and counted (never fails the delivery).
    fn after_commit(&mut self) {}

    /// Undoes everything since `begin`.
    fn rollback(&mut self) -> Result<(), DbError>;
}

/// The database a DSN names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Sqlite(&'a str),
    Postgres,
    Mysql,
    /// Virtuoso's own protocol: a `virtuoso://` URL, or the original's `HOST=…` string
    /// (what `HOST`/`PORT`/`UID`/`PWD` compose) when this build has the native client.
    Virtuoso,
    Odbc,
}

impl<'a> Target<'a> {
    pub fn of(dsn: &'a str) -> Target<'a> {
        let lower = dsn.trim_start().to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            let rest = &dsn.trim_start()["sqlite:".len()..];
            Target::Sqlite(rest.strip_prefix("//").unwrap_or(rest))
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Target::Postgres
        } else if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            Target::Mysql
        } else if lower.starts_with("virtuoso://")
            || (cfg!(feature = "virtuoso") && is_originals_virtuoso_form(dsn))
        {
            Target::Virtuoso
        } else {
            Target::Odbc
        }
    }
}

/// Opens the database named by `dsn`.
#[cfg_attr(
    not(any(
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql",
        feature = "virtuoso",
        feature = "odbc"
    )),
    allow(unused_variables)
)]
pub fn connect(dsn: &str, limits: Limits) -> Result<Box<dyn Backend>, DbError> {
    match Target::of(dsn) {
        #[cfg(feature = "sqlite")]
        Target::Sqlite(path) => Ok(Box::new(sqlite::Sqlite::open(path, limits)?)),
        #[cfg(not(feature = "sqlite"))]
        Target::Sqlite(_) => Err(not_built("SQLite", "sqlite")),
        #[cfg(feature = "postgres")]
        Target::Postgres => Ok(Box::new(postgres::Postgres::connect(dsn, limits)?)),
        #[cfg(not(feature = "postgres"))]
        Target::Postgres => Err(not_built("PostgreSQL", "postgres")),
        #[cfg(feature = "mysql")]
        Target::Mysql => Ok(Box::new(mysql::Mysql::connect(dsn, limits)?)),
        #[cfg(not(feature = "mysql"))]
        Target::Mysql => Err(not_built("MySQL/MariaDB", "mysql")),
        #[cfg(feature = "virtuoso")]
        Target::Virtuoso => Ok(Box::new(virtuoso::Virtuoso::connect(dsn, limits)?)),
        #[cfg(not(feature = "virtuoso"))]
        Target::Virtuoso => Err(not_built("Virtuoso's native protocol", "virtuoso")),
        #[cfg(feature = "odbc")]
        Target::Odbc => Ok(Box::new(odbc::Odbc::connect(
            &odbc_connect_string(dsn),
            limits,
        )?)),
        #[cfg(not(feature = "odbc"))]
        Target::Odbc => Err(not_built("ODBC", "odbc")),
    }
}

/// The original accepted a DSN value without `DSN=`: `Virtuoso;UID=dba` means
/// `DSN=Virtuoso;UID=dba`. A first attribute with `=` (`DSN=`, `DRIVER=`, `FILEDSN=`…) is kept.
pub fn odbc_connect_string(dsn: &str) -> String {
    let dsn = dsn.trim();
    let first = dsn.split(';').next().unwrap_or("");
    if first.contains('=') {
        dsn.to_string()
    } else {
        format!("DSN={dsn}")
    }
}

#[cfg_attr(
    all(
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql",
        feature = "virtuoso",
        feature = "odbc"
    ),
    allow(dead_code)
)]
fn not_built(name: &str, feature: &str) -> DbError {
    DbError::new(
        DbStep::Connect,
        Retry::Transient,
        format!("this virt_mail was built without {name} support (cargo feature `{feature}`)"),
    )
}

/// The original's way to name a Virtuoso server: a `HOST` attribute, no `DRIVER` or
/// `FILEDSN`, and no data source name or the placeholder `noname` it composed. The original
/// embedded Virtuoso's client and never looked a data source name up, so in a build without
/// ODBC, which cannot look one up either, a name beside `HOST` (`DSN=Virtuoso;HOST=…`, the
/// original manual's example) is ignored as it was; with ODBC the named data source is used.
pub fn is_originals_virtuoso_form(connect: &str) -> bool {
    let attrs = crate::report::odbc_attributes(connect);
    let get = |key: &str| {
        attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| crate::report::odbc_unbrace(v))
    };
    get("HOST").is_some()
        && get("DRIVER").is_none()
        && get("FILEDSN").is_none()
        && (!cfg!(feature = "odbc")
            || get("DSN").is_none_or(|d| d.is_empty() || d.eq_ignore_ascii_case("noname")))
}

/// The procedure call in a CheckReturn statement: an ODBC escape (`{?=call f(?)}`,
/// `{call f(?)}`) and a leading `call` are taken off, and a trailing `;`.
pub fn procedure_call(sql: &str) -> &str {
    let mut body = sql.trim().trim_end_matches(';').trim_end();
    if let Some(inner) = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')) {
        body = inner.trim();
        if let Some(rest) = body.strip_prefix('?') {
            body = rest
                .trim_start()
                .strip_prefix('=')
                .unwrap_or(rest)
                .trim_start();
        }
    }
    if body
        .get(..5)
        .is_some_and(|w| w.eq_ignore_ascii_case("call "))
    {
        body = body[5..].trim_start();
    }
    body
}

/// The descriptors open in this process, or `None` without `/proc`: the backends find the
/// sockets their client library opened by what is new after connecting.
#[cfg(any(feature = "postgres", feature = "odbc"))]
pub(crate) fn open_fds() -> Option<std::collections::HashSet<std::os::fd::RawFd>> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// Whether an SQLSTATE says that trying again later can succeed: connection (08), resources
/// (53, 57), deadlock or serialization (40001, PostgreSQL's 40P01), a statement whose
/// completion is unknown (40003), timeouts (ODBC's, and PostgreSQL's idle-in-transaction
/// 25P03 and transaction 25P04), lock not available (55P03), read-only transaction (25006,
/// a fail-over). The PostgreSQL backend and every ODBC driver share this list.
pub fn sqlstate_is_transient(state: &str) -> bool {
    state.starts_with("08")
        || state.starts_with("57")
        || state.starts_with("53")
        || matches!(
            state,
            "40001"
                | "40P01"
                | "40003"
                | "HYT00"
                | "HYT01"
                | "S1T00"
                | "HY008"
                | "25P03"
                | "25P04"
                | "55P03"
                | "25006"
        )
}

/// Whether an SQLSTATE says the statement itself is wrong (syntax, unknown table or
/// procedure, wrong parameters, unsupported feature): the configuration's fault.
pub fn sqlstate_is_configuration(state: &str) -> bool {
    let class = state.get(..2).unwrap_or("");
    matches!(class, "42" | "37" | "3D" | "3F" | "07" | "0A" | "S0" | "IM") || state == "HYC00"
}

/// Whether a returned value equals the configured CheckReturn integer ("1", " 1 ", "1.0").
pub fn returned(row: Option<&Row>, expected: i64) -> bool {
    let Some(first) = row.and_then(|r| r.first()) else {
        return false;
    };
    let text = first.to_text();
    let text = text.trim();
    match text.parse::<i64>() {
        Ok(n) => n == expected,
        Err(_) => text.parse::<f64>().is_ok_and(|f| f == expected as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn dsn_selects_the_backend() {
        assert_eq!(
            Target::of("sqlite:/var/mail.db"),
            Target::Sqlite("/var/mail.db")
        );
        assert_eq!(
            Target::of("sqlite:///var/mail.db"),
            Target::Sqlite("/var/mail.db")
        );
        assert_eq!(Target::of("SQLite:rel.db"), Target::Sqlite("rel.db"));
        assert_eq!(Target::of("postgresql://u@h/db"), Target::Postgres);
        assert_eq!(Target::of("mariadb://u@h/db"), Target::Mysql);
        assert_eq!(Target::of("DSN=Virtuoso;UID=dba"), Target::Odbc);
        assert_eq!(Target::of("Virtuoso"), Target::Odbc);
        assert_eq!(Target::of("virtuoso://dba:dba@h:1111"), Target::Virtuoso);
        let original = Target::of("DSN=noname;HOST=h:1111;UID=dba;PWD=dba");
        let named = Target::of("DSN=Virtuoso;HOST=h:1111;UID=dba;PWD=dba");
        if cfg!(feature = "virtuoso") {
            assert_eq!(original, Target::Virtuoso);
        } else {
            assert_eq!(original, Target::Odbc);
        }
        // A data source name beside HOST: looked up where ODBC is built, else ignored as
        // the original ignored it.
        if cfg!(feature = "virtuoso") && !cfg!(feature = "odbc") {
            assert_eq!(named, Target::Virtuoso);
        } else {
            assert_eq!(named, Target::Odbc);
        }
        assert_eq!(Target::of("DRIVER={/v.so};HOST=h:1111"), Target::Odbc);
    }

    #[test]
    fn procedure_calls_lose_their_escape() {
        for (written, call) in [
            ("DB.DBA.NEW_MAIL(?, ?)", "DB.DBA.NEW_MAIL(?, ?)"),
            ("{?=call f(?)}", "f(?)"),
            ("{ ? = call f(?) };", "f(?)"),
            ("{call f(?)}", "f(?)"),
            ("CALL f(?)", "f(?)"),
            ("SELECT f(?)", "SELECT f(?)"),
        ] {
            assert_eq!(procedure_call(written), call, "{written}");
        }
    }

    #[test]
    fn odbc_strings_get_dsn_prepended_when_bare() {
        assert_eq!(odbc_connect_string("Virtuoso"), "DSN=Virtuoso");
        assert_eq!(
            odbc_connect_string("Virtuoso;UID=dba;PWD=x"),
            "DSN=Virtuoso;UID=dba;PWD=x"
        );
        assert_eq!(odbc_connect_string("DSN=V;UID=dba"), "DSN=V;UID=dba");
        assert_eq!(
            odbc_connect_string("DRIVER={SQLite3};Database=/x"),
            "DRIVER={SQLite3};Database=/x"
        );
        assert_eq!(
            odbc_connect_string("HOST=127.0.0.1:1111;UID=dba;PWD=dba"),
            "HOST=127.0.0.1:1111;UID=dba;PWD=dba"
        );
    }

    #[test]
    fn return_values_compare_as_integers() {
        let row = |s: &'static str| Some(vec![Value::Text(Cow::Borrowed(s))]);
        assert!(returned(row("1").as_ref(), 1));
        assert!(returned(row(" 1 ").as_ref(), 1));
        assert!(returned(row("1.0").as_ref(), 1));
        assert!(!returned(row("0").as_ref(), 1));
        assert!(!returned(row("").as_ref(), 0), "empty is not zero");
        assert!(!returned(None, 0));
        assert!(!returned(Some(&Vec::new()), 0));
    }
}
