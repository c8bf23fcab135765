//! PostgreSQL-specific behaviour: DSN forms, text vs bytea bodies, time limits, secrets,
//! connection failures, Verify column types, parallel deliveries. Each test makes its own
//! tables (`stores::unique_prefix`), so they run in parallel with everything else.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::scenarios::{Case, HeldCommit};
use crate::stores::{self, Store, postgres::Postgres};

fn store() -> Option<Postgres> {
    stores::require("postgres", Postgres::from_env())
}

/// Drops what a test made outside `Case` (tables, procedures) when it ends, however it ends.
struct Cleanup<'s> {
    store: &'s Postgres,
    drops: Vec<String>,
}

impl Cleanup<'_> {
    fn tables<'s>(store: &'s Postgres, names: &[String]) -> Cleanup<'s> {
        Cleanup {
            store,
            drops: names
                .iter()
                .map(|n| format!("DROP TABLE IF EXISTS {n}"))
                .collect(),
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for sql in &self.drops {
            let _ = self.store.try_exec(sql);
        }
    }
}

/// Percent-encodes everything but unreserved characters (for URL user, password, path).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// User, password and database of the test server, from its URL.
fn credentials() -> (String, String, String) {
    let config: postgres::Config = stores::env("VIRT_MAIL_TEST_PG_URL")
        .unwrap()
        .parse()
        .unwrap();
    let user = config.get_user().unwrap_or("postgres").to_string();
    let password = String::from_utf8(config.get_password().unwrap_or_default().to_vec()).unwrap();
    let db = config.get_dbname().unwrap_or(&user).to_string();
    (user, password, db)
}

/// A configuration outside any store (for servers that are not there).
fn bare_config(dsn: &str) -> (tempfile::TempDir, PathBuf) {
    bare_config_with(dsn, "ConnectTimeout = 5")
}

fn bare_config_with(dsn: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("virt_mail.ini");
    std::fs::write(
        &path,
        format!(
            "[Options]\nDSN = {dsn}\n{extra}\n\
             Verify = SELECT name FROM users WHERE name = '$local'\n\
             Deliver = INSERT INTO mail (recipient, body) VALUES ($1, $message)\n{BOUNCE}"
        ),
    )
    .unwrap();
    mode(&path, 0o600);
    (dir, path)
}

/// (a) Both unix-socket forms deliver: `?host=/dir` and a percent-encoded path as host.
#[test]
fn unix_socket_dsns_deliver() {
    let Some(tcp) = store() else { return };
    let dir = stores::env("VIRT_MAIL_TEST_PG_SOCKET_DIR").unwrap();
    let port = stores::env("VIRT_MAIL_TEST_PG_PORT").unwrap();
    let (user, password, db) = credentials();
    let (user, password) = (encode(&user), encode(&password));
    let forms = [
        format!("postgres://{user}:{password}@/{db}?host={dir}&port={port}"),
        format!(
            "postgresql://{user}:{password}@{}:{port}/{db}",
            encode(&dir)
        ),
    ];
    let mut store = tcp;
    for dsn in forms {
        store = store.with_dsn(dsn.clone());
        let case = Case::new(&store);
        let body = b"Subject: socket\n\nvia the unix socket\n".to_vec();
        case.run()
            .args(["-l", "alice", "-s", "bob@example.org"])
            .stdin(body.clone())
            .expect(0);
        let mails = case.mails();
        assert_eq!(mails.len(), 1, "{dsn}");
        assert_eq!(mails[0].body, body, "{dsn}");
        assert_eq!(mails[0].recipient, "alice");
    }
}

/// Through PgBouncer in session mode (README: "PostgreSQL through PgBouncer"): the startup
/// `options` with our time limits are ignored there, not refused, and the statements
/// prepared for Verify and Deliver stay on the one server connection. Every byte arrives,
/// deliveries one after another reuse the pooled connection, and an unknown user still
/// bounces.
#[test]
fn deliveries_through_pgbouncer() {
    let Some(tcp) = store() else { return };
    let Some(url) = stores::require("pgbouncer", stores::env("VIRT_MAIL_TEST_PGBOUNCER_URL"))
    else {
        return;
    };
    let store = tcp.with_dsn(url);
    let case = Case::new(&store);
    let bodies: Vec<Vec<u8>> = (0..3u8)
        .map(|i| [&b"Subject: pooled\n\n"[..], &[0, 0xff, b'\r', i], b"\n"].concat())
        .collect();
    for body in &bodies {
        case.run()
            .args(["-l", "alice", "-s", "bob@example.org"])
            .stdin(body.clone())
            .expect(0);
    }
    let mails = case.mails();
    assert_eq!(mails.len(), 3);
    for (mail, body) in mails.iter().zip(&bodies) {
        assert_eq!(&mail.body, body);
        assert_eq!(mail.recipient, "alice");
    }
    case.run()
        .args(["-l", "nobody", "-s", "bob@example.org"])
        .stdin(b"Subject: x\n\nx\n".to_vec())
        .expect(67);
    assert_eq!(case.mails().len(), 3);
}

/// A host name in the URL is resolved (the name service works in every build, the static
/// one of scripts/build-release.sh included).
#[test]
fn a_host_name_resolves() {
    let Some(tcp) = store() else { return };
    let url = stores::env("VIRT_MAIL_TEST_PG_URL").unwrap();
    assert!(url.contains("@127.0.0.1:"), "{url}");
    let store = tcp.with_dsn(url.replace("@127.0.0.1:", "@localhost:"));
    let case = Case::new(&store);
    case.run()
        .args(["-l", "alice", "-s", "bob@example.org"])
        .stdin(b"Subject: by name\n\nx\n".to_vec())
        .expect(0);
    assert_eq!(case.mails().len(), 1);
}

/// (b) A TEXT body column: valid UTF-8 is stored; a NUL or invalid UTF-8 is a clear
/// permanent error (70, qmail 100) naming the parameter, and nothing is stored.
#[test]
fn text_body_column_takes_utf8_and_refuses_the_rest() {
    let Some(store) = store() else { return };
    let case = Case::new(&store);
    let t = case.t.clone();
    let _cleanup = Cleanup::tables(&store, &[format!("{t}_tmail")]);
    store.exec(&format!(
        "CREATE TABLE {t}_tmail (recipient TEXT NOT NULL, body TEXT NOT NULL)"
    ));
    case.configure_statements(
        &format!("SELECT name FROM {t}_users WHERE name = '$local'"),
        &format!("INSERT INTO {t}_tmail (recipient, body) VALUES ($1, $message)"),
        "",
    );
    let good = "Subject: caf\u{e9}\n\nh\u{e9}llo \u{2603}\r\n"
        .as_bytes()
        .to_vec();
    case.run()
        .args(["-l", "alice"])
        .stdin(good.clone())
        .expect(0);
    let bad: [&[u8]; 2] = [
        b"Subject: nul\n\nbefore\0after\n",
        b"Subject: latin1\n\ncaf\xe9\n",
    ];
    for body in bad {
        for mailer in ["sendmail", "qmail"] {
            let out = case
                .run()
                .mailer(mailer)
                .args(["-l", "alice"])
                .stdin(body.to_vec())
                .expect(status_for(mailer, 70));
            let err = text(&out.stderr);
            assert!(err.contains("Deliver") && err.contains("$2"), "{err}");
            assert!(err.contains("use a bytea column"), "{err}");
            assert!(err.contains("NUL") || err.contains("UTF-8"), "{err}");
            assert_eq!(text(&out.stdout), "\nThe mail store is unavailable.\n");
        }
    }
    let rows = store.query(&format!("SELECT recipient, body FROM {t}_tmail"));
    assert_eq!(rows.len(), 1, "only the valid body is stored");
    assert_eq!(rows[0][1].as_deref(), Some(good.as_slice()));
}

/// The stores a large-value test runs on: the server over TCP, its unix socket, PgBouncer.
fn every_way_in() -> Vec<Postgres> {
    let Some(tcp) = store() else {
        return Vec::new();
    };
    let Some(pooled) = stores::require("pgbouncer", stores::env("VIRT_MAIL_TEST_PGBOUNCER_URL"))
    else {
        return Vec::new();
    };
    let dir = stores::env("VIRT_MAIL_TEST_PG_SOCKET_DIR").unwrap();
    let port = stores::env("VIRT_MAIL_TEST_PG_PORT").unwrap();
    let (user, password, db) = credentials();
    let socket = format!(
        "postgres://{}:{}@/{db}?host={dir}&port={port}",
        encode(&user),
        encode(&password)
    );
    vec![
        store().unwrap().with_dsn(socket),
        store().unwrap().with_dsn(pooled),
        tcp,
    ]
}

/// A statement with a value past 256 KiB is written onto the connection's socket by
/// virt_mail itself, a piece at a time from the spool or the message file
/// (src/backend/postgres/direct.rs), smaller ones by the crate. Over the unix socket,
/// PgBouncer and TCP, from a pipe and from a qmail message file, with the message used twice
/// in the statement: every byte lands, and the other values with it.
#[test]
fn large_values_are_written_past_the_crate_and_land_exactly() {
    for store in every_way_in() {
        crate::scenarios::large_values_land_exactly(
            &store,
            "INSERT INTO {t}_mail (body, recipient, sender, folder) \
             VALUES ($message, $1, '$sender', $2 || '/' || length($message::bytea))",
            "postgres: 5 values written onto the socket",
            true,
        );
    }
}

/// The answers to a large statement are read as the crate reads them: a RETURNING row is
/// decoded for DeliverCheckReturn (1 only when the server stored exactly what was sent), a
/// large UTF-8 body goes into a TEXT column, and errors keep their SQLSTATE and class: a NOT
/// NULL violation bounces (70), a statement time-out defers (75); nothing is stored by
/// either, and the connection is still in step for the ROLLBACK after them.
#[test]
fn answers_to_large_statements_are_read_and_classified() {
    let large = |n: usize| -> Vec<u8> {
        let mut text = b"Subject: big\n\n".to_vec();
        while text.len() < n {
            text.extend_from_slice("h\u{e9}llo \u{2603}\r\n".as_bytes());
        }
        text
    };
    let message = large(600 * 1024);
    for store in every_way_in() {
        let case = Case::new(&store);
        let t = case.t.clone();
        let _cleanup = Cleanup::tables(&store, &[format!("{t}_tmail")]);
        store.exec(&format!(
            "CREATE TABLE {t}_tmail (recipient TEXT NOT NULL, body TEXT NOT NULL)"
        ));
        let verify = format!("SELECT name, folder FROM {t}_users WHERE name = '$local'");
        let configure = |deliver: String, extra: &str| {
            case.configure_statements(&verify, &deliver, extra);
        };
        let deliver = |status| {
            case.run()
                .args(["-l", "alice"])
                .stdin(message.clone())
                .expect(status)
        };
        configure(
            format!(
                "INSERT INTO {t}_mail (recipient, body) VALUES ($1, $message) \
                 RETURNING CASE WHEN body = $message::bytea THEN 1 ELSE 0 END"
            ),
            "DeliverCheckReturn = 1",
        );
        deliver(0);
        configure(
            format!("INSERT INTO {t}_tmail (recipient, body) VALUES ($1, $message)"),
            "",
        );
        deliver(0);
        configure(
            format!("INSERT INTO {t}_mail (recipient, body) VALUES (NULL, $message)"),
            "",
        );
        let err = text(&deliver(70).stderr);
        assert!(err.contains("23502"), "{err}");
        configure(
            format!(
                "INSERT INTO {t}_mail (recipient, body) \
                 SELECT $1, $message FROM pg_sleep(10)"
            ),
            "StatementTimeout = 1",
        );
        let started = Instant::now();
        let err = text(&deliver(75).stderr);
        // Through PgBouncer the startup options are ignored: the client's own limit fires.
        assert!(
            err.contains("57014") || err.contains("StatementTimeout"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        let mails = case.mails();
        assert_eq!(mails.len(), 1, "{}", store.dsn());
        assert_eq!(mails[0].body, message);
        let rows = store.query(&format!("SELECT body FROM {t}_tmail"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][0].as_deref(), Some(message.as_slice()));
    }
}

/// (c) A row lock held past StatementTimeout = 1: deferred (75, qmail 111) within a few
/// seconds, nothing stored; once released, the delivery goes through.
#[test]
fn row_lock_past_the_statement_limit_defers() {
    let Some(store) = store() else { return };
    let case = Case::new(&store);
    let t = case.t.clone();
    let mut holder = store.client();
    let statements = [
        // Verify waits for the lock.
        (
            format!("SELECT name, folder FROM {t}_users WHERE name = '$local' FOR UPDATE"),
            format!("INSERT INTO {t}_mail (recipient, folder, body) VALUES ($1, $2, $message)"),
        ),
        // Deliver waits for it, inside its transaction.
        (
            format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
            format!(
                "INSERT INTO {t}_mail (recipient, folder, body) \
                 SELECT name, folder, $message FROM {t}_users WHERE name = $1 FOR UPDATE"
            ),
        ),
    ];
    for (done, (verify, deliver)) in statements.iter().enumerate() {
        case.configure_statements(verify, deliver, "StatementTimeout = 1");
        holder.batch_execute("BEGIN").unwrap();
        holder
            .batch_execute(&format!(
                "SELECT 1 FROM {t}_users WHERE name = 'alice' FOR UPDATE"
            ))
            .unwrap();
        for mailer in ["sendmail", "qmail"] {
            let start = Instant::now();
            let out = case
                .run()
                .mailer(mailer)
                .args(["-l", "alice"])
                .expect(status_for(mailer, 75));
            let took = start.elapsed();
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(5),
                "took {took:?}"
            );
            let err = text(&out.stderr);
            assert!(
                err.contains("SQLSTATE=55P03") || err.contains("SQLSTATE=57014"),
                "{err}"
            );
        }
        assert_eq!(case.count(), done, "nothing stored while the lock was held");
        holder.batch_execute("ROLLBACK").unwrap();
        case.run().args(["-l", "alice"]).expect(0);
    }
    assert_eq!(case.count(), statements.len());
}

/// A COMMIT that runs past StatementTimeout (a deferred trigger: PostgreSQL's
/// statement_timeout does not stop it) is given up on after the backstop and deferred, its
/// outcome said to be unknown: the server may still commit it.
#[test]
fn a_commit_past_the_backstop_defers_with_its_outcome_unknown() {
    let Some(store) = store() else { return };
    let case = Case::new(&store);
    let held = HeldCommit::on(&case);
    case.configure("StatementTimeout = 1");
    let start = Instant::now();
    let out = case.run().args(["-l", "alice"]).expect(75);
    let took = start.elapsed();
    held.release();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    let err = text(&out.stderr);
    assert!(err.contains("outcome of the COMMIT is unknown"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// (d) A wrong password defers (75) and is never printed, with or without --debug.
#[test]
fn bad_password_defers_and_never_shows() {
    let Some(tcp) = store() else { return };
    let (user, _, db) = credentials();
    let secret = "Wr0ng-S3cret-pw";
    let host = format!(
        "127.0.0.1:{}",
        stores::env("VIRT_MAIL_TEST_PG_PORT").unwrap()
    );
    let store = tcp.with_dsn(format!("postgres://{}:{secret}@{host}/{db}", encode(&user)));
    let case = Case::new(&store);
    for debug in [false, true] {
        for mailer in ["sendmail", "qmail"] {
            let mut run = case.run();
            if debug {
                run.arg("--debug");
            }
            let out = run
                .mailer(mailer)
                .args(["-l", "alice"])
                .expect(status_for(mailer, 75));
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{stdout}\n{stderr}"
            );
            assert!(stderr.contains("DB_Connect"), "{stderr}");
            assert!(stderr.contains("SQLSTATE=28P01"), "{stderr}");
            assert_eq!(stdout, "\nThe mail store is unavailable.\n");
            if debug {
                assert!(stderr.contains("debug:"), "{stderr}");
            }
        }
    }
    assert_eq!(case.count(), 0);
}

/// (e) Nobody listening: deferred (75, qmail 111) with `DB_Connect` on stderr. No server needed.
#[test]
fn connection_refused_defers() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (_dir, config) = bare_config(&format!("postgres://virt:pw@127.0.0.1:{port}/mail"));
    for mailer in ["sendmail", "qmail"] {
        let mut run = Run::new();
        run.arg("-c").arg(&config);
        let out = run
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 75));
        let err = text(&out.stderr);
        assert!(err.contains("DB_Connect"), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert_eq!(text(&out.stdout), "\nThe mail store is unavailable.\n");
    }
}

/// A listener that accepts and never answers (a wrong port, a hung proxy): deferred once
/// ConnectTimeout has passed, although the socket itself connected at once.
#[test]
fn silent_listener_defers_after_the_connect_limit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_dir, config) = bare_config_with(
        &format!("postgres://virt:pw@127.0.0.1:{port}/mail"),
        "ConnectTimeout = 1",
    );
    let start = Instant::now();
    let mut run = Run::new();
    run.arg("-c").arg(&config);
    let out = run.args(["-l", "alice"]).expect(75);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("DB_Connect") && err.contains("ConnectTimeout"),
        "{err}"
    );
    drop(listener);
}

/// TLS asked for but not built in: deferred with a clear message, nothing sent in clear.
#[test]
fn tls_required_is_refused_clearly() {
    let (_dir, config) = bare_config("postgresql://virt:pw@127.0.0.1:1/mail?sslmode=require");
    let mut run = Run::new();
    run.arg("-c").arg(&config);
    let out = run.args(["-l", "alice"]).expect(75);
    let err = text(&out.stderr);
    assert!(
        err.contains("DB_Connect") && err.contains("TLS is not supported"),
        "{err}"
    );
}

/// (f) Verify columns of any type arrive in `$1…` as the text PostgreSQL prints; text bound
/// to integer, numeric and timestamp parameters is parsed by the server (libpq text mode).
#[test]
fn verify_columns_arrive_as_postgres_text() {
    let Some(store) = store() else { return };
    let case = Case::new(&store);
    let t = case.t.clone();
    let _cleanup = Cleanup::tables(&store, &[format!("{t}_vals"), format!("{t}_typed")]);
    let exprs = [
        "42::int4",
        "(-7)::int2",
        "9007199254740993::int8",
        "12345::oid",
        "12.50::numeric",
        "'-0.000120'::numeric",
        "123456789012345678901234567890.5::numeric",
        "'NaN'::numeric",
        "1.5::float8",
        "0.1::float4",
        "1e-7::float8",
        "1e20::float8",
        "true",
        "false",
        "DATE '2024-02-29'",
        "DATE '0044-03-15 BC'",
        "TIMESTAMP '2024-02-29 13:14:15.25'",
        "'infinity'::timestamp",
        "TIMESTAMPTZ '2024-02-29 13:14:15+02'",
        "TIME '01:02:03.5'",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
        "'{\"a\": [1, 2]}'::jsonb",
        "'{\"b\":  2}'::json",
        "'h\u{e9}llo'::varchar",
        "'pad'::char(5)",
        "'x'::\"char\"",
        "'nm'::name",
        "NULL::int",
        "1e6::float4",
        "3.4028235e38::float4",
        "1e15::float8",
        "'-0'::float8",
        "'1e-5'::float8",
        "'-Infinity'::float8",
        "0.00::numeric",
        "'-Infinity'::numeric",
        "TIMESTAMP '0044-03-15 12:00:00 BC'",
        "TIMESTAMPTZ '2024-02-29 13:14:15.123456+02'",
    ];
    store.exec(&format!("CREATE TABLE {t}_vals (pos INT NOT NULL, v TEXT)"));
    store.exec(&format!(
        "CREATE TABLE {t}_typed (i INT NOT NULL, n NUMERIC NOT NULL, ts TIMESTAMP NOT NULL, b BOOLEAN NOT NULL)"
    ));
    let columns: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
    let verify = format!(
        "SELECT {} FROM {t}_users WHERE name = '$local'",
        columns.join(", ")
    );
    let values: Vec<String> = (1..=exprs.len()).map(|i| format!("({i}, ${i})")).collect();
    let deliver = format!(
        "WITH typed AS (INSERT INTO {t}_typed (i, n, ts, b) VALUES ($1, $5, $17, $13)) \
         INSERT INTO {t}_vals (pos, v) VALUES {}",
        values.join(", ")
    );
    case.configure_statements(&verify, &deliver, "");
    case.run().args(["-l", "alice"]).expect(0);

    store.exec("SET TimeZone = 'UTC'");
    // format('%s') prints with each type's output function, as a client sees it (bool: t).
    let want_sql: Vec<String> = exprs.iter().map(|e| format!("format('%s', {e})")).collect();
    let want = store.query(&format!("SELECT {}", want_sql.join(", ")));
    let got = store.query(&format!("SELECT v FROM {t}_vals ORDER BY pos"));
    assert_eq!(got.len(), exprs.len());
    for (i, expr) in exprs.iter().enumerate() {
        let got = text(got[i][0].as_deref().unwrap_or_default());
        let want = text(want[0][i].as_deref().unwrap());
        assert_eq!(got, want, "${} = {expr}", i + 1);
    }
    let typed = store.query(&format!("SELECT i, n::text, ts::text, b FROM {t}_typed"));
    let typed: Vec<String> = typed[0]
        .iter()
        .map(|c| text(c.as_deref().unwrap()))
        .collect();
    assert_eq!(typed, ["42", "12.50", "2024-02-29 13:14:15.25", "t"]);
}

/// (g) 200 deliveries from 4 parallel pipes: every one committed once, all exit 0.
#[test]
fn parallel_deliveries_all_commit() {
    let Some(store) = store() else { return };
    let case = Case::new(&store);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let case = &case;
            scope.spawn(move || {
                for n in 0..50 {
                    case.run()
                        .args(["-l", "alice"])
                        .stdin(format!("Subject: {thread}/{n}\n\nbody\n"))
                        .expect(0);
                }
            });
        }
    });
    let mails = case.mails();
    assert_eq!(mails.len(), 200);
    let mut subjects: Vec<Vec<u8>> = mails.into_iter().map(|m| m.body).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 200, "every message exactly once");
}

/// CheckReturn through a procedure: `CALL` with an INOUT parameter returns one row, whose
/// first column is compared.
#[test]
fn procedure_call_with_inout_is_a_check_return() {
    let Some(store) = store() else { return };
    let case = Case::new(&store);
    let t = case.t.clone();
    let _cleanup = Cleanup {
        store: &store,
        drops: vec![format!("DROP PROCEDURE IF EXISTS {t}_p(text, int)")],
    };
    store.exec(&format!(
        "CREATE PROCEDURE {t}_p(IN n text, INOUT hits int) LANGUAGE plpgsql AS $$ \
         BEGIN hits := (SELECT count(*) FROM {t}_users WHERE name = n); END $$"
    ));
    case.configure_statements(
        &format!("CALL {t}_p('$local', NULL)"),
        &format!("INSERT INTO {t}_mail (recipient, body) VALUES ('$local', $message)"),
        "VerifyCheckReturn = 1",
    );
    case.run().args(["-l", "alice"]).expect(0);
    case.run().args(["-l", "carol"]).expect(67);
    assert_eq!(case.count(), 1);
}

/// A TCP proxy to the test server that can be frozen: from then on it swallows everything in
/// both directions while keeping both connections open, like a hung pooler or proxy. Neither
/// keepalives nor the server's statement_timeout can help against that. It freezes when told,
/// or by itself once `after` bytes have gone from the client to the server.
struct FreezingProxy {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezingProxy {
    fn start(upstream: String, after: Option<usize>) -> FreezingProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                for (mut from, mut to, after) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        after,
                    ),
                    (server, client, None),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        let mut passed = 0;
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            passed += n;
                            if after.is_some_and(|after| passed >= after) {
                                flag.store(true, Ordering::SeqCst);
                            }
                            if !flag.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        FreezingProxy { port, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A peer that keeps the connection open but stops answering between Verify and Deliver, or
/// in the middle of a large message (which virt_mail writes onto the socket itself, see
/// `direct`): deferred after StatementTimeout plus the grace (the hard client-side limit),
/// nothing stored. A SIGTERM from the MTA meanwhile still ends the run with "try again".
#[test]
fn a_silent_peer_mid_delivery_defers_at_the_hard_limit() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    if store().is_none() {
        return;
    }
    let (user, password, db) = credentials();
    let upstream = format!(
        "127.0.0.1:{}",
        stores::env("VIRT_MAIL_TEST_PG_PORT").unwrap()
    );
    let large = [&b"Subject: frozen\n\n"[..], &vec![b'x'; 1 << 20]].concat();
    let small = b"Subject: frozen\n\nbody\n".to_vec();
    for (terminate, body) in [
        (false, &small),
        (true, &small),
        (false, &large),
        (true, &large),
    ] {
        let direct = body.len() > 256 * 1024;
        // Frozen after Verify, or after the first 128 KiB of the large message's Bind.
        let proxy = FreezingProxy::start(upstream.clone(), direct.then_some(128 << 10));
        let store = Postgres::from_env().unwrap().with_dsn(format!(
            "postgres://{}:{}@127.0.0.1:{}/{db}",
            encode(&user),
            encode(&password),
            proxy.port
        ));
        let case = Case::new(&store);
        let t = &case.t;
        case.configure_statements(
            &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
            &format!("INSERT INTO {t}_mail (recipient, folder, body) VALUES ($1, $2, $message)"),
            "StatementTimeout = 1",
        );
        let mut child = case
            .run()
            .args(["--debug", "-l", "alice"])
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("Verify: found") {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "Verify never finished"
            );
        }
        if !direct {
            proxy.freeze();
        }
        let start = Instant::now();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body).unwrap();
        drop(stdin);
        if terminate {
            std::thread::sleep(Duration::from_millis(500));
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        }
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        let status = child.wait().unwrap();
        let took = start.elapsed();
        assert_eq!(status.code(), Some(75), "{rest}");
        if terminate {
            assert!(took < Duration::from_secs(3), "took {took:?}");
        } else {
            assert!(
                took >= Duration::from_secs(5) && took < Duration::from_secs(10),
                "took {took:?}"
            );
            assert!(rest.contains("abandoned"), "{rest}");
        }
        assert_eq!(
            rest.contains("values written onto the socket"),
            direct,
            "{rest}"
        );
        assert_eq!(case.count(), 0, "nothing stored");
    }
}
