//! SPEC §5, step by step, on the SQLite default, under every mailer profile.

use crate::common::*;

#[test]
fn known_recipient_is_stored_once_under_every_mailer() {
    for mailer in MAILERS {
        let s = Setup::standard("");
        let body = b"Subject: hi\r\n\r\nline one\r\nline two\n".to_vec();
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "Alice", "-h", "Example.COM", "-s", "Bob@Example.ORG"])
            .stdin(body.clone())
            .expect(status_for(mailer, 0));
        assert!(out.stdout.is_empty(), "{mailer}: no bounce text on success");
        let mails = s.mails();
        assert_eq!(mails.len(), 1, "{mailer}");
        let mut want = prefix(mailer);
        want.extend_from_slice(&body);
        assert_eq!(mails[0].body, want, "{mailer}");
        assert_eq!(
            mails[0].recipient, "alice",
            "{mailer}: $1 is the Verify column"
        );
        assert_eq!(mails[0].folder.as_deref(), Some("Inbox"), "{mailer}: $2");
        assert_eq!(
            mails[0].sender.as_deref(),
            Some("Bob@Example.ORG"),
            "{mailer}: sender keeps case"
        );
    }
}

#[test]
fn unknown_recipient_without_fallback_bounces_with_the_text() {
    for mailer in MAILERS {
        let s = Setup::standard("");
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "Carol", "-h", "Example.com"])
            .expect(status_for(mailer, 67));
        assert_eq!(
            text(&out.stdout),
            "\nNo mailbox for carol@example.com here.\nPlease check the address.\n",
            "{mailer}"
        );
        assert!(text(&out.stderr).contains("User unknown"), "{mailer}");
        assert_eq!(s.count(), 0);
    }
}

#[test]
fn missing_bounce_entry_prints_failure_name() {
    let s = Setup::new(OPTIONS, "");
    let out = s.run().args(["-l", "nobody"]).expect(67);
    assert_eq!(text(&out.stdout), "\nFailure: UserUnknown\n");
}

#[test]
fn no_recipient_is_a_configuration_error() {
    for mailer in MAILERS {
        let s = Setup::standard("");
        let out = s.run().mailer(mailer).expect(status_for(mailer, 78));
        assert!(
            text(&out.stderr).contains("Recipient not specified"),
            "{mailer}"
        );
        assert_eq!(text(&out.stdout), "\nInternal trouble.\n");
        s.run()
            .mailer(mailer)
            .args(["-l", ""])
            .expect(status_for(mailer, 78));
    }
}

#[test]
fn envelope_from_the_environment_when_no_flags() {
    for mailer in MAILERS {
        let s = Setup::standard("");
        s.run()
            .mailer(mailer)
            .env("LOCAL", "ALICE")
            .env("HOST", "example.com")
            .env("SENDER", "env-sender@example.org")
            .expect(status_for(mailer, 0));
        let mails = s.mails();
        assert_eq!(mails[0].recipient, "alice");
        assert_eq!(mails[0].sender.as_deref(), Some("env-sender@example.org"));
    }
}

#[test]
fn flags_override_the_environment() {
    let s = Setup::standard("");
    s.run()
        .env("LOCAL", "carol")
        .env("SENDER", "env@x")
        .args(["-l", "alice", "-s", "flag@x"])
        .expect(0);
    assert_eq!(s.mails()[0].sender.as_deref(), Some("flag@x"));
}

#[test]
fn user_at_domain_is_split_when_no_host_is_given() {
    let s = Setup::new(
        "Verify = SELECT name FROM users WHERE name = '$local'\n\
         Deliver = INSERT INTO mail (recipient, folder, body) VALUES ('$local', '$domain', $message)",
        "",
    );
    s.run().args(["-l", "Alice@Example.COM"]).expect(0);
    let m = &s.mails()[0];
    assert_eq!(
        (m.recipient.as_str(), m.folder.as_deref()),
        ("alice", Some("example.com"))
    );
}

#[test]
fn an_at_in_the_mtas_local_part_does_not_replace_its_host() {
    // qmail hands `"carol@internal.test"@example.com` over as LOCAL and HOST: the domain is
    // HOST's, never one the sender wrote into the local part.
    let s = Setup::new(
        "Verify = SELECT name FROM users WHERE name = '$local'\n\
         Deliver = INSERT INTO mail (recipient, folder, body) VALUES ('$local', '$domain', $message)",
        "",
    );
    rusqlite::Connection::open(&s.db)
        .unwrap()
        .execute(
            "INSERT INTO users VALUES ('carol@internal.test', 'Inbox'), ('carol', 'Inbox')",
            [],
        )
        .unwrap();
    s.run()
        .mailer("qmail")
        .env("LOCAL", "carol@internal.test")
        .env("HOST", "example.com")
        .expect(99);
    let m = &s.mails()[0];
    assert_eq!(
        (m.recipient.as_str(), m.folder.as_deref()),
        ("carol@internal.test", Some("example.com"))
    );
    // Without any HOST, the `@` in LOCAL is all there is to name a domain.
    s.run()
        .mailer("qmail")
        .env("LOCAL", "carol@internal.test")
        .expect(99);
    let m = &s.mails()[1];
    assert_eq!(
        (m.recipient.as_str(), m.folder.as_deref()),
        ("carol", Some("internal.test"))
    );
}

#[test]
fn remove_prefix_in_options_or_translate() {
    for (options, rest) in [
        ("RemovePrefix = DB-", ""),
        ("", "[Translate]\nRemovePrefix = db-\n"),
    ] {
        let s = Setup::new(
            &format!("{OPTIONS}\n{options}"),
            &format!("{BOUNCE}\n{rest}"),
        );
        s.run()
            .mailer("qmail")
            .env("LOCAL", "db-info")
            .env("HOST", "example.com")
            .expect(99);
        assert_eq!(s.mails()[0].recipient, "info");
        assert_eq!(s.mails()[0].folder.as_deref(), Some("Work"));
        // A bare prefix leaves an empty local part: nobody.
        s.run().mailer("qmail").env("LOCAL", "db-").expect(100);
    }
}

#[test]
fn without_verify_everyone_is_accepted() {
    let s = Setup::new(
        "Deliver = INSERT INTO mail (recipient, body) VALUES ('$local', $message)",
        "",
    );
    s.run().args(["-l", "Anyone"]).expect(0);
    assert_eq!(s.mails()[0].recipient, "anyone");
}

#[test]
fn verify_check_return_decides_existence() {
    // A "procedure" in SQLite terms: the first column is the return value.
    let s = Setup::new(
        "Verify = SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE name = '$local') THEN 1 ELSE 0 END, 'Box'\n\
         VerifyCheckReturn = 1\n\
         Deliver = INSERT INTO mail (recipient, folder, body) VALUES ('$local', $2, $message)",
        "",
    );
    s.run().args(["-l", "alice"]).expect(0);
    s.run().args(["-l", "carol"]).expect(67);
    let mails = s.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].folder.as_deref(), Some("Box"));
}

#[test]
fn deliver_check_return_mismatch_rolls_back_and_bounces() {
    for mailer in MAILERS {
        let s = Setup::new(
            "Verify = SELECT name FROM users WHERE name = '$local'\n\
             Deliver = INSERT INTO mail (recipient, body) VALUES ($1, $message) RETURNING 0\n\
             DeliverCheckReturn = 1",
            BOUNCE,
        );
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 67));
        assert!(
            text(&out.stdout).contains("No mailbox for alice"),
            "{mailer}"
        );
        assert!(text(&out.stderr).contains("rolled back"), "{mailer}");
        assert_eq!(s.count(), 0, "{mailer}: the row must not stay behind");
    }
}

#[test]
fn deliver_check_return_match_commits() {
    let s = Setup::new(
        "Deliver = INSERT INTO mail (recipient, body) VALUES ('$local', $message) RETURNING 1\n\
         DeliverCheckReturn = 1",
        "",
    );
    s.run().args(["-l", "alice"]).expect(0);
    assert_eq!(s.count(), 1);
}

#[test]
fn database_in_a_missing_directory_defers() {
    for mailer in MAILERS {
        let s = Setup::standard("");
        let missing = s.path("no/such/dir/mail.db");
        s.write_config(&format!(
            "[Options]\nDSN = sqlite:{}\n{OPTIONS}\n{BOUNCE}",
            missing.display()
        ));
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 75));
        assert_eq!(
            text(&out.stdout),
            "\nThe mail store is unavailable.\n",
            "{mailer}"
        );
        assert!(text(&out.stderr).contains("DB_Connect"), "{mailer}");
    }
}

#[test]
fn verify_that_cannot_be_prepared_is_a_configuration_error() {
    let s = Setup::new(
        "Verify = SELECT name FROM no_such_table WHERE name = '$local'\n\
         Deliver = INSERT INTO mail (recipient, body) VALUES ($1, $message)",
        BOUNCE,
    );
    for mailer in MAILERS {
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 78));
        let err = text(&out.stderr);
        assert!(
            err.contains("Verify: SQLPrepare") && err.contains("no_such_table"),
            "{err}"
        );
        assert_eq!(text(&out.stdout), "\nThe mail store is unavailable.\n");
    }
}

#[test]
fn deliver_that_fails_permanently_is_software_error() {
    // NOT NULL constraint: the statement is fine, the data is refused every time.
    let s = Setup::new(
        "Deliver = INSERT INTO mail (recipient, body) VALUES (NULL, $message)",
        "",
    );
    for mailer in MAILERS {
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 70));
        assert!(
            text(&out.stderr).contains("Deliver: SQLExecute"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(s.count(), 0);
}

#[test]
fn a_lock_held_past_the_statement_timeout_defers() {
    let s = Setup::standard("StatementTimeout = 1");
    // Put the file in WAL mode first, as the binary would, then hold the write lock.
    s.run().args(["-l", "alice"]).expect(0);
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO mail (recipient, body) VALUES ('x', 'y')")
        .unwrap();
    for mailer in ["sendmail", "qmail"] {
        let started = std::time::Instant::now();
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 75));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(10), "waited {took:?}");
        assert!(
            took >= std::time::Duration::from_millis(900),
            "gave up after {took:?}"
        );
        assert!(
            text(&out.stderr).contains("sqlite 5"),
            "{}",
            text(&out.stderr)
        );
    }
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(s.count(), 1);
}

#[test]
fn qmail_header_lines_are_required_and_prepended() {
    let s = Setup::standard("UnixFromLine = 1");
    let from = "From bob@example.org Thu Jan  1 00:00:00 1970\n";
    for mailer in ["qmail", "courier"] {
        s.run()
            .mailer(mailer)
            .env("UFLINE", from)
            .args(["-l", "alice"])
            .stdin("body")
            .expect(status_for(mailer, 0));
        // Missing UFLINE with UnixFromLine = 1: internal error, nothing stored.
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 70));
        assert!(
            text(&out.stderr).contains("UFLINE"),
            "{}",
            text(&out.stderr)
        );
    }
    let want = format!("{from}{DTLINE}{RPLINE}body");
    let mails = s.mails();
    assert_eq!(mails.len(), 2);
    assert!(mails.iter().all(|m| m.body == want.as_bytes()));

    let s = Setup::standard("");
    let out = s
        .run()
        .args(["-m", "qmail", "-l", "alice"])
        .env("DTLINE", DTLINE)
        .expect(100);
    assert!(text(&out.stderr).contains("RPLINE"));
    // sendmail mode ignores them entirely.
    s.run().args(["-l", "alice"]).stdin("x").expect(0);
    assert_eq!(s.mails()[0].body, b"x");
}

#[test]
fn mail_debug_gets_the_same_bytes() {
    let s = Setup::standard("");
    let debug = s.path("maildebug.log");
    s.configure(&format!("MailDebug = {}\n{OPTIONS}", debug.display()), "");
    let body = b"a\0b\r\n\xff".to_vec();
    s.run().args(["-l", "alice"]).stdin(body.clone()).expect(0);
    s.run()
        .mailer("qmail")
        .args(["-l", "alice"])
        .stdin(body.clone())
        .expect(99);
    let mut want = body.clone();
    want.extend(prefix("qmail"));
    want.extend(&body);
    assert_eq!(std::fs::read(&debug).unwrap(), want);
    let meta = std::fs::metadata(&debug).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "MailDebug holds mail: private"
    );
}

#[test]
fn mail_debug_failure_does_not_stop_delivery() {
    let s = Setup::standard("MailDebug = /nonexistent-dir/x.log");
    let out = s.run().args(["-l", "alice"]).expect(0);
    assert!(text(&out.stderr).contains("MailDebug"));
    assert_eq!(s.count(), 1);
}

#[test]
fn environment_section_is_applied_and_used_for_the_envelope() {
    let s = Setup::new(
        OPTIONS,
        "[Environment]\nLOCAL = alice\nSENDER = from-ini@x\n",
    );
    s.run().expect(0);
    assert_eq!(s.mails()[0].sender.as_deref(), Some("from-ini@x"));
    // Flags still win over [Environment].
    s.run().args(["-s", "flag@x"]).expect(0);
    assert_eq!(s.mails()[1].sender.as_deref(), Some("flag@x"));
}

#[test]
fn verify_dsn_reads_the_replica_and_deliver_writes_the_primary() {
    let s = Setup::standard("");
    // The "replica" knows the users; the primary (the standard store) takes the mail.
    let replica = s.path("replica.db");
    let conn = rusqlite::Connection::open(&replica).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (name TEXT, folder TEXT); INSERT INTO users VALUES ('zoe', 'Replica');",
    )
    .unwrap();
    drop(conn);
    s.configure(
        &format!("VerifyDSN = sqlite:{}\n{OPTIONS}", replica.display()),
        BOUNCE,
    );
    s.run().args(["-l", "zoe"]).expect(0);
    s.run().args(["-l", "alice"]).expect(67);
    let mails = s.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        (mails[0].recipient.as_str(), mails[0].folder.as_deref()),
        ("zoe", Some("Replica"))
    );
    // A replica that cannot be reached defers, like the primary.
    s.configure(
        &format!(
            "VerifyDSN = sqlite:{}\n{OPTIONS}",
            s.path("gone/replica.db").display()
        ),
        BOUNCE,
    );
    s.run().args(["-l", "zoe"]).expect(75);
}

#[test]
fn a_refused_recipient_is_still_named_in_the_bounce_printably() {
    let s = Setup::standard("");
    let out = s
        .run()
        .args(["-l", "Bad\u{1b}User", "-h", "Example.com"])
        .expect(67);
    assert_eq!(
        text(&out.stdout),
        "\nNo mailbox for bad?user@example.com here.\nPlease check the address.\n"
    );
}
