//! The MySQL/MariaDB backend against the live server of `scripts/servers.sh`: DSN forms, bytes
//! and text, time limits, connect failures without the password, column texts, parallel
//! deliveries. Each test has its own tables (dropped at the end); skipped without a server,
//! except under `CI=true`.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::common::*;
use crate::scenarios::Case;
use crate::stores::mysql::Mysql;
use crate::stores::{self, Cell, Dialect, Store};

fn server() -> Option<Mysql> {
    stores::require("mariadb", Mysql::from_env())
}

/// The same database reached through another DSN.
struct Via<'a> {
    store: &'a Mysql,
    dsn: String,
}

impl Store for Via<'_> {
    fn name(&self) -> String {
        format!("mariadb via {}", self.dsn)
    }
    fn dsn(&self) -> String {
        self.dsn.clone()
    }
    fn try_exec(&self, sql: &str) -> Result<(), String> {
        self.store.try_exec(sql)
    }
    fn query(&self, sql: &str) -> Vec<Vec<Cell>> {
        self.store.query(sql)
    }
    fn dialect(&self) -> Dialect {
        self.store.dialect()
    }
}

/// `mysql://user:password@host:port/db` split into (`user:password`, `db`).
fn parts(url: &str) -> (String, String) {
    let rest = url.split_once("://").unwrap().1;
    let (userinfo, rest) = rest.rsplit_once('@').unwrap();
    let db = rest.split_once('/').unwrap().1;
    let db = db.split('?').next().unwrap();
    (userinfo.to_string(), db.to_string())
}

/// Tables a test adds beside its `Case`, dropped at the end.
struct Tables<'a> {
    store: &'a Mysql,
    names: Vec<String>,
}

impl Drop for Tables<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.store.try_exec(&format!("DROP TABLE IF EXISTS {name}"));
        }
    }
}

fn text_cell(c: &Cell) -> String {
    c.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Who the server thinks we are: `virt@localhost` over the unix socket, `virt@127.0.0.1`
/// over TCP. Verify returns it as `$2`, Deliver stores it in `folder`.
fn deliver_user(case: &Case<'_>) -> String {
    let t = &case.t;
    case.configure_statements(
        &format!("SELECT name, USER() FROM {t}_users WHERE name = '$local'"),
        &format!("INSERT INTO {t}_mail (recipient, folder, body) VALUES ($1, $2, $message)"),
        "",
    );
    let before = case.mails().len();
    case.run().args(["-l", "alice"]).expect(0);
    let mails = case.mails();
    assert_eq!(mails.len(), before + 1);
    mails.last().unwrap().folder.clone().unwrap()
}

/// The same database through the server's unix socket (the host part is not used).
fn via_socket(store: &Mysql) -> Option<Via<'_>> {
    let socket = stores::require("mariadb socket", stores::env("VIRT_MAIL_TEST_MYSQL_SOCKET"))?;
    let (userinfo, db) = parts(store.url());
    Some(Via {
        store,
        dsn: format!("mysql://{userinfo}@localhost/{db}?socket={socket}"),
    })
}

#[test]
fn unix_socket_and_mariadb_scheme_deliver() {
    let Some(store) = server() else { return };
    let Some(via) = via_socket(&store) else {
        return;
    };
    let (userinfo, db) = parts(store.url());
    let case = Case::new(&via);
    assert_eq!(
        deliver_user(&case),
        format!("{}@localhost", userinfo.split(':').next().unwrap())
    );
    drop(case);
    // mariadb:// is the same URL.
    let via = Via {
        store: &store,
        dsn: store.url().replacen("mysql://", "mariadb://", 1),
    };
    let case = Case::new(&via);
    assert!(deliver_user(&case).ends_with("@127.0.0.1"));
    drop(case);
    // `localhost` without `socket=` is TCP (unlike libmysqlclient).
    let port = stores::env("VIRT_MAIL_TEST_MYSQL_PORT").unwrap();
    let via = Via {
        store: &store,
        dsn: format!("mariadb://{userinfo}@localhost:{port}/{db}"),
    };
    let case = Case::new(&via);
    let user = deliver_user(&case);
    assert!(!user.ends_with("@localhost"), "{user}");
}

/// A body into a utf8mb4 TEXT column: UTF-8 is stored as sent; invalid UTF-8 is refused by
/// the server (strict mode, error 1366): permanent, 70 (100 under qmail), nothing stored.
/// Mail bodies belong in a BLOB column, which keeps every byte.
#[test]
fn text_column_takes_utf8_and_refuses_invalid_utf8() {
    let Some(store) = server() else { return };
    let case = Case::new(&store);
    let t = case.t.clone();
    let _tables = Tables {
        store: &store,
        names: vec![format!("{t}_text")],
    };
    store.exec(&format!(
        "CREATE TABLE {t}_text (id BIGINT AUTO_INCREMENT PRIMARY KEY, recipient VARCHAR(700), \
         body LONGTEXT NOT NULL) CHARACTER SET utf8mb4"
    ));
    case.configure_statements(
        &format!("SELECT name FROM {t}_users WHERE name = '$local'"),
        &format!("INSERT INTO {t}_text (recipient, body) VALUES ($1, $message)"),
        "",
    );
    let good = "Subject: caf\u{e9} \u{2713}\n\nzo\u{eb} \u{1f642} \u{4e2d}\u{6587}\r\n"
        .as_bytes()
        .to_vec();
    case.run()
        .args(["-l", "alice"])
        .stdin(good.clone())
        .expect(0);
    for (mailer, invalid) in [
        (
            "sendmail",
            b"Subject: bad\n\n\xff\xfe latin-1 caf\xe9\n".to_vec(),
        ),
        ("qmail", b"Subject: cut\n\n\xe2\x82".to_vec()),
    ] {
        let out = case
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin(invalid)
            .expect(status_for(mailer, 70));
        let err = text(&out.stderr);
        assert!(err.contains("1366") && err.contains("Deliver"), "{err}");
    }
    let rows = store.query(&format!("SELECT body FROM {t}_text ORDER BY id"));
    assert_eq!(rows.len(), 1, "the refused bodies left nothing");
    assert_eq!(rows[0][0].as_deref(), Some(&good[..]));
}

/// A row lock held by another transaction past StatementTimeout = 1: deferred (75, qmail
/// 111) within a few seconds, nothing stored.
#[test]
fn lock_wait_past_the_statement_timeout_defers() {
    let Some(store) = server() else { return };
    let case = Case::new(&store);
    let t = &case.t;
    case.configure_statements(
        &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
        &format!(
            "INSERT INTO {t}_mail (id, recipient, folder, sender, body) VALUES (1000, $1, $2, '$sender', $message)"
        ),
        "StatementTimeout = 1",
    );
    // Declared after `case`, so it is gone (its transaction rolled back) before the tables
    // are dropped.
    let mut holder = stores::mysql::connect(store.url()).unwrap();
    holder.query_drop("START TRANSACTION").unwrap();
    holder
        .query_drop(format!(
            "INSERT INTO {t}_mail (id, recipient, body) VALUES (1000, 'holder', '')"
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
            "{mailer}: {took:?}"
        );
        let err = text(&out.stderr);
        assert!(err.contains("1205") || err.contains("1969"), "{err}");
        assert_eq!(text(&out.stdout), "\nThe mail store is unavailable.\n");
    }
    holder.query_drop("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(case.count(), 0);
}

/// MariaDB's snapshot isolation conflict (1020) defers (`scenarios`).
#[test]
fn a_snapshot_isolation_conflict_defers() {
    let Some(store) = server() else { return };
    crate::scenarios::mariadb_snapshot_conflict_defers(&store);
}

/// A statement that runs too long (MariaDB's max_statement_time): deferred, not bounced.
#[test]
fn slow_statement_past_the_statement_timeout_defers() {
    let Some(store) = server() else { return };
    let case = Case::new(&store);
    let t = &case.t;
    case.configure_statements(
        &format!("SELECT name, folder FROM {t}_users WHERE name = '$local' AND SLEEP(4) = 0"),
        &format!("INSERT INTO {t}_mail (recipient, body) VALUES ($1, $message)"),
        "StatementTimeout = 1",
    );
    let start = Instant::now();
    let out = case.run().args(["-l", "alice"]).expect(75);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(text(&out.stderr).contains("1969"), "{}", text(&out.stderr));
    assert_eq!(case.count(), 0);
}

/// Wrong password: deferred (75), and the password appears nowhere, not even in --debug.
#[test]
fn bad_password_defers_without_showing_it() {
    let Some(store) = server() else { return };
    let (userinfo, db) = parts(store.url());
    let user = userinfo.split(':').next().unwrap();
    let port = stores::env("VIRT_MAIL_TEST_MYSQL_PORT").unwrap();
    let secret = "Wr0ng-S3cret-p%40ss";
    let via = Via {
        store: &store,
        dsn: format!("mysql://{user}:{secret}@127.0.0.1:{port}/{db}"),
    };
    let case = Case::new(&via);
    for mailer in ["sendmail", "qmail"] {
        let out = case
            .run()
            .mailer(mailer)
            .args(["--debug", "-l", "alice"])
            .expect(status_for(mailer, 75));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(all.contains("DB_Connect") && all.contains("1045"), "{all}");
        for shown in [secret, "Wr0ng-S3cret-p@ss", "Wr0ng"] {
            assert!(!all.contains(shown), "{shown} in {all}");
        }
    }
    assert_eq!(case.count(), 0);
}

/// Nothing listening: deferred with the step named as the original named it.
#[test]
fn closed_port_defers() {
    let Some(store) = server() else { return };
    let (userinfo, db) = parts(store.url());
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let via = Via {
        store: &store,
        dsn: format!("mysql://{userinfo}@127.0.0.1:{port}/{db}"),
    };
    let case = Case::new(&via);
    for mailer in ["sendmail", "qmail"] {
        let out = case
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 75));
        let err = text(&out.stderr);
        assert!(err.contains("DB_Connect"), "{err}");
        assert!(!err.contains(&userinfo), "{err}");
    }
}

/// A server that accepts the connection but never greets: ConnectTimeout bounds the wait.
#[test]
fn silent_server_is_bounded_by_the_connect_timeout() {
    // Listening but never accepting: the kernel completes the TCP handshake, nobody speaks.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("virt_mail.ini");
    std::fs::write(
        &config,
        format!(
            "[Options]\nDSN = mysql://u:pw@127.0.0.1:{port}/db\nConnectTimeout = 1\n\
             Deliver = INSERT INTO mail (body) VALUES ($message)\n"
        ),
    )
    .unwrap();
    mode(&config, 0o600);
    for mailer in ["sendmail", "qmail"] {
        let start = Instant::now();
        let mut run = Run::new();
        run.arg("-c").arg(&config);
        let out = run
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 75));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{took:?}"
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("DB_Connect") && err.contains("no answer"),
            "{err}"
        );
    }
    drop(listener);
}

/// A message bigger than the server's max_allowed_packet: the server drops the connection;
/// deferred (the administrator raises the limit or sets MaxMessageSize), with a hint.
#[test]
fn message_over_max_allowed_packet_is_refused_with_a_hint() {
    let Some(store) = server() else { return };
    let limit = store.query("SELECT @@max_allowed_packet");
    let limit: usize = text_cell(&limit[0][0]).parse().unwrap();
    if limit > 64 << 20 {
        eprintln!("skipping: max_allowed_packet is {limit}");
        return;
    }
    let case = Case::new(&store);
    let body: Vec<u8> = (0..limit + (1 << 20)).map(|i| (i % 251) as u8).collect();
    for mailer in ["sendmail", "qmail"] {
        // The server refuses the long parameter with error 1105: this store cannot hold the
        // message, every time (set MaxMessageSize below max_allowed_packet). A server that
        // drops the connection instead is indistinguishable from a crash and defers (75).
        let out = case
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin(body.clone())
            .output();
        let err = text(&out.stderr);
        let code = out.status.code();
        assert!(
            code == Some(status_for(mailer, 70)) || code == Some(status_for(mailer, 75)),
            "{code:?}: {err}"
        );
        assert!(err.contains("max_allowed_packet"), "{err}");
    }
    assert_eq!(case.count(), 0);
    // Just under the limit (minus the packet's own overhead) is stored whole.
    let body = body[..limit - 4096].to_vec();
    case.run()
        .args(["-l", "alice"])
        .stdin(body.clone())
        .expect(0);
    assert_eq!(case.mails()[0].body, body);
}

/// A DSN asking for TLS in a build without it: refused before connecting, never clear text.
#[test]
fn tls_request_is_refused() {
    let Some(store) = server() else { return };
    let via = Via {
        store: &store,
        dsn: format!("{}?require_ssl=true", store.url()),
    };
    let case = Case::new(&via);
    let out = case.run().args(["-l", "alice"]).expect(75);
    let err = text(&out.stderr);
    assert!(err.contains("DB_Connect") && err.contains("TLS"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(case.count(), 0);
}

/// Verify columns of every common type arrive in `$1…` as the server prints them.
#[test]
fn typed_verify_columns_arrive_as_text() {
    let Some(store) = server() else { return };
    let case = Case::new(&store);
    let t = case.t.clone();
    let _tables = Tables {
        store: &store,
        names: vec![format!("{t}_typed")],
    };
    store.exec(&format!(
        "CREATE TABLE {t}_typed (name VARCHAR(700) PRIMARY KEY, quota INT, big BIGINT UNSIGNED, \
         price DECIMAL(10,2), since DATETIME, stamp DATETIME(6), day DATE, dur TIME, \
         ratio DOUBLE, tiny DOUBLE, huge DOUBLE, f FLOAT, yr YEAR, nothing INT NULL, \
         bin VARBINARY(8))"
    ));
    store.exec(&format!(
        "INSERT INTO {t}_typed VALUES ('alice', -7, 18446744073709551615, 12.50, \
         '2024-02-29 13:05:09', '2024-02-29 13:05:09.123456', '2024-02-29', '-26:03:04', \
         2.5, 1.5e-7, 1e20, 3.14159265, 2024, NULL, X'6100FF')"
    ));
    let columns = "quota, big, price, since, stamp, day, dur, ratio, tiny, huge, f, yr, nothing";
    case.configure_statements(
        &format!("SELECT {columns}, bin FROM {t}_typed WHERE name = '$local'"),
        &format!(
            "INSERT INTO {t}_mail (recipient, folder, body) \
             VALUES ('$local', '$1|$2|$3|$4|$5|$6|$7|$8|$9|$10|$11|$12|[$13]', $14)"
        ),
        "",
    );
    case.run().args(["-l", "alice"]).expect(0);
    // What the server itself prints (text protocol), joined the same way.
    let printed = store.query(&format!("SELECT {columns} FROM {t}_typed"));
    let mut want: Vec<String> = printed[0].iter().map(text_cell).collect();
    let last = want.pop().unwrap();
    want.push(format!("[{last}]"));
    let want = want.join("|");
    assert_eq!(
        want,
        "-7|18446744073709551615|12.50|2024-02-29 13:05:09|2024-02-29 13:05:09.123456|\
         2024-02-29|-26:03:04|2.5|0.00000015|1e20|3.14159|2024|[]"
    );
    let mails = case.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].folder.as_deref(), Some(want.as_str()));
    assert_eq!(
        mails[0].body, b"a\x00\xff",
        "a VARBINARY column stays bytes"
    );
}

/// 200 deliveries from 4 parallel pipes: every one stored once, every run 0.
#[test]
fn two_hundred_parallel_deliveries() {
    let Some(store) = server() else { return };
    let case = Case::new(&store);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let case = &case;
            scope.spawn(move || {
                for i in 0..50 {
                    let n = thread * 50 + i;
                    case.run()
                        .args(["-l", "alice", "-s", &format!("s{n}@example.org")])
                        .stdin(format!("Subject: {n}\n\nmessage {n}\n"))
                        .expect(0);
                }
            });
        }
    });
    let mails = case.mails();
    assert_eq!(mails.len(), 200);
    let mut senders: Vec<_> = mails.iter().map(|m| m.sender.clone().unwrap()).collect();
    senders.sort();
    senders.dedup();
    assert_eq!(senders.len(), 200, "each delivery stored once");
    for m in &mails {
        let n = m
            .sender
            .as_deref()
            .unwrap()
            .trim_start_matches('s')
            .split('@')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            m.body,
            format!("Subject: {n}\n\nmessage {n}\n").into_bytes()
        );
    }
}

/// Past 256 KiB a statement's values go to MariaDB as long data, written onto the socket
/// between the crate's commands, with empty strings trailing in the execute request. Every
/// value must still land in its own column, exactly: the message not last and used twice,
/// an empty sender, over TCP and the unix socket, from a pipe and from a file; at the
/// threshold, and on a compressed connection, inline, with the same rows.
#[test]
fn large_values_go_as_long_data_and_land_exactly() {
    let Some(store) = server() else { return };
    let Some(via_socket) = via_socket(&store) else {
        return;
    };
    // Compressed packets cannot be written beside the crate's: there values stay inline.
    let compressed = Via {
        store: &store,
        dsn: format!("{}?compress=true", store.url()),
    };
    for (target, long_data) in [
        (&store as &dyn Store, true),
        (&via_socket, true),
        (&compressed, false),
    ] {
        crate::scenarios::large_values_land_exactly(
            target,
            "INSERT INTO {t}_mail (body, recipient, sender, folder) \
             VALUES ($message, $1, '$sender', CONCAT($2, '/', LENGTH($message)))",
            "mysql: 5 values as long data",
            long_data,
        );
    }
}

/// The same character-set rules for a large body as for a small one (the module comment):
/// into a utf8mb4 TEXT column UTF-8 is stored as sent and invalid UTF-8 refused (1366,
/// permanent, nothing stored); into a latin1 column UTF-8 is converted.
#[test]
fn large_text_bodies_follow_the_inline_rules() {
    let Some(store) = server() else { return };
    let case = Case::new(&store);
    let t = case.t.clone();
    let _tables = Tables {
        store: &store,
        names: vec![format!("{t}_text")],
    };
    store.exec(&format!(
        "CREATE TABLE {t}_text (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         utf LONGTEXT CHARACTER SET utf8mb4, latin LONGTEXT CHARACTER SET latin1)"
    ));
    let into = |column: &str| {
        case.configure_statements(
            &format!("SELECT name FROM {t}_users WHERE name = '$local'"),
            &format!("INSERT INTO {t}_text ({column}) VALUES ($message)"),
            "",
        )
    };
    let line = "Subject: caf\u{e9}\n\nzo\u{eb} caf\u{e9} na\u{ef}ve\r\n";
    for size in [1000, 400_000] {
        let good = line.repeat(size / line.len()).into_bytes();
        let mut bad = good.clone();
        bad.extend_from_slice(b"\xff\xfe caf\xe9\n");
        into("utf");
        case.run()
            .args(["-l", "alice"])
            .stdin(good.clone())
            .expect(0);
        let out = case
            .run()
            .args(["-l", "alice"])
            .stdin(bad.clone())
            .expect(70);
        assert!(text(&out.stderr).contains("1366"), "{}", text(&out.stderr));
        into("latin");
        case.run()
            .args(["-l", "alice"])
            .stdin(good.clone())
            .expect(0);
        let rows = store.query(&format!(
            "SELECT utf, HEX(latin) FROM {t}_text ORDER BY id DESC LIMIT 2"
        ));
        assert_eq!(rows.len(), 2, "{size} bytes: the refused body left nothing");
        let latin1: Vec<u8> = String::from_utf8(good.clone())
            .unwrap()
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap())
            .collect();
        let hex: String = latin1.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(text_cell(&rows[0][1]), hex, "{size} bytes into latin1");
        assert!(
            rows[1][0].as_deref() == Some(&good[..]),
            "{size} bytes into utf8mb4"
        );
    }
}
