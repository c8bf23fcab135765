//! PostgreSQL from `scripts/servers.sh`: virt_mail gets the TCP URL
//! (`VIRT_MAIL_TEST_PG_URL`); the test reads back through its own `postgres` client.

use std::sync::Mutex;
use std::time::Duration;

use postgres::types::{FromSql, Type};
use postgres::{Client, Config, NoTls};

use super::{Cell, Dialect, Procedures, Store, env};

pub struct Postgres {
    dsn: String,
    /// The test's own connection (the TCP URL), reopened after a server restart.
    url: String,
    client: Mutex<Client>,
}

impl Postgres {
    /// The server `scripts/servers.sh start pg` runs, or why there is none.
    pub fn from_env() -> Result<Postgres, String> {
        let url = env("VIRT_MAIL_TEST_PG_URL")?;
        let client = connect(&url)?;
        Ok(Postgres {
            dsn: url.clone(),
            url,
            client: Mutex::new(client),
        })
    }

    /// The same server, with virt_mail reaching it through `dsn` instead of the TCP URL.
    pub fn with_dsn(self, dsn: String) -> Postgres {
        Postgres { dsn, ..self }
    }

    /// A second client of its own (e.g. to hold a lock while virt_mail runs).
    pub fn client(&self) -> Client {
        connect(&self.dsn).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `f` on the test's connection; after a failure (the fault tests stop and kill the
    /// server) it reconnects and tries once more.
    fn with_client<T>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        match f(&mut client) {
            Ok(v) => Ok(v),
            Err(first) => match connect(&self.url) {
                Ok(fresh) => {
                    *client = fresh;
                    f(&mut client)
                }
                Err(_) => Err(first),
            },
        }
    }
}

fn connect(url: &str) -> Result<Client, String> {
    let mut config: Config = url
        .parse()
        .map_err(|e| format!("VIRT_MAIL_TEST_PG_URL: {e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    config
        .connect(NoTls)
        .map_err(|e| format!("PostgreSQL at VIRT_MAIL_TEST_PG_URL does not answer: {e}"))
}

/// A result cell as the server sent it.
struct Raw(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }

    fn from_sql_null(_: &Type) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A binary cell as bytes: numbers as their decimal text, text and bytea as they are.
fn cell(ty: &Type, raw: Vec<u8>) -> Vec<u8> {
    let int = |n: i128| n.to_string().into_bytes();
    match *ty {
        Type::INT2 => int(i16::from_be_bytes(raw.try_into().unwrap()).into()),
        Type::INT4 => int(i32::from_be_bytes(raw.try_into().unwrap()).into()),
        Type::INT8 => int(i64::from_be_bytes(raw.try_into().unwrap()).into()),
        Type::OID => int(u32::from_be_bytes(raw.try_into().unwrap()).into()),
        Type::BOOL => if raw == [0] { b"f" } else { b"t" }.to_vec(),
        Type::FLOAT4 => f32::from_be_bytes(raw.try_into().unwrap())
            .to_string()
            .into_bytes(),
        Type::FLOAT8 => f64::from_be_bytes(raw.try_into().unwrap())
            .to_string()
            .into_bytes(),
        Type::BYTEA
        | Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::JSON => raw,
        _ => panic!("query: cast the {} column to text", ty.name()),
    }
}

impl Store for Postgres {
    fn name(&self) -> String {
        "postgres".into()
    }

    fn dsn(&self) -> String {
        self.dsn.clone()
    }

    fn try_exec(&self, sql: &str) -> Result<(), String> {
        self.with_client(|c| c.batch_execute(sql))
            .map_err(|e| format!("{e:?}"))
    }

    fn query(&self, sql: &str) -> Vec<Vec<Cell>> {
        let rows = self
            .with_client(|c| c.query(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        rows.iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, column)| {
                        let Raw(raw) = row.get(i);
                        raw.map(|raw| cell(column.type_(), raw))
                    })
                    .collect()
            })
            .collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect {
            blob: "BYTEA",
            text: "TEXT",
            serial: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            native: true,
            procedures: Some(Procedures {
                create: vec![
                    "CREATE FUNCTION {t}_exists(n text) RETURNS int LANGUAGE plpgsql AS $$ \
                     BEGIN RETURN CASE WHEN EXISTS (SELECT 1 FROM {t}_users WHERE name = n) \
                     THEN 1 ELSE 0 END; END $$"
                        .into(),
                    "CREATE FUNCTION {t}_store(r text, b bytea) RETURNS int LANGUAGE plpgsql AS $$ \
                     BEGIN INSERT INTO {t}_mail (recipient, body) VALUES (r, b); RETURN 0; END $$"
                        .into(),
                ],
                drop: vec![
                    "DROP FUNCTION IF EXISTS {t}_exists(text)".into(),
                    "DROP FUNCTION IF EXISTS {t}_store(text, bytea)".into(),
                ],
                verify: "SELECT {t}_exists('$local')".into(),
                deliver: "SELECT {t}_store('$local', $message)".into(),
            }),
        }
    }
}
