//! The shipped configuration files work as written (so the documentation cannot drift).

use crate::common::*;

fn store_for(config_file: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mail.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(include_str!("../../examples/sqlite/schema.sql"))
        .unwrap();
    conn.execute_batch(
        "INSERT INTO mailbox (local, domain) VALUES ('alice', 'example.com');
         INSERT INTO mailbox (local, domain, folder) VALUES ('postmaster', '', 'Admin');",
    )
    .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(config_file))
        .unwrap()
        .replace(
            "sqlite:/var/mail/virt_mail.db",
            &format!("sqlite:{}", db.display()),
        );
    assert!(
        text.contains(&db.display().to_string()),
        "{config_file} has no sqlite DSN to point at the test store"
    );
    let config = dir.path().join("virt_mail.ini");
    std::fs::write(&config, text).unwrap();
    mode(&config, 0o600);
    (dir, db, config)
}

fn rows(db: &std::path::Path) -> Vec<(String, String, Vec<u8>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT b.local, m.folder, m.body FROM message m JOIN mailbox b ON b.id = m.mailbox_id ORDER BY m.id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn the_default_ini_and_the_sqlite_example_deliver_as_documented() {
    let message =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/message.eml")).unwrap();
    for file in ["odbc_mail.default.ini", "examples/sqlite/virt_mail.ini"] {
        let (_dir, db, config) = store_for(file);
        let run = |args: &[&str]| {
            let mut r = Run::new();
            r.arg("-c")
                .arg(&config)
                .args(args.iter().copied())
                .stdin(message.clone());
            r
        };
        run(&["-l", "alice", "-h", "example.com", "-s", "bob@example.org"]).expect(0);
        // An empty domain (sendmail's -l $u) still finds the mailbox.
        run(&["-l", "alice", "-s", "bob@example.org"]).expect(0);
        // A mailbox for any domain.
        run(&["-l", "postmaster", "-h", "example.net"]).expect(0);
        let out = run(&["-l", "nobody", "-h", "example.com"]).expect(67);
        assert_eq!(
            text(&out.stdout),
            "\nNo mailbox for nobody@example.com here.\n",
            "{file}"
        );
        let stored = rows(&db);
        assert_eq!(stored.len(), 3, "{file}");
        assert_eq!(
            (stored[2].0.as_str(), stored[2].1.as_str()),
            ("postmaster", "Admin")
        );
        assert!(stored.iter().all(|r| r.2 == message));
    }
}

/// Delivers with an example config whose DSN was replaced, and reads the stored bodies back.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn deliver_with_example(example: &str, dsn_line: &str, dsn: &str) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("virt_mail.ini");
    let text = example.replace(dsn_line, &format!("DSN = {dsn}"));
    assert!(
        text.contains(&format!("DSN = {dsn}")),
        "the example's DSN line moved"
    );
    std::fs::write(&config, text).unwrap();
    mode(&config, 0o600);
    let message =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/message.eml")).unwrap();
    let mut run = Run::new();
    run.arg("-c")
        .arg(&config)
        .args(["-l", "alice", "-h", "example.com", "-s", "bob@example.org"]);
    run.stdin(message.clone()).expect(0);
    let mut run = Run::new();
    run.arg("-c")
        .arg(&config)
        .args(["-l", "nobody", "-h", "example.com"]);
    run.expect(67);
    (dir, message)
}

#[cfg(feature = "postgres")]
#[test]
fn the_postgres_example_delivers_as_documented() {
    use crate::stores;
    let Some(store) = stores::require("postgres", stores::postgres::Postgres::from_env()) else {
        return;
    };
    let mut client = store.client();
    let schema = stores::unique_prefix();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};\n{}\n\
             INSERT INTO mailbox (local, domain) VALUES ('alice', 'example.com');",
            include_str!("../../examples/postgres/schema.sql")
        ))
        .unwrap();
    let url = std::env::var("VIRT_MAIL_TEST_PG_URL").unwrap();
    let dsn = format!("{url}?options=-c%20search_path%3D{schema}");
    let (_dir, message) = deliver_with_example(
        include_str!("../../examples/postgres/virt_mail.ini"),
        "DSN = postgresql://vmail:secret@127.0.0.1:5432/mail",
        &dsn,
    );
    let rows = client
        .query(
            &format!("SELECT folder, sender, body FROM {schema}.message"),
            &[],
        )
        .unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "Inbox");
    assert_eq!(rows[0].get::<_, String>(1), "bob@example.org");
    assert_eq!(rows[0].get::<_, Vec<u8>>(2), message);
}

/// The statements of a schema file: split at `;`, `--` comment lines left out.
#[cfg(any(feature = "mysql", all(feature = "odbc", feature = "virtuoso")))]
fn statements(schema: &str) -> Vec<String> {
    schema
        .split(';')
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|s| !s.trim().is_empty())
        .collect()
}

#[cfg(feature = "mysql")]
#[test]
fn the_mysql_example_delivers_as_documented() {
    use mysql::prelude::Queryable;

    use crate::stores;
    let Some(store) = stores::require("mariadb", stores::mysql::Mysql::from_env()) else {
        return;
    };
    let url = store.url().to_string();
    let mut admin = stores::mysql::connect(&url).unwrap();
    let db = format!("mail_{}", stores::unique_prefix());
    admin.query_drop(format!("CREATE DATABASE {db}")).unwrap();
    let db_url = format!("{}/{db}", &url[..url.rfind('/').unwrap()]);
    let mut conn = stores::mysql::connect(&db_url).unwrap();
    for statement in statements(include_str!("../../examples/mysql/schema.sql")) {
        conn.query_drop(statement).unwrap();
    }
    conn.query_drop("INSERT INTO mailbox (local, domain) VALUES ('alice', 'example.com')")
        .unwrap();
    let (_dir, message) = deliver_with_example(
        include_str!("../../examples/mysql/virt_mail.ini"),
        "DSN = mysql://vmail:secret@127.0.0.1:3306/mail",
        &db_url,
    );
    let rows: Vec<(String, String, Vec<u8>)> = conn
        .query("SELECT folder, sender, body FROM message")
        .unwrap();
    admin.query_drop(format!("DROP DATABASE {db}")).unwrap();
    assert_eq!(
        rows,
        vec![("Inbox".to_string(), "bob@example.org".to_string(), message)]
    );
}

/// examples/virtuoso/schema.sql and tables.ini, natively; the tables get a private prefix.
#[cfg(all(feature = "odbc", feature = "virtuoso"))]
#[test]
fn the_virtuoso_example_delivers_as_documented() {
    use crate::stores::{self, Store};
    let Some(store) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) else {
        return;
    };
    let p = stores::unique_prefix();
    let private = |sql: &str| {
        [
            ("TABLE mailbox", format!("TABLE {p}_mailbox")),
            ("ON mailbox", format!("ON {p}_mailbox")),
            ("REFERENCES mailbox", format!("REFERENCES {p}_mailbox")),
            ("FROM mailbox", format!("FROM {p}_mailbox")),
            ("TABLE message", format!("TABLE {p}_message")),
            ("ON message", format!("ON {p}_message")),
            ("INTO message", format!("INTO {p}_message")),
            ("mailbox_address", format!("{p}_mailbox_address")),
            ("message_folder", format!("{p}_message_folder")),
        ]
        .iter()
        .fold(sql.to_string(), |s, (from, to)| s.replace(from, to))
    };
    for statement in statements(&private(include_str!("../../examples/virtuoso/schema.sql"))) {
        store.exec(&statement);
    }
    store.exec(&format!(
        "INSERT INTO {p}_mailbox (local, domain) VALUES ('alice', 'example.com')"
    ));
    let (_dir, message) = deliver_with_example(
        &private(include_str!("../../examples/virtuoso/tables.ini")),
        "DSN = virtuoso://vmail:secret@localhost:1111",
        &store.dsn(),
    );
    let rows = store.query(&format!("SELECT folder, sender, body FROM {p}_message"));
    store.exec(&format!("DROP TABLE {p}_message"));
    store.exec(&format!("DROP TABLE {p}_mailbox"));
    // Virtuoso 7.2 replays named indexes created and dropped since its last checkpoint
    // badly after a kill (the fault tests kill it): "Key without parts", then the next
    // replay fails on SYS_KEY_PARTS and the server does not start. A checkpoint takes this
    // test's DDL out of the transaction log.
    store.exec("checkpoint");
    let cell = |i: usize| rows[0][i].clone().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(cell(0), b"Inbox");
    assert_eq!(cell(1), b"bob@example.org");
    assert_eq!(cell(2), message);
}

/// Runs a delivery with `config` and returns the output.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn run_with(config: &std::path::Path, args: &[&str], body: Vec<u8>) -> std::process::Output {
    let mut run = Run::new();
    run.arg("-c")
        .arg(config)
        .args(args.iter().copied())
        .stdin(body);
    run.output()
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn new_messages(maildir: &std::path::Path) -> usize {
    std::fs::read_dir(maildir.join("new")).map_or(0, |d| d.count())
}

#[cfg(feature = "mysql")]
#[test]
fn the_vpopmail_example_delivers_into_maildirs_with_the_hard_quota() {
    use mysql::prelude::Queryable;

    use crate::stores;
    let Some(store) = stores::require("mariadb", stores::mysql::Mysql::from_env()) else {
        return;
    };
    let url = store.url().to_string();
    let mut admin = stores::mysql::connect(&url).unwrap();
    let db = format!("mail_{}", stores::unique_prefix());
    admin.query_drop(format!("CREATE DATABASE {db}")).unwrap();
    let db_url = format!("{}/{db}", &url[..url.rfind('/').unwrap()]);
    let mut conn = stores::mysql::connect(&db_url).unwrap();
    conn.query_drop(
        include_str!("../../examples/vpopmail/schema.sql")
            .split("\n\n")
            .last()
            .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("domains/example.com/alice");
    conn.exec_drop(
        "INSERT INTO vpopmail (pw_name, pw_domain, pw_dir, pw_shell) VALUES ('alice', 'example.com', ?, '2500S'), \
         ('free', 'example.com', ?, 'NOQUOTA')",
        (home.display().to_string(), dir.path().join("domains/example.com/free").display().to_string()),
    )
    .unwrap();
    let config = dir.path().join("virt_mail.ini");
    let text_ = include_str!("../../examples/vpopmail/virt_mail.ini").replace(
        "DSN = mysql://vpopmail:secret@localhost/vpopmail?socket=/run/mysqld/mysqld.sock",
        &format!("DSN = {db_url}"),
    );
    assert!(text_.contains(&db_url));
    std::fs::write(&config, text_).unwrap();
    mode(&config, 0o600);
    let qmail = |local: &str, body: Vec<u8>| {
        let mut run = Run::new();
        run.arg("-c")
            .arg(&config)
            .mailer("qmail")
            .env("LOCAL", local)
            .env("HOST", "example.com");
        run.stdin(body).output()
    };
    let prefix = prefix("qmail").len();
    assert_eq!(
        qmail("alice", vec![b'a'; 1000 - prefix]).status.code(),
        Some(99)
    );
    assert_eq!(
        qmail("alice", vec![b'b'; 1000 - prefix]).status.code(),
        Some(99)
    );
    let out = qmail("alice", vec![b'c'; 1000 - prefix]);
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        text(&out.stdout),
        "\nThe mailbox of alice@example.com is full. (#5.2.2)\n"
    );
    assert_eq!(
        qmail("alice", vec![b'd'; 500 - prefix]).status.code(),
        Some(99)
    );
    assert_eq!(new_messages(&home.join("Maildir")), 3);
    assert_eq!(qmail("free", vec![b'e'; 100_000]).status.code(), Some(99));
    let out = qmail("nobody", b"x".to_vec());
    assert_eq!(out.status.code(), Some(100));
    assert!(
        text(&out.stdout).contains("(nobody@example.com). (#5.1.1)"),
        "{}",
        text(&out.stdout)
    );
    let out = run_with(
        &config,
        &["-l", "alice", "-h", "example.com"],
        b"y".to_vec(),
    );
    assert_eq!(out.status.code(), Some(77), "sendmail mode: same quota");
    admin.query_drop(format!("DROP DATABASE {db}")).unwrap();
}

#[cfg(feature = "postgres")]
#[test]
fn the_modoboa_example_delivers_where_dovecot_reads_with_the_quota() {
    use crate::stores;
    let Some(store) = stores::require("postgres", stores::postgres::Postgres::from_env()) else {
        return;
    };
    let mut client = store.client();
    let schema = stores::unique_prefix();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};\n{}\n\
             INSERT INTO admin_domain (name) VALUES ('example.com');
             INSERT INTO admin_mailbox (address, quota, domain_id) VALUES ('alice', 1, 1), ('free', 0, 1);
             INSERT INTO admin_quota (username, bytes) VALUES ('alice@example.com', 1048576 - 500);",
            include_str!("../../examples/modoboa/schema.sql")
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vmail = dir.path().join("vmail");
    let url = std::env::var("VIRT_MAIL_TEST_PG_URL").unwrap();
    let text_ = include_str!("../../examples/modoboa/virt_mail.ini")
        .replace(
            "DSN = postgresql://modoboa@/modoboa?host=/run/postgresql",
            &format!("DSN = {url}?options=-c%20search_path%3D{schema}"),
        )
        .replace("/var/vmail/", &format!("{}/", vmail.display()));
    let config = dir.path().join("virt_mail.ini");
    std::fs::write(&config, text_).unwrap();
    mode(&config, 0o600);
    // Postfix's pipe: -l ${user} -h ${nexthop}
    let deliver = |local: &str, size: usize| {
        let args = [
            "-m",
            "postfix",
            "-l",
            local,
            "-h",
            "example.com",
            "-s",
            "bob@example.org",
        ];
        run_with(&config, &args, vec![b'm'; size])
    };
    assert_eq!(
        deliver("alice", 500).status.code(),
        Some(0),
        "exactly up to the quota"
    );
    // Dovecot's quota dict counts the new message when it sees it.
    client
        .batch_execute(&format!(
            "UPDATE {schema}.admin_quota SET bytes = bytes + 500"
        ))
        .unwrap();
    let out = deliver("alice", 1);
    assert_eq!(out.status.code(), Some(77));
    assert_eq!(
        text(&out.stdout),
        "\nThe mailbox of alice@example.com is full.\n"
    );
    assert_eq!(deliver("free", 5_000_000).status.code(), Some(0));
    assert_eq!(deliver("nobody", 10).status.code(), Some(67));
    // The soft variant the example offers: over quota waits instead of bouncing.
    let soft = std::fs::read_to_string(&config)
        .unwrap()
        .replace(";QuotaFullTempfail = 1", "QuotaFullTempfail = 1");
    std::fs::write(&config, soft).unwrap();
    let out = deliver("alice", 1);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\nThe mailbox of alice@example.com is full.\n"
    );
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    assert_eq!(new_messages(&vmail.join("example.com/alice/.maildir")), 1);
    assert_eq!(new_messages(&vmail.join("example.com/free/.maildir")), 1);
}

/// The README's MTA snippets are the files `scripts/mta-test.sh` runs through real MTAs.
#[test]
fn the_readme_mta_snippets_are_the_tested_examples() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (heading, example) in [
        ("### sendmail", "examples/mta/sendmail/Mlocal.snippet"),
        ("### Postfix", "examples/mta/postfix/master.cf.snippet"),
        ("### Exim 4", "examples/mta/exim/virt_mail.conf"),
        ("### procmail", "examples/mta/procmail/procmailrc"),
        ("### courier", "examples/mta/courier/dot-courier"),
    ] {
        let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("{heading}"))..];
        let block = section.split("```").nth(1).unwrap();
        let file = std::fs::read_to_string(root.join(example)).unwrap();
        let lines: Vec<&str> = file.lines().map(str::trim).collect();
        for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
            assert!(
                lines.contains(&line),
                "README {heading}: {line:?} is not in {example}"
            );
        }
    }
    let qmail = std::fs::read_to_string(root.join("examples/mta/qmail/dot-qmail")).unwrap();
    assert!(
        readme.contains(qmail.trim()),
        "README qmail line differs from the example"
    );
}
