//! The connect string: the original's "Virtuoso server at HOST" form rewritten for the
//! Virtuoso ODBC driver, and the `{?=call …}` escape that CheckReturn statements run as.

use std::path::Path;

use super::diagnostics::Dbms;
use crate::report::odbc_attributes;

/// Where the Virtuoso ODBC driver usually is (Debian/Ubuntu multiarch, other distributions,
/// OpenLink's own builds). `VIRT_MAIL_VIRTUOSO_DRIVER` overrides the search.
pub(super) const VIRTUOSO_DRIVERS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/odbc/virtodbc_r.so",
    "/usr/lib/aarch64-linux-gnu/odbc/virtodbc_r.so",
    "/usr/lib/odbc/virtodbc_r.so",
    "/usr/lib64/odbc/virtodbc_r.so",
    "/usr/lib64/virtodbc_r.so",
    "/usr/local/lib/virtodbc_r.so",
    "/usr/local/virtuoso-opensource/lib/virtodbc_r.so",
    "/opt/virtuoso-opensource/lib/virtodbc_r.so",
    "/opt/virtuoso/lib/virtodbc_r.so",
];

/// What a connect string asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolved {
    /// A data source or driver the driver manager knows: used as given.
    AsGiven,
    /// The original's Virtuoso form, rewritten for the Virtuoso driver.
    Virtuoso(String),
    /// The Virtuoso form, but no Virtuoso driver was found.
    NoVirtuosoDriver,
}

/// Recognises the original's "Virtuoso server at HOST" strings: a `HOST` attribute, no
/// `DRIVER` (or `FILEDSN`), and no data source name or the placeholder `noname` the original
/// composed. The rewrite names the driver and keeps every other attribute as written.
pub(super) fn resolve(connect: &str, virtuoso_driver: Option<&str>) -> Resolved {
    if !super::super::is_originals_virtuoso_form(connect) {
        return Resolved::AsGiven;
    }
    let Some(driver) = virtuoso_driver else {
        return Resolved::NoVirtuosoDriver;
    };
    let mut out = format!("DRIVER={{{driver}}}");
    for (k, v) in odbc_attributes(connect) {
        if !k.eq_ignore_ascii_case("DSN") {
            out.push(';');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
    }
    Resolved::Virtuoso(out)
}

/// The Virtuoso ODBC driver to use for the original's DSN form.
pub(super) fn virtuoso_driver() -> Option<String> {
    if let Some(path) = std::env::var_os("VIRT_MAIL_VIRTUOSO_DRIVER") {
        if !path.is_empty() {
            return Some(path.to_string_lossy().into_owned());
        }
    }
    VIRTUOSO_DRIVERS
        .iter()
        .find(|p| Path::new(p).is_file())
        .map(|p| p.to_string())
}

/// `{?=call …}` around a configured procedure call (`DB.DBA.CHECK_USER(?)`, or with a
/// leading `call`). PostgreSQL gets `{call …}`: see the module comment.
pub(super) fn call_escape(sql: &str, dbms: Dbms) -> String {
    let body = super::super::procedure_call(sql);
    match dbms {
        Dbms::PostgreSql => format!("{{call {body}}}"),
        _ => format!("{{?=call {body}}}"),
    }
}

/// Why a CheckReturn statement failed to prepare, for the administrator.
pub(super) fn call_hint(dbms: Dbms) -> &'static str {
    match dbms {
        Dbms::MySql => {
            "; CheckReturn runs the statement as {?=call …}, which MariaDB/MySQL Connector/ODBC \
             does not support: use Verify/Deliver without CheckReturn (e.g. SELECT f(…)) or the \
             native mysql:// backend"
        }
        Dbms::Sqlite => {
            "; CheckReturn runs the statement as {?=call …}, and SQLite has no procedures: use \
             Verify/Deliver without CheckReturn"
        }
        Dbms::PostgreSql => {
            "; CheckReturn runs the statement as {call …}: it must call a function that returns \
             an integer"
        }
        _ => {
            "; CheckReturn runs the statement as {?=call …}: it must call a procedure that \
             returns an integer, through a driver that supports that escape"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVER: Option<&str> = Some("/x/virtodbc_r.so");

    #[test]
    fn the_originals_composed_dsn_goes_to_the_virtuoso_driver() {
        assert_eq!(
            resolve("DSN=noname;HOST=localhost:1111;UID=dba;PWD=dba", DRIVER),
            Resolved::Virtuoso(
                "DRIVER={/x/virtodbc_r.so};HOST=localhost:1111;UID=dba;PWD=dba".into()
            )
        );
        assert_eq!(
            resolve("HOST=127.0.0.1:11111;UID=dba;PWD={a;b}", DRIVER),
            Resolved::Virtuoso(
                "DRIVER={/x/virtodbc_r.so};HOST=127.0.0.1:11111;UID=dba;PWD={a;b}".into()
            )
        );
        assert_eq!(
            resolve("dsn=NONAME; host=h:1 ;uid=u;pwd=p;CHARSET=UTF-8", DRIVER),
            Resolved::Virtuoso(
                "DRIVER={/x/virtodbc_r.so};host=h:1;uid=u;pwd=p;CHARSET=UTF-8".into()
            )
        );
        assert_eq!(
            resolve("DSN=noname;HOST=h:1", None),
            Resolved::NoVirtuosoDriver
        );
    }

    #[test]
    fn named_data_sources_and_drivers_are_used_as_given() {
        for dsn in [
            "DSN=Virtuoso;HOST=localhost:1111;UID=dba;PWD=dba",
            "DSN=vm_pg",
            "DRIVER={Virtuoso};HOST=h:1111;UID=dba;PWD=dba",
            "DRIVER=/usr/lib/odbc/virtodbc_r.so;HOST=h:1",
            "FILEDSN=/etc/x.dsn;HOST=h",
            "DSN=noname;UID=dba;PWD=dba",
            "DRIVER={SQLite3};Database=/x",
        ] {
            assert_eq!(resolve(dsn, DRIVER), Resolved::AsGiven, "{dsn}");
        }
    }

    #[test]
    fn check_return_wraps_the_call() {
        assert_eq!(
            call_escape("DB.DBA.CHECK_USER(?)", Dbms::Virtuoso),
            "{?=call DB.DBA.CHECK_USER(?)}"
        );
        assert_eq!(
            call_escape(" call f(?, ?); ", Dbms::Other),
            "{?=call f(?, ?)}"
        );
        assert_eq!(call_escape("f(?)", Dbms::PostgreSql), "{call f(?)}");
        // Written as an escape already, as SPEC's examples do: not wrapped twice.
        assert_eq!(
            call_escape("{?=call f(?)}", Dbms::Virtuoso),
            "{?=call f(?)}"
        );
        assert_eq!(
            call_escape("{ ? = call f(?) };", Dbms::Other),
            "{?=call f(?)}"
        );
        assert_eq!(call_escape("{call f(?)}", Dbms::PostgreSql), "{call f(?)}");
    }
}
