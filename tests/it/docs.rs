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
