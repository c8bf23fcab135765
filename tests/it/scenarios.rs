//! One scenario suite, every store: the same cases with the same expected results on SQLite,
//! PostgreSQL, MariaDB, and ODBC to SQLite, PostgreSQL, MariaDB and Virtuoso.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::common::*;
use crate::hostile::corpus;
use crate::stores::{self, Store};

/// A scenario's private tables (dropped again at the end) and its configuration file.
pub struct Case<'s> {
    pub store: &'s dyn Store,
    pub t: String,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl<'s> Case<'s> {
    pub fn new(store: &'s dyn Store) -> Case<'s> {
        let t = stores::unique_prefix();
        let d = store.dialect();
        store.exec(&format!(
            "CREATE TABLE {t}_users (name {text} NOT NULL PRIMARY KEY, folder {text} NOT NULL)",
            text = d.text
        ));
        store.exec(&format!(
            "INSERT INTO {t}_users (name, folder) VALUES ('alice', 'Inbox')"
        ));
        store.exec(&format!(
            "INSERT INTO {t}_users (name, folder) VALUES ('o''brien', 'Inbox')"
        ));
        store.exec(&format!(
            "INSERT INTO {t}_users (name, folder) VALUES ('info', 'Work')"
        ));
        store.exec(&format!(
            "CREATE TABLE {t}_mail (id {serial}, recipient {text} NOT NULL, folder {text}, \
             sender {text}, body {blob} NOT NULL)",
            serial = d.serial,
            text = d.text,
            blob = d.blob
        ));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("virt_mail.ini");
        let case = Case {
            store,
            t,
            _dir: dir,
            config,
        };
        case.configure("");
        case
    }

    /// The standard Verify/Deliver on this case's tables, plus `extra` option lines.
    pub fn configure(&self, extra: &str) {
        let t = &self.t;
        self.configure_statements(
            &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
            &format!(
                "INSERT INTO {t}_mail (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)"
            ),
            extra,
        );
    }

    pub fn configure_statements(&self, verify: &str, deliver: &str, extra: &str) {
        let text = format!(
            "[Options]\nDSN = {dsn}\nVerify = {verify}\nDeliver = {deliver}\n{extra}\n\
             [Environment]\n{env}\n{BOUNCE}\n",
            dsn = self.store.dsn(),
            env = self.store.environment(),
        );
        std::fs::write(&self.config, text).unwrap();
        mode(&self.config, 0o600);
    }

    pub fn run(&self) -> Run {
        let mut run = Run::new();
        run.arg("-c").arg(&self.config);
        run
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.store
            .query(&format!(
                "SELECT recipient, folder, sender, body FROM {}_mail ORDER BY id",
                self.t
            ))
            .into_iter()
            .map(|row| {
                let text = |c: &Option<Vec<u8>>| {
                    c.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
                };
                Mail {
                    recipient: text(&row[0]).unwrap_or_default(),
                    folder: text(&row[1]),
                    sender: text(&row[2]),
                    body: row[3].clone().unwrap_or_default(),
                }
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        let rows = self
            .store
            .query(&format!("SELECT COUNT(*) FROM {}_mail", self.t));
        String::from_utf8_lossy(rows[0][0].as_ref().unwrap())
            .trim()
            .parse()
            .unwrap()
    }

    pub fn assert_users_intact(&self) {
        let rows = self
            .store
            .query(&format!("SELECT COUNT(*) FROM {}_users", self.t));
        let n: usize = String::from_utf8_lossy(rows[0][0].as_ref().unwrap())
            .trim()
            .parse()
            .unwrap();
        assert_eq!(n, 3, "{}: users table altered", self.store.name());
    }
}

impl Drop for Case<'_> {
    fn drop(&mut self) {
        // Best effort: a test that failed may have left some of them uncreated.
        if let Some(p) = self.store.dialect().procedures {
            for sql in &p.drop {
                let _ = self.store.try_exec(&sql.replace("{t}", &self.t));
            }
        }
        for table in ["mail", "users"] {
            let _ = self
                .store
                .try_exec(&format!("DROP TABLE {}_{table}", self.t));
        }
    }
}

pub fn known_recipient_under_every_mailer(store: &dyn Store) {
    let case = Case::new(store);
    let body = b"Subject: hi\r\n\r\nline one\r\nline two\n".to_vec();
    for mailer in MAILERS {
        case.run()
            .mailer(mailer)
            .args(["-l", "Alice", "-h", "Example.COM", "-s", "Bob@Example.ORG"])
            .stdin(body.clone())
            .expect(status_for(mailer, 0));
    }
    let mails = case.mails();
    assert_eq!(mails.len(), MAILERS.len(), "{}", store.name());
    for (mail, mailer) in mails.iter().zip(MAILERS) {
        let mut want = prefix(mailer);
        want.extend_from_slice(&body);
        assert_eq!(mail.body, want, "{} {mailer}", store.name());
        assert_eq!(mail.recipient, "alice", "$1 is the Verify column");
        assert_eq!(mail.folder.as_deref(), Some("Inbox"), "$2");
        assert_eq!(mail.sender.as_deref(), Some("Bob@Example.ORG"));
    }
}

pub fn unknown_recipient_bounces(store: &dyn Store) {
    let case = Case::new(store);
    for mailer in MAILERS {
        let out = case
            .run()
            .mailer(mailer)
            .args(["-l", "Carol", "-h", "example.com"])
            .expect(status_for(mailer, 67));
        assert_eq!(
            text(&out.stdout),
            "\nNo mailbox for carol@example.com here.\nPlease check the address.\n"
        );
    }
    assert_eq!(case.count(), 0);
}

pub fn check_return(store: &dyn Store) {
    let case = Case::new(store);
    let t = &case.t;
    let d = store.dialect();
    if d.native {
        // The statement's first column is the return value.
        case.configure_statements(
            &format!(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM {t}_users WHERE name = '$local') THEN 1 ELSE 0 END, 'Box'"
            ),
            &format!("INSERT INTO {t}_mail (recipient, folder, body) VALUES ('$local', $2, $message)"),
            "VerifyCheckReturn = 1",
        );
        case.run().args(["-l", "alice"]).expect(0);
        case.run().args(["-l", "carol"]).expect(67);
        assert_eq!(
            case.mails()
                .iter()
                .map(|m| m.folder.clone().unwrap())
                .collect::<Vec<_>>(),
            ["Box"]
        );
        {
            // INSERT … RETURNING (SQLite, PostgreSQL, MariaDB ≥ 10.5): its value decides.
            case.configure_statements(
                &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
                &format!(
                    "INSERT INTO {t}_mail (recipient, body) VALUES ($1, $message) RETURNING 0"
                ),
                "DeliverCheckReturn = 1",
            );
            for mailer in MAILERS {
                let out = case
                    .run()
                    .mailer(mailer)
                    .args(["-l", "alice"])
                    .expect(status_for(mailer, 67));
                assert!(
                    text(&out.stderr).contains("rolled back"),
                    "{}",
                    text(&out.stderr)
                );
            }
            assert_eq!(
                case.count(),
                1,
                "{}: a refused Deliver left its row",
                store.name()
            );
        }
    }
    match &d.procedures {
        Some(p) => {
            for sql in &p.create {
                store.exec(&sql.replace("{t}", t));
            }
            case.configure_statements(
                &p.verify.replace("{t}", t),
                &format!("INSERT INTO {t}_mail (recipient, body) VALUES ('$local', $message)"),
                "VerifyCheckReturn = 1",
            );
            let before = case.count();
            case.run().args(["-l", "alice"]).expect(0);
            case.run().args(["-l", "carol"]).expect(67);
            assert_eq!(case.count(), before + 1, "{}", store.name());
            // The procedure stores and returns 0; 1 is expected: rolled back, bounced.
            case.configure_statements(
                &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
                &p.deliver.replace("{t}", t),
                "DeliverCheckReturn = 1",
            );
            for mailer in MAILERS {
                case.run()
                    .mailer(mailer)
                    .args(["-l", "alice"])
                    .expect(status_for(mailer, 67));
            }
            assert_eq!(
                case.count(),
                before + 1,
                "{}: the procedure's row stayed",
                store.name()
            );
            // Expecting what it returns: stored.
            case.configure_statements(
                &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
                &p.deliver.replace("{t}", t),
                "DeliverCheckReturn = 0",
            );
            case.run().args(["-l", "alice"]).expect(0);
            assert_eq!(case.count(), before + 2);
        }
        None if !d.native => {
            // No way to call a procedure here: a clear configuration error, never a guess.
            case.configure_statements(
                &format!("SELECT name FROM {t}_users WHERE name = '$local'"),
                &format!("INSERT INTO {t}_mail (recipient, body) VALUES ('$local', $message)"),
                "VerifyCheckReturn = 1",
            );
            let out = case.run().args(["-l", "alice"]).expect(78);
            assert!(
                text(&out.stderr).contains("Verify"),
                "{}",
                text(&out.stderr)
            );
        }
        None => {}
    }
}

pub fn bodies_are_stored_byte_for_byte(store: &dyn Store) {
    let case = Case::new(store);
    let mut bodies: Vec<Vec<u8>> = vec![
        b"Subject: nul\n\nbefore\0after\0\0end\n".to_vec(),
        b"Subject: cr\r\rbody\rline\r".to_vec(),
        b"Subject: crlf\r\n\r\nline 1\r\nline 2\r\n".to_vec(),
        (0u8..=255).cycle().take(4096).collect(),
        b"Subject: \xff\xfe\xc3\x28\n\n\xe2\x82".to_vec(),
        Vec::new(),
    ];
    bodies.push(pseudo_random(1024 * 1024));
    for body in &bodies {
        case.run()
            .args(["-l", "alice"])
            .stdin(body.clone())
            .expect(0);
    }
    let stored: Vec<Vec<u8>> = case.mails().into_iter().map(|m| m.body).collect();
    assert_eq!(stored.len(), bodies.len());
    for (i, (got, want)) in stored.iter().zip(&bodies).enumerate() {
        assert!(
            got == want,
            "{}: body {i} differs ({} vs {} bytes)",
            store.name(),
            got.len(),
            want.len()
        );
    }
}

/// The `Duplicate` docs/RELIABILITY.md advises on Virtuoso, whose roll-forward can bring
/// back a truncated copy of a message whose COMMIT a crash cut (and that virt_mail
/// deferred): a complete copy makes the MTA's retry skip the insert, under every mailer (so
/// `$size` counts what is stored, qmail's and courier's lines included), a truncated one
/// does not.
#[cfg_attr(not(feature = "odbc"), allow(dead_code))]
pub fn a_length_checking_duplicate_skips_only_complete_copies(store: &dyn Store) {
    let case = Case::new(store);
    let t = &case.t;
    case.configure(&format!(
        "Duplicate = SELECT 1 FROM {t}_mail WHERE sender = '$sender' \
         AND length(body) = CAST('$size' AS INTEGER)"
    ));
    let mut body = b"Subject: once\r\n\r\n".to_vec();
    body.extend((0..200_000u32).map(|i| b'a' + (i % 26) as u8));
    let copies = |sender: &str| -> Vec<Vec<u8>> {
        case.mails()
            .into_iter()
            .filter(|m| m.sender.as_deref() == Some(sender))
            .map(|m| m.body)
            .collect()
    };
    for mailer in MAILERS {
        let sender = format!("{mailer}@example.org");
        let mut want = prefix(mailer);
        want.extend_from_slice(&body);
        for attempt in 0..2 {
            let out = case
                .run()
                .mailer(mailer)
                .args(["-l", "alice", "-s", &sender])
                .stdin(body.clone())
                .expect(status_for(mailer, 0));
            let skipped = text(&out.stderr).contains("already stored");
            assert_eq!(skipped, attempt == 1, "{} {mailer}", store.name());
        }
        assert_eq!(copies(&sender), vec![want], "{} {mailer}", store.name());
    }
    // What the server's roll-forward leaves: the row with the body cut short.
    store.exec(&format!(
        "INSERT INTO {t}_mail (recipient, folder, sender, body) \
         VALUES ('alice', 'Inbox', 'torn@example.org', 'Subject: once')"
    ));
    let out = case
        .run()
        .args(["-l", "alice", "-s", "torn@example.org"])
        .stdin(body.clone())
        .expect(0);
    assert!(!text(&out.stderr).contains("already stored"));
    let torn = copies("torn@example.org");
    assert_eq!(torn.len(), 2, "{}", store.name());
    assert!(torn.contains(&body), "{}: no complete copy", store.name());
}

/// Backends that stream a value in pieces (Virtuoso's protocol, ODBC data-at-execution,
/// MariaDB's long data, PostgreSQL's statement written by virt_mail) get a large message
/// from the spool, a piece at a time: delivering 9 MB (from a pipe, or from a
/// file as qmail gives it) takes no more memory than delivering 2 KB, give or take 4 MiB (a
/// copy held whole would add 9). All are stored exactly.
/// Messages around the spool threshold through `deliver` (`{t}` stands for the case's table
/// prefix; it must store `$message` as body, `$1` as recipient, `'$sender'` as sender and
/// `$2/<length of $message>` as folder): 256 KiB, 256 KiB + 1 and 768 KiB + 17 from a pipe,
/// with an empty sender and another, and 512 KiB from a qmail message file, which is mapped
/// in place after the header lines qmail adds. Each lands exactly, and `--debug` prints
/// `pieced` for exactly those past the threshold if the backend `streams` them there, for
/// none otherwise.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub fn large_values_land_exactly(store: &dyn Store, deliver: &str, pieced: &str, streams: bool) {
    const THRESHOLD: usize = 256 * 1024;
    let case = Case::new(store);
    let t = &case.t;
    case.configure_statements(
        &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
        &deliver.replace("{t}", t),
        "",
    );
    let said = |out: &std::process::Output, len: usize| {
        let err = text(&out.stderr);
        assert_eq!(
            err.contains(pieced),
            streams && len > THRESHOLD,
            "{} {len} bytes: {err}",
            store.dsn()
        );
    };
    let mut expected = Vec::new();
    for len in [THRESHOLD, THRESHOLD + 1, 3 * THRESHOLD + 17] {
        for sender in ["", "bob@example.org"] {
            let out = case
                .run()
                .args(["--debug", "-l", "alice", "-s", sender])
                .stdin(pseudo_random(len))
                .expect(0);
            said(&out, len);
            expected.push((sender.to_string(), pseudo_random(len)));
        }
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pseudo_random(2 * THRESHOLD)).unwrap();
    let out = case
        .run()
        .mailer("qmail")
        .args(["--debug", "-l", "alice", "-s", "q@example.org"])
        .stdin_file(file.path())
        .expect(status_for("qmail", 0));
    said(&out, 2 * THRESHOLD);
    let mut from_file = prefix("qmail");
    from_file.extend_from_slice(&pseudo_random(2 * THRESHOLD));
    expected.push(("q@example.org".to_string(), from_file));
    let mails = case.mails();
    assert_eq!(mails.len(), expected.len(), "{}", store.dsn());
    for (mail, (sender, body)) in mails.iter().zip(&expected) {
        let what = format!("{} {} bytes from <{sender}>", store.dsn(), body.len());
        assert_eq!(mail.recipient, "alice", "{what}");
        assert_eq!(mail.sender.as_deref(), Some(sender.as_str()), "{what}");
        assert_eq!(
            mail.folder.as_deref(),
            Some(format!("Inbox/{}", body.len()).as_str()),
            "{what}"
        );
        assert!(&mail.body == body, "{what}: body differs");
    }
}

#[cfg_attr(not(feature = "odbc"), allow(dead_code))]
pub fn large_messages_take_no_more_memory(store: &dyn Store) {
    let case = Case::new(store);
    let small = b"Subject: small\n\nhello\n".repeat(100);
    let large = pseudo_random(9_000_000);
    let small_kb = case
        .run()
        .args(["-l", "alice"])
        .stdin(small.clone())
        .peak_rss_kb(0);
    let large_kb = case
        .run()
        .args(["-l", "alice"])
        .stdin(large.clone())
        .peak_rss_kb(0);
    // qmail: a message file, mapped where it is, after the Delivered-To/Return-Path lines.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &large).unwrap();
    let file_kb = case
        .run()
        .mailer("qmail")
        .args(["-l", "alice"])
        .stdin_file(file.path())
        .peak_rss_kb(status_for("qmail", 0));
    let sizes = format!(
        "{}: peak RSS {small_kb} KiB for 2 KB, {large_kb} KiB for 9 MB, {file_kb} KiB for 9 MB \
         from a file",
        store.name()
    );
    eprintln!("{sizes}");
    let allowed = small_kb + 4 * 1024;
    assert!(large_kb <= allowed, "{sizes}: more than {allowed} KiB");
    assert!(file_kb <= allowed, "{sizes}: more than {allowed} KiB");
    let mut from_file = prefix("qmail");
    from_file.extend_from_slice(&large);
    let stored: Vec<Vec<u8>> = case.mails().into_iter().map(|m| m.body).collect();
    assert!(
        stored == [small, large, from_file],
        "{}: bodies differ",
        store.name()
    );
}

/// The spool is only a copy: when its directory is missing, or it fills up half-way (a file
/// size limit stands in for a full disk), the message is kept in memory and stored whole.
#[cfg_attr(not(all(feature = "odbc", feature = "virtuoso")), allow(dead_code))]
pub fn a_spool_that_fails_keeps_the_message_in_memory(store: &dyn Store) {
    let case = Case::new(store);
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let out = case
        .run()
        .args(["--debug", "-l", "alice"])
        .env("TMPDIR", "/nonexistent/spool")
        .stdin(body.clone())
        .expect(0);
    assert!(text(&out.stderr).contains("the message stays in memory"));
    // bash's `ulimit -f` counts KiB: the spool write fails at 400 KiB (EFBIG, not SIGXFSZ).
    let mut run = case.run();
    run.args(["--debug", "-l", "alice"]).stdin(body.clone());
    let out = run.wrapped_output(&[
        "bash",
        "-c",
        "ulimit -f 400 && trap '' XFSZ && exec \"$0\" \"$@\"",
    ]);
    run.check(&out, 0);
    let err = text(&out.stderr);
    assert!(
        err.contains("File too large") && err.contains("the message stays in memory"),
        "{err}"
    );
    let stored: Vec<Vec<u8>> = case.mails().into_iter().map(|m| m.body).collect();
    assert!(
        stored == [body.clone(), body],
        "{}: bodies differ",
        store.name()
    );
}

pub fn size_limit_is_exact(store: &dyn Store) {
    let case = Case::new(store);
    case.configure("MaxMessageSize = 1000");
    for mailer in MAILERS {
        case.run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin(vec![b'x'; 1000])
            .expect(status_for(mailer, 0));
        let out = case
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin(vec![b'x'; 1001])
            .expect(status_for(mailer, 77));
        assert_eq!(text(&out.stdout), "\nToo long for alice.\n");
    }
    assert_eq!(case.count(), MAILERS.len());
    // Too long and unknown: unknown wins, as in the original.
    case.run()
        .args(["-l", "carol"])
        .stdin(vec![b'x'; 5000])
        .expect(67);
}

/// The hostile corpus (`hostile.rs`) as sender, domain and local part on this store. A
/// value that is an address is data: stored exactly (the domain ASCII lower-cased). A local
/// part finds nobody (67) or one of the existing users by the store's own comparison (some
/// collations are case- and accent-insensitive and ignore trailing spaces: MariaDB's
/// default matches `alıce` and `alice ` to alice) — and never anything else. Values that
/// are not addresses are refused (65 sender, 67 recipient) before the store is touched.
pub fn hostile_envelopes_are_data(store: &dyn Store) {
    use crate::hostile::{as_domain, as_local, as_sender, assert_no_marker, lowered};
    let case = Case::new(store);
    let t = &case.t;
    case.configure_statements(
        &format!("SELECT name, folder FROM {t}_users WHERE name = '$local'"),
        &format!(
            "INSERT INTO {t}_mail (recipient, folder, sender, body) VALUES ($1, '$domain', '$sender', $message)"
        ),
        "",
    );
    let users = ["alice", "o'brien", "info"];
    // The text columns hold 700 characters on every store.
    let fits = |v: &[u8]| v.len() <= 700;
    let mut senders: Vec<(String, String)> = Vec::new();
    let mut to_users = 0;
    for value in corpus() {
        if value.contains(&0) {
            continue; // the OS cannot pass NUL; refused by the envelope checks anyway
        }
        let os = OsString::from_vec(value.clone());
        // As sender, and as domain when it can be one.
        let domain = if as_domain(&value).is_none() {
            os.clone()
        } else {
            OsString::from("example.com")
        };
        let mut run = case.run();
        run.args(["-l", "alice", "-h"])
            .arg(&domain)
            .arg("-s")
            .arg(&os);
        match as_sender(&value) {
            Some(_) => {
                run.expect(65);
            }
            None if fits(&value) => {
                run.expect(0);
                senders.push((
                    String::from_utf8(value.clone()).unwrap(),
                    lowered(domain.as_encoded_bytes()),
                ));
            }
            None => {}
        }
        // As local part.
        let mut run = case.run();
        run.arg("-l")
            .arg(&os)
            .args(["-h", "example.com", "-s", "x@y"]);
        let lower = lowered(&value);
        if as_local(&value).is_some() {
            run.expect(67);
        } else if users.contains(&lower.as_str()) {
            run.expect(0);
            to_users += 1;
        } else {
            let out = run.output();
            match out.status.code() {
                Some(67) => {}
                Some(0) => to_users += 1, // the store's collation found a user
                other => panic!(
                    "{}: local part {lower:?}: {other:?} {}",
                    store.name(),
                    text(&out.stderr)
                ),
            }
        }
    }
    let mails = case.mails();
    assert_eq!(mails.len(), senders.len() + to_users, "{}", store.name());
    for m in &mails {
        assert!(
            users.contains(&m.recipient.as_str()),
            "{}: stored for {:?}",
            store.name(),
            m.recipient
        );
    }
    let stored: Vec<(String, String)> = mails
        .iter()
        .filter(|m| m.sender.as_deref() != Some("x@y"))
        .map(|m| {
            (
                m.sender.clone().unwrap_or_default(),
                m.folder.clone().unwrap_or_default(),
            )
        })
        .collect();
    for want in &senders {
        assert!(
            stored.contains(want),
            "{}: sender {:?} / domain {:?} not stored exactly",
            store.name(),
            want.0,
            want.1
        );
    }
    case.assert_users_intact();
    assert_no_marker();
}

pub fn broken_statements_are_classified(store: &dyn Store) {
    let case = Case::new(store);
    let t = &case.t;
    // A statement that cannot be prepared: the configuration's fault.
    case.configure_statements(
        &format!("SELECT name FROM {t}_no_such_table WHERE name = '$local'"),
        &format!("INSERT INTO {t}_mail (recipient, body) VALUES ($1, $message)"),
        "",
    );
    for mailer in MAILERS {
        let out = case
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 78));
        assert_eq!(text(&out.stdout), "\nThe mail store is unavailable.\n");
    }
    // A statement that is fine but refused by the data every time (NOT NULL): permanent.
    case.configure_statements(
        &format!("SELECT name FROM {t}_users WHERE name = '$local'"),
        &format!("INSERT INTO {t}_mail (recipient, body) VALUES (NULL, $message)"),
        "",
    );
    for mailer in MAILERS {
        let out = case
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 70));
        assert!(
            text(&out.stderr).contains("Deliver"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(case.count(), 0);
}

/// MariaDB with `innodb_snapshot_isolation` (the default from 11.6): a Deliver that read a
/// row another transaction then changed fails with 1020 "Record has changed since last
/// read", a serialization failure like a deadlock: deferred (75), nothing stored, and the
/// retry delivers. It once bounced (70). The Deliver procedure turns the isolation on for
/// its own session, reads the row, sleeps, then updates it; the test commits an update of
/// the row while it sleeps.
#[cfg_attr(not(any(feature = "mysql", feature = "odbc")), allow(dead_code))]
pub fn mariadb_snapshot_conflict_defers(store: &dyn Store) {
    let case = Case::new(store);
    let t = &case.t;
    store.exec(&format!(
        "CREATE TABLE {t}_counter (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB"
    ));
    store.exec(&format!("INSERT INTO {t}_counter VALUES (1, 0)"));
    // The sleep names the test's tables, so the test can find it in the process list.
    store.exec(&format!(
        "CREATE PROCEDURE {t}_deliver(r VARCHAR(700), b LONGBLOB) BEGIN DECLARE v INT; \
         SET SESSION innodb_snapshot_isolation = ON; \
         SELECT n INTO v FROM {t}_counter WHERE id = 1; \
         DO SLEEP(1 + 0 * LENGTH('{t}')); \
         UPDATE {t}_counter SET n = n + 1 WHERE id = 1; \
         INSERT INTO {t}_mail (recipient, body) VALUES (r, b); END"
    ));
    case.configure_statements(
        &format!("SELECT name FROM {t}_users WHERE name = '$local'"),
        &format!("CALL {t}_deliver($1, $message)"),
        "",
    );
    let sleeping = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE STATE = 'User sleep' AND INFO LIKE '%{t}%' AND INFO NOT LIKE '%PROCESSLIST%'"
    );
    let out = std::thread::scope(|scope| {
        let delivery = scope.spawn(|| case.run().args(["-l", "alice"]).expect(75));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.query(&sleeping)[0][0].as_deref() != Some(b"1".as_slice()) {
            assert!(std::time::Instant::now() < deadline, "Deliver never slept");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        store.exec(&format!("UPDATE {t}_counter SET n = n + 10 WHERE id = 1"));
        delivery.join().unwrap()
    });
    let err = text(&out.stderr);
    assert!(err.contains("1020"), "{}: {err}", store.name());
    assert_eq!(text(&out.stdout), "\nThe mail store is unavailable.\n");
    assert_eq!(case.count(), 0);
    // Nobody in the way now: the retry goes through.
    store.exec(&format!("UPDATE {t}_counter SET n = 0 WHERE id = 1"));
    case.run().args(["-l", "alice"]).expect(0);
    assert_eq!(case.count(), 1);
    store.exec(&format!("DROP PROCEDURE {t}_deliver"));
    store.exec(&format!("DROP TABLE {t}_counter"));
}

/// Instantiates every scenario for one store.
macro_rules! scenarios {
    ($name:ident, $store:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use crate::stores;

            fn store() -> Option<Box<dyn crate::stores::Store>> {
                $store
            }

            #[test]
            fn known_recipient_under_every_mailer() {
                if let Some(s) = store() {
                    super::known_recipient_under_every_mailer(&*s)
                }
            }

            #[test]
            fn unknown_recipient_bounces() {
                if let Some(s) = store() {
                    super::unknown_recipient_bounces(&*s)
                }
            }

            #[test]
            fn check_return() {
                if let Some(s) = store() {
                    super::check_return(&*s)
                }
            }

            #[test]
            fn bodies_are_stored_byte_for_byte() {
                if let Some(s) = store() {
                    super::bodies_are_stored_byte_for_byte(&*s)
                }
            }

            #[test]
            fn size_limit_is_exact() {
                if let Some(s) = store() {
                    super::size_limit_is_exact(&*s)
                }
            }

            #[test]
            fn hostile_envelopes_are_data() {
                if let Some(s) = store() {
                    super::hostile_envelopes_are_data(&*s)
                }
            }

            #[test]
            fn broken_statements_are_classified() {
                if let Some(s) = store() {
                    super::broken_statements_are_classified(&*s)
                }
            }
        }
    };
}

scenarios!(sqlite, Some(Box::new(stores::sqlite::Sqlite::new())));

#[cfg(feature = "postgres")]
scenarios!(
    postgres,
    stores::require("postgres", stores::postgres::Postgres::from_env())
        .map(|s| Box::new(s) as Box<dyn crate::stores::Store>)
);

#[cfg(feature = "mysql")]
scenarios!(
    mariadb,
    stores::require("mariadb", stores::mysql::Mysql::from_env())
        .map(|s| Box::new(s) as Box<dyn crate::stores::Store>)
);

#[cfg(feature = "odbc")]
scenarios!(
    odbc_sqlite,
    stores::require("odbc sqlite", stores::odbc::Odbc::sqlite_from_env())
        .map(|s| Box::new(s) as Box<dyn crate::stores::Store>)
);

#[cfg(feature = "odbc")]
scenarios!(
    odbc_postgres,
    stores::require("odbc postgres", stores::odbc::Odbc::postgres_from_env())
        .map(|s| Box::new(s) as Box<dyn crate::stores::Store>)
);

#[cfg(feature = "odbc")]
scenarios!(
    odbc_mariadb,
    stores::require("odbc mariadb", stores::odbc::Odbc::mariadb_from_env())
        .map(|s| Box::new(s) as Box<dyn crate::stores::Store>)
);

#[cfg(all(feature = "odbc", feature = "virtuoso"))]
scenarios!(
    virtuoso,
    stores::require("virtuoso", stores::virtuoso::Native::from_env())
        .map(|s| Box::new(s) as Box<dyn crate::stores::Store>)
);

#[cfg(feature = "odbc")]
scenarios!(
    odbc_virtuoso,
    stores::require("odbc virtuoso", stores::odbc::Odbc::virtuoso_from_env())
        .map(|s| Box::new(s) as Box<dyn crate::stores::Store>)
);

/// The length-checking `Duplicate` advised for Virtuoso, on both ways to reach it.
mod virtuoso_duplicate {
    #[allow(unused_imports)]
    use crate::stores;

    #[cfg(all(feature = "odbc", feature = "virtuoso"))]
    #[test]
    fn native() {
        if let Some(s) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) {
            super::a_length_checking_duplicate_skips_only_complete_copies(&s)
        }
    }

    #[cfg(feature = "odbc")]
    #[test]
    fn odbc() {
        if let Some(s) = stores::require("odbc virtuoso", stores::odbc::Odbc::virtuoso_from_env()) {
            super::a_length_checking_duplicate_skips_only_complete_copies(&s)
        }
    }
}

/// The original's manual writes its DSN as `DSN=Virtuoso;HOST=localhost:1111;…`: a data
/// source name beside the server's address. The original never looked the name up (it
/// embedded Virtuoso's client), so a build without ODBC goes to HOST natively; a build with
/// ODBC uses the named data source (here the test servers' `vm_virtuoso`, through the
/// Virtuoso driver). Either way the mail is stored, and `--debug` says which way it went.
#[cfg(all(feature = "odbc", feature = "virtuoso"))]
#[test]
fn a_data_source_name_beside_host_delivers_in_every_build() {
    struct Named(stores::virtuoso::Native, String);
    impl Store for Named {
        fn name(&self) -> String {
            format!("virtuoso via {}", self.1)
        }
        fn dsn(&self) -> String {
            self.1.clone()
        }
        fn try_exec(&self, sql: &str) -> Result<(), String> {
            self.0.try_exec(sql)
        }
        fn query(&self, sql: &str) -> Vec<Vec<crate::stores::Cell>> {
            self.0.query(sql)
        }
        fn dialect(&self) -> crate::stores::Dialect {
            self.0.dialect()
        }
    }
    let Some(native) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) else {
        return;
    };
    let host = std::env::var("VIRT_MAIL_TEST_VIRTUOSO_HOST").unwrap();
    let dsn = std::env::var("VIRT_MAIL_TEST_ODBC_VIRTUOSO_DSN").unwrap_or("vm_virtuoso".into());
    let store = Named(native, format!("DSN={dsn};HOST={host};UID=dba;PWD=dba"));
    let case = Case::new(&store);
    let body = b"Subject: named\r\n\r\nthrough a named data source\r\n".to_vec();
    let out = case
        .run()
        .args(["--debug", "-l", "alice", "-s", "bob@example.org"])
        .stdin(body.clone())
        .expect(0);
    let debug = text(&out.stderr);
    let (native_line, odbc_line) = ("(native protocol)", "odbc: connected to");
    if bin_databases().iter().any(|d| d == "odbc") {
        assert!(
            debug.contains(odbc_line) && !debug.contains(native_line),
            "{debug}"
        );
    } else {
        assert!(
            debug.contains(native_line) && !debug.contains(odbc_line),
            "{debug}"
        );
    }
    let mails = case.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].body, body);
}

/// The memory check, for the stores whose backend streams values.
mod streaming {
    #[allow(unused_imports)]
    use crate::stores;

    /// PostgreSQL: a large value is written onto the socket from the spool or the mapped
    /// file, not through the `postgres` crate's Bind message and write buffer (before: two
    /// copies of the message).
    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_native() {
        if let Some(s) = stores::require("postgres", stores::postgres::Postgres::from_env()) {
            super::large_messages_take_no_more_memory(&s)
        }
    }

    /// MariaDB natively: long data from the spool or the mapped file (before: the message,
    /// the crate's parameter and its packets, 74 MiB for 20 MiB).
    #[cfg(feature = "mysql")]
    #[test]
    fn mariadb_native() {
        if let Some(s) = stores::require("mariadb", stores::mysql::Mysql::from_env()) {
            super::large_messages_take_no_more_memory(&s)
        }
    }

    #[cfg(all(feature = "odbc", feature = "virtuoso"))]
    #[test]
    fn virtuoso_native() {
        if let Some(s) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) {
            super::large_messages_take_no_more_memory(&s)
        }
    }

    #[cfg(all(feature = "odbc", feature = "virtuoso"))]
    #[test]
    fn a_failing_spool_costs_memory_not_mail() {
        if let Some(s) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) {
            super::a_spool_that_fails_keeps_the_message_in_memory(&s)
        }
    }

    #[cfg(feature = "odbc")]
    #[test]
    fn odbc_virtuoso() {
        if let Some(s) = stores::require("odbc virtuoso", stores::odbc::Odbc::virtuoso_from_env()) {
            super::large_messages_take_no_more_memory(&s)
        }
    }

    #[cfg(feature = "odbc")]
    #[test]
    fn odbc_mariadb() {
        if let Some(s) = stores::require("odbc mariadb", stores::odbc::Odbc::mariadb_from_env()) {
            super::large_messages_take_no_more_memory(&s)
        }
    }
}

/// PostgreSQL (natively or through psqlODBC): a deferred trigger on a case's mail table
/// that holds every COMMIT until `release` (30 s at most), so that a COMMIT runs past any
/// time limit. Dropping it releases the trigger and removes it.
#[cfg(any(feature = "postgres", feature = "odbc"))]
pub struct HeldCommit<'s> {
    store: &'s dyn Store,
    t: String,
}

#[cfg(any(feature = "postgres", feature = "odbc"))]
impl<'s> HeldCommit<'s> {
    pub fn on(case: &Case<'s>) -> HeldCommit<'s> {
        let (store, t) = (case.store, case.t.clone());
        store.exec(&format!("CREATE TABLE {t}_release (go INT)"));
        store.exec(&format!(
            "CREATE FUNCTION {t}_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             FOR i IN 1..300 LOOP EXIT WHEN EXISTS (SELECT 1 FROM {t}_release); \
             PERFORM pg_sleep(0.1); END LOOP; RETURN NULL; END $$"
        ));
        store.exec(&format!(
            "CREATE CONSTRAINT TRIGGER {t}_slow AFTER INSERT ON {t}_mail \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {t}_at_commit()"
        ));
        HeldCommit { store, t }
    }

    /// Lets the held COMMITs end.
    pub fn release(&self) {
        self.store
            .exec(&format!("INSERT INTO {}_release VALUES (1)", self.t));
    }
}

#[cfg(any(feature = "postgres", feature = "odbc"))]
impl Drop for HeldCommit<'_> {
    fn drop(&mut self) {
        let t = &self.t;
        let _ = self
            .store
            .try_exec(&format!("INSERT INTO {t}_release VALUES (1)"));
        let _ = self.store.try_exec(&format!("DROP TABLE {t}_release"));
        let _ = self
            .store
            .try_exec(&format!("DROP FUNCTION {t}_at_commit() CASCADE"));
    }
}
