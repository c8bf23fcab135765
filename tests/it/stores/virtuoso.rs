//! Virtuoso as virt_mail reaches it natively (`virtuoso://`, its own protocol), while the
//! test creates tables and reads rows back through the Virtuoso ODBC data source: two
//! independent clients, so a row is checked by a client that did not write it.

use super::odbc::Odbc;
use super::{Cell, Dialect, Store, env};

pub struct Native {
    odbc: Odbc,
    dsn: String,
}

impl Native {
    pub fn from_env() -> Result<Native, String> {
        let host = env("VIRT_MAIL_TEST_VIRTUOSO_HOST")?;
        let user = env("VIRT_MAIL_TEST_VIRTUOSO_USER").unwrap_or_else(|_| "dba".into());
        let password = env("VIRT_MAIL_TEST_VIRTUOSO_PASSWORD").unwrap_or_else(|_| "dba".into());
        Ok(Native {
            odbc: Odbc::virtuoso_from_env()?,
            dsn: format!("virtuoso://{user}:{password}@{host}"),
        })
    }
}

impl Store for Native {
    fn name(&self) -> String {
        "virtuoso (native)".into()
    }

    fn dsn(&self) -> String {
        self.dsn.clone()
    }

    fn try_exec(&self, sql: &str) -> Result<(), String> {
        self.odbc.try_exec(sql)
    }

    fn query(&self, sql: &str) -> Vec<Vec<Cell>> {
        self.odbc.query(sql)
    }

    /// The same SQL as through ODBC; CheckReturn is a procedure call here too.
    fn dialect(&self) -> Dialect {
        self.odbc.dialect()
    }
}
