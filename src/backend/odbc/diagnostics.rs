//! The driver's diagnostic records, and what they mean for the mail: every record kept in
//! the message, classified by SQLSTATE plus the native codes that MySQL/MariaDB and SQLite
//! drivers report under the catch-all `HY000`; the connect string and its passwords masked.

use odbc_api::sys::{self, Handle, HandleType, SqlReturn};

use crate::error::{DbError, DbStep, Retry, one_line};
use crate::report::{dsn_secrets, mask_all};

/// At most this many diagnostic records are read after a failure.
pub(super) const MAX_RECORDS: i16 = 20;

/// The database behind the driver, where its errors or its calls need special care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dbms {
    Virtuoso,
    PostgreSql,
    /// MySQL or MariaDB (Connector/ODBC reports server error numbers as native codes).
    MySql,
    /// SQLite (Christian Werner's driver reports SQLite result codes as native codes).
    Sqlite,
    Other,
}

impl Dbms {
    pub(super) fn from_name(name: &str) -> Dbms {
        let name = name.to_ascii_lowercase();
        if name.contains("virtuoso") {
            Dbms::Virtuoso
        } else if name.contains("postgres") {
            Dbms::PostgreSql
        } else if name.contains("mysql") || name.contains("mariadb") {
            Dbms::MySql
        } else if name.contains("sqlite") {
            Dbms::Sqlite
        } else {
            Dbms::Other
        }
    }
}

/// One diagnostic record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Diagnostic {
    pub(super) state: String,
    pub(super) native: i32,
    pub(super) message: String,
}

pub(super) fn diagnostics(handle_type: HandleType, handle: Handle) -> Vec<Diagnostic> {
    let mut records = Vec::new();
    for number in 1..=MAX_RECORDS {
        let mut state = [0u8; 6];
        let mut native = 0i32;
        let mut text = vec![0u8; 1024];
        let mut len = 0i16;
        // SAFETY: every buffer is valid and its length is passed; the handle is live.
        let ret = unsafe {
            sys::SQLGetDiagRec(
                handle_type,
                handle,
                number,
                state.as_mut_ptr(),
                &mut native,
                text.as_mut_ptr(),
                text.len() as i16,
                &mut len,
            )
        };
        if ret != SqlReturn::SUCCESS && ret != SqlReturn::SUCCESS_WITH_INFO {
            break;
        }
        // The text is NUL-terminated; some drivers misreport its length, so the NUL decides.
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        text.truncate(end);
        let state_len = state.iter().position(|&b| b == 0).unwrap_or(5);
        records.push(Diagnostic {
            state: String::from_utf8_lossy(&state[..state_len]).into_owned(),
            native,
            message: String::from_utf8_lossy(&text).into_owned(),
        });
    }
    records
}

/// Whether a record says that trying again later can succeed.
fn transient(dbms: Dbms, d: &Diagnostic) -> bool {
    let by_state = super::super::sqlstate_is_transient(&d.state);
    let by_native = match dbms {
        // Server and client error numbers, the native backend's list.
        Dbms::MySql => u32::try_from(d.native).is_ok_and(super::super::mysql_errors::is_transient),
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_INTERRUPT (the watchdog),
        // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
        Dbms::Sqlite => matches!(d.native & 0xff, 5 | 6 | 7 | 9 | 10 | 13 | 14),
        _ => false,
    };
    by_state || by_native
}

/// Whether a record says the statement itself is wrong (syntax, unknown table or procedure,
/// wrong parameters, unsupported feature): the configuration's fault, whenever the driver
/// happens to notice it.
fn configuration(dbms: Dbms, d: &Diagnostic) -> bool {
    super::super::sqlstate_is_configuration(&d.state)
        // SQLite ODBC reports prepare failures (syntax, no such table) as HY000/SQLITE_ERROR,
        // sometimes only when the statement runs.
        || (dbms == Dbms::Sqlite && d.state == "HY000" && d.native == 1)
}

/// A driver failure as a `DbError`: every record in the message, the first error's SQLSTATE
/// and native code, transient when any record says so, and the step moved to `Prepare` when
/// the statement itself is at fault.
pub(super) fn classify(step: DbStep, dbms: Dbms, records: &[Diagnostic], what: &str) -> DbError {
    // A failure the driver cannot even describe (psqlODBC on a connection whose server
    // died) says nothing about the statement: assume the fault passes.
    let unexplained = records.iter().all(|d| d.state.starts_with("01"));
    let retry =
        if step == DbStep::Connect || unexplained || records.iter().any(|d| transient(dbms, d)) {
            Retry::Transient
        } else {
            Retry::Permanent
        };
    let step = if retry == Retry::Permanent
        && step == DbStep::Execute
        && records.iter().any(|d| configuration(dbms, d))
    {
        DbStep::Prepare
    } else {
        step
    };
    // The first record that is not a warning (01xxx) names the error.
    let main = records
        .iter()
        .find(|d| !d.state.starts_with("01"))
        .or(records.first());
    let mut message = String::new();
    for d in records {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&one_line(&d.message));
        if main.is_some_and(|m| !std::ptr::eq(m, d)) && !d.state.is_empty() {
            message.push_str(&format!(" (SQLSTATE={})", d.state));
        }
    }
    if message.is_empty() {
        message = format!("{what} failed without a diagnostic record");
    }
    let mut error = DbError::new(step, retry, message);
    if let Some(main) = main {
        if !main.state.is_empty() {
            error = error.with_sqlstate(main.state.clone());
        }
        if main.native != 0 {
            error = error.with_native(main.native.to_string());
        }
    }
    error
}

/// Replaces the connect string and its passwords wherever they appear in a message.
pub(super) fn scrub(mut error: DbError, secrets: &[String]) -> DbError {
    error.message = mask_all(&error.message, secrets);
    error
}

/// The passwords in a connect string (and the string itself), never to be shown.
pub(super) fn secrets(connect: &str) -> Vec<String> {
    let mut out = vec![connect.to_string()];
    out.extend(dsn_secrets(connect));
    out
}

/// A statement time limit fired (the driver's or ours).
pub(super) fn timed_out(error: &DbError) -> bool {
    matches!(
        error.sqlstate.as_deref(),
        Some("HYT00" | "HYT01" | "S1T00" | "HY008")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::odbc_attributes;

    #[test]
    fn connect_string_attributes_respect_braces() {
        assert_eq!(
            odbc_attributes("DSN=a;PWD={x;y=z};;UID = u "),
            [("DSN", "a"), ("PWD", "{x;y=z}"), ("UID", "u")]
        );
        let s = secrets("DSN=a;PWD={x;y};Password=q");
        assert!(s.contains(&"x;y".to_string()) && s.contains(&"q".to_string()));
        assert!(s.contains(&"DSN=a;PWD={x;y};Password=q".to_string()));
        // `}}` inside braces is an escaped brace: the value goes on past it.
        assert_eq!(
            odbc_attributes("PWD={a}};b};UID=u"),
            [("PWD", "{a}};b}"), ("UID", "u")]
        );
        let s = secrets("PWD={a}};b};UID=u");
        assert!(s.contains(&"a};b".to_string()), "{s:?}");
    }

    #[test]
    fn messages_never_show_the_connect_string_or_password() {
        let cs = "DSN=x;UID=u;PWD=hunter2";
        let e = DbError::new(
            DbStep::Connect,
            Retry::Transient,
            format!("cannot connect with {cs}; password hunter2 rejected"),
        );
        let e = scrub(e, &secrets(cs));
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(!e.message.contains("PWD="), "{}", e.message);
    }

    fn d(state: &str, native: i32) -> Diagnostic {
        Diagnostic {
            state: state.into(),
            native,
            message: format!("{state}/{native}"),
        }
    }

    fn retry(dbms: Dbms, state: &str, native: i32) -> Retry {
        classify(DbStep::Execute, dbms, &[d(state, native)], "x").retry
    }

    #[test]
    fn transient_sqlstates() {
        for state in [
            "08001", "08S01", "08006", "40001", "40P01", "HYT00", "HYT01", "S1T00", "HY008",
            "57014", "57P01", "53300", "53100", "55P03", "25006", "25P03", "25P04", "40003",
        ] {
            assert_eq!(retry(Dbms::Other, state, 0), Retry::Transient, "{state}");
        }
        for state in [
            "42000", "23000", "23505", "22001", "HY000", "42S02", "07001", "25P02",
        ] {
            assert_eq!(retry(Dbms::Other, state, 0), Retry::Permanent, "{state}");
        }
    }

    #[test]
    fn mysql_error_numbers_decide_whatever_the_sqlstate() {
        for native in [
            1205, 1213, 1040, 2002, 2006, 2013, 1290, 1836, 1969, 1053, 1317,
        ] {
            assert_eq!(
                retry(Dbms::MySql, "HY000", native),
                Retry::Transient,
                "{native}"
            );
            // Only MySQL's numbers mean that.
            assert_eq!(retry(Dbms::PostgreSql, "HY000", native), Retry::Permanent);
        }
        assert_eq!(retry(Dbms::MySql, "23000", 1048), Retry::Permanent);
        assert_eq!(retry(Dbms::MySql, "HY000", 1105), Retry::Permanent);
    }

    #[test]
    fn mysql_error_numbers_are_the_native_backends() {
        // Once missing here (permanent through Connector/ODBC), transient natively.
        for native in [
            1020, 1412, 3101, 1114, 1030, 1180, 1181, 1637, 3572, 1152, 1153, 1223, 1047, 1615,
            3024,
        ] {
            assert_eq!(
                retry(Dbms::MySql, "HY000", native),
                Retry::Transient,
                "{native}"
            );
        }
    }

    #[test]
    fn a_transient_mysql_number_wins_over_a_configuration_sqlstate() {
        use crate::exit::ExitCode;
        // max_queries_per_hour reached: SQLSTATE 42000, which alone means a wrong statement.
        for step in [DbStep::Execute, DbStep::Prepare] {
            let e = classify(step, Dbms::MySql, &[d("42000", 1226)], "x");
            assert_eq!((e.step, e.retry), (step, Retry::Transient));
            assert_eq!(e.exit_code(), ExitCode::TempFail);
        }
        // A real syntax error stays the configuration's.
        let e = classify(DbStep::Execute, Dbms::MySql, &[d("42000", 1064)], "x");
        assert_eq!(e.exit_code(), ExitCode::Config);
    }

    #[test]
    fn sqlite_busy_is_transient() {
        assert_eq!(retry(Dbms::Sqlite, "HY000", 5), Retry::Transient);
        assert_eq!(retry(Dbms::Sqlite, "HY000", 6), Retry::Transient);
        assert_eq!(retry(Dbms::Sqlite, "HY000", 19), Retry::Permanent);
    }

    #[test]
    fn connect_errors_are_always_transient() {
        let e = classify(DbStep::Connect, Dbms::Other, &[d("28000", 0)], "x");
        assert_eq!((e.step, e.retry), (DbStep::Connect, Retry::Transient));
        let e = classify(DbStep::Connect, Dbms::Other, &[], "SQLDriverConnect");
        assert_eq!(e.retry, Retry::Transient);
        assert!(e.message.contains("SQLDriverConnect"));
    }

    #[test]
    fn a_failure_without_diagnostics_is_transient() {
        // psqlODBC after its server died: SQLExecute fails and says nothing more.
        let e = classify(DbStep::Execute, Dbms::PostgreSql, &[], "SQLExecute");
        assert_eq!(e.retry, Retry::Transient);
        let e = classify(DbStep::Execute, Dbms::Other, &[d("01004", 0)], "SQLExecute");
        assert_eq!(
            e.retry,
            Retry::Transient,
            "warnings only explain nothing either"
        );
    }

    #[test]
    fn a_wrong_statement_is_a_configuration_error_even_when_it_fails_late() {
        // psqlODBC prepares on the server only at execution.
        let e = classify(DbStep::Execute, Dbms::PostgreSql, &[d("42P01", 7)], "x");
        assert_eq!((e.step, e.retry), (DbStep::Prepare, Retry::Permanent));
        assert_eq!(e.sqlstate.as_deref(), Some("42P01"));
        assert_eq!(e.native.as_deref(), Some("7"));
        let e = classify(DbStep::Execute, Dbms::Sqlite, &[d("HY000", 1)], "x");
        assert_eq!(e.step, DbStep::Prepare);
        let e = classify(DbStep::Execute, Dbms::Sqlite, &[d("HY000", 19)], "x");
        assert_eq!(e.step, DbStep::Execute);
        let e = classify(DbStep::Execute, Dbms::Other, &[d("23502", 0)], "x");
        assert_eq!(e.step, DbStep::Execute);
    }

    #[test]
    fn every_record_is_kept_and_the_first_error_names_it() {
        let records = [d("01000", 0), d("HY000", 1105), d("42000", 1064)];
        let e = classify(DbStep::Execute, Dbms::MySql, &records, "x");
        assert_eq!(e.sqlstate.as_deref(), Some("HY000"));
        assert_eq!(e.native.as_deref(), Some("1105"));
        assert!(e.message.contains("01000/0") && e.message.contains("42000/1064"));
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn dbms_names() {
        assert_eq!(Dbms::from_name("OpenLink Virtuoso"), Dbms::Virtuoso);
        assert_eq!(Dbms::from_name("PostgreSQL"), Dbms::PostgreSql);
        assert_eq!(Dbms::from_name("MariaDB"), Dbms::MySql);
        assert_eq!(Dbms::from_name("MySQL"), Dbms::MySql);
        assert_eq!(Dbms::from_name("SQLite"), Dbms::Sqlite);
        assert_eq!(Dbms::from_name("Oracle"), Dbms::Other);
    }
}
