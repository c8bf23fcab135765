//! Beyond the original: quotas (SQL and Maildir++), duplicate suppression, header macros,
//! and the `--check` dry run.

use crate::common::*;

/// A store with quota and message-id columns, Verify returning the quota and usage.
fn quota_store(extra: &str) -> Setup {
    let s = Setup::standard("");
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch(
        "CREATE TABLE box (name TEXT PRIMARY KEY, quota INTEGER, used INTEGER NOT NULL DEFAULT 0);
         INSERT INTO box VALUES ('alice', 1000, 0), ('free', 0, 0);
         CREATE TABLE msg (id INTEGER PRIMARY KEY, rcpt TEXT, message_id TEXT, subject TEXT,
                           sender_hdr TEXT, rcpt_hdr TEXT, date_hdr TEXT, size INTEGER, body BLOB);
         CREATE TRIGGER count_usage AFTER INSERT ON msg
             BEGIN UPDATE box SET used = used + NEW.size WHERE name = NEW.rcpt; END;",
    )
    .unwrap();
    s.configure(
        &format!(
            "Verify = SELECT name FROM box WHERE name = '$local'\n\
             Quota = SELECT quota, used FROM box WHERE name = '$local'\n\
             Deliver = INSERT INTO msg (rcpt, message_id, subject, sender_hdr, rcpt_hdr, date_hdr, size, body)\n\
             \x20 VALUES ($1, '$message_id', '$subject', '$from', '$to', '$date', $size, $message)\n{extra}"
        ),
        &format!("{BOUNCE}QuotaExceeded = The mailbox of $local is full.\n"),
    );
    s
}

fn count(s: &Setup, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn an_sql_quota_bounces_or_defers_what_does_not_fit() {
    let s = quota_store("");
    s.run()
        .args(["-l", "alice"])
        .stdin(vec![b'a'; 600])
        .expect(0);
    s.run()
        .args(["-l", "alice"])
        .stdin(vec![b'b'; 400])
        .expect(0); // exactly full
    for mailer in MAILERS {
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin("x")
            .expect(status_for(mailer, 77));
        assert_eq!(
            text(&out.stdout),
            "\nThe mailbox of alice is full.\n",
            "{mailer}"
        );
        assert!(text(&out.stderr).contains("Quota exceeded"));
    }
    assert_eq!(count(&s, "msg"), 2);
    // No limit (0) is no quota.
    s.run()
        .args(["-l", "free"])
        .stdin(vec![b'c'; 100_000])
        .expect(0);

    let soft = quota_store("QuotaFullTempfail = 1");
    soft.run()
        .args(["-l", "alice"])
        .stdin(vec![b'a'; 1000])
        .expect(0);
    for mailer in MAILERS {
        soft.run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin("x")
            .expect(status_for(mailer, 75));
    }
    assert_eq!(count(&soft, "msg"), 1);
}

#[test]
fn a_maildir_quota_counts_maildirsize() {
    let s = Setup::standard("");
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch(
        "CREATE TABLE q (name TEXT, bytes INTEGER); INSERT INTO q VALUES ('alice', 2500);",
    )
    .unwrap();
    let maildir = s.path("alice/Maildir");
    s.configure(
        &format!(
            "Verify = SELECT name FROM users WHERE name = '$local'\n\
             Quota = SELECT bytes FROM q WHERE name = '$local'\n\
             Deliver = maildir:{}",
            maildir.display()
        ),
        BOUNCE,
    );
    for _ in 0..2 {
        s.run()
            .args(["-l", "alice"])
            .stdin(vec![b'm'; 1000])
            .expect(0);
    }
    let out = s
        .run()
        .args(["-l", "alice"])
        .stdin(vec![b'm'; 501])
        .expect(77);
    assert_eq!(text(&out.stdout), "\nFailure: QuotaExceeded\n");
    s.run()
        .args(["-l", "alice"])
        .stdin(vec![b'm'; 500])
        .expect(0);
    let size = std::fs::read_to_string(maildir.join("maildirsize")).unwrap();
    // Created from a count on the second delivery, then appended to.
    assert!(size.starts_with("2500S\n"), "{size}");
    let used: i64 = size
        .lines()
        .skip(1)
        .filter_map(|l| l.split(' ').next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(used, 2500);
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 3);
}

#[test]
fn a_redelivery_after_a_crash_past_commit_stores_once() {
    let s = quota_store(
        "Duplicate = SELECT 1 FROM msg WHERE rcpt = $1 AND message_id = '$message_id' AND '$message_id' <> ''",
    );
    let message = "Message-ID: <once@example.org>\nSubject: once\n\nbody\n";
    // The process dies right after COMMIT: the MTA never hears "delivered" and retries.
    let out = s
        .run()
        .args(["-l", "alice"])
        .env("VIRT_MAIL_TEST_KILL_AT", "committed")
        .stdin(message)
        .output();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9));
    assert_eq!(count(&s, "msg"), 1, "the commit happened");
    for mailer in MAILERS {
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin(message)
            .expect(status_for(mailer, 0));
        assert!(
            text(&out.stderr).contains("already stored"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(count(&s, "msg"), 1, "stored once");
    // A message without a Message-ID is never taken for a duplicate.
    for _ in 0..2 {
        s.run()
            .args(["-l", "alice"])
            .stdin("Subject: no id\n\nx\n")
            .expect(0);
    }
    assert_eq!(count(&s, "msg"), 3);
}

fn stored_headers(s: &Setup) -> Vec<(String, String, String, String, String, i64)> {
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT message_id, subject, sender_hdr, rcpt_hdr, date_hdr, size FROM msg ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn header_macros_from_real_world_messages() {
    let s = quota_store("");
    s.run().args(["-l", "free"]).stdin("").expect(0); // warm: nothing
    // (message, (message_id, subject, from, to, date))
    type Expected = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    );
    let cases: Vec<(&[u8], Expected)> = vec![
        (
            b"Message-ID: <CAF=abc+1@mail.example.com>\r\nFrom: \"Bob Q. Example\" <bob@example.org>\r\n\
              To: alice@example.com, Carol <carol@example.net>\r\nSubject: Meeting\r\n\
              Date: Tue, 24 Nov 2026 09:30:00 -0500\r\n\r\nbody\r\n",
            ("CAF=abc+1@mail.example.com", "Meeting", "bob@example.org", "alice@example.com, carol@example.net", "2026-11-24T09:30:00-05:00"),
        ),
        (
            // Encoded words in two charsets, folded over three lines.
            b"Subject: =?ISO-8859-1?Q?Caf=E9?=\r\n =?UTF-8?B?IOKYlQ==?=\r\n\tand more\r\nFrom: =?UTF-8?Q?J=C3=BCrgen?= <j@example.de>\r\n\r\nx",
            ("", "Café ☕ and more", "j@example.de", "", ""),
        ),
        (
            // Nothing but a body.
            b"just a line\n",
            ("", "", "", "", ""),
        ),
        (
            // Duplicates: the first one counts; a bad date is kept as text.
            b"Subject: first\nSubject: second\nDate: yesterday-ish\nMessage-ID: <a@b>\nMessage-ID: <c@d>\n\nx",
            ("a@b", "first", "", "", "yesterday-ish"),
        ),
        (
            // Hostile values stay data (and control characters become spaces).
            b"Subject: '; DROP TABLE box; -- $(touch /tmp/x) $local\nFrom: <x'@y.org>\nMessage-ID: <'); --@z>\n\
              X: =?UTF-8?Q?a=0D=0Ab?=\n\nx",
            ("'); --@z", "'; DROP TABLE box; -- $(touch /tmp/x) $local", "x'@y.org", "", ""),
        ),
    ];
    for (message, _) in &cases {
        s.run()
            .args(["-l", "free"])
            .stdin(message.to_vec())
            .expect(0);
    }
    let got = stored_headers(&s);
    assert_eq!(got.len(), cases.len() + 1);
    for ((message, want), row) in cases.iter().zip(&got[1..]) {
        assert_eq!(
            (
                row.0.as_str(),
                row.1.as_str(),
                row.2.as_str(),
                row.3.as_str(),
                row.4.as_str()
            ),
            *want
        );
        assert_eq!(row.5, message.len() as i64, "$size is the stored size");
    }
    assert_eq!(count(&s, "box"), 2, "tables intact");
}

#[test]
fn header_macros_reach_verify_and_the_fallback_too() {
    // Verify may use them (the message is then read first), and so may a Fallback.
    let s = Setup::standard("");
    let out_file = s.path("fallback.out");
    s.configure(
        &format!(
            "Verify = SELECT name, folder FROM users WHERE name = '$local' AND '$subject' <> 'spam'\n\
             Deliver = INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $2, '$subject', $message)\n\
             Fallback = /bin/sh -c \"printf '%s|' $subject $from > {}; cat >> {}\"",
            out_file.display(),
            out_file.display()
        ),
        BOUNCE,
    );
    s.run()
        .args(["-l", "alice"])
        .stdin("Subject: hello\n\nx")
        .expect(0);
    s.run()
        .args(["-l", "alice"])
        .stdin("Subject: spam\nFrom: <$(id)@x>\n\nbody\n")
        .expect(0);
    assert_eq!(s.count(), 1);
    assert_eq!(s.mails()[0].sender.as_deref(), Some("hello"));
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        // RFC 5322 reads "(id)" as a comment, so the address is "$@x".
        "spam|$@x|Subject: spam\nFrom: <$(id)@x>\n\nbody\n",
        "the Fallback gets the values as data and the message as it came"
    );
}

#[test]
fn check_shows_what_would_happen_and_changes_nothing() {
    let s = Setup::standard("");
    // stdin left open: --check must not read it (a hang would fail the test by timeout).
    let child = s
        .run()
        .args([
            "--check",
            "-l",
            "Alice",
            "-h",
            "example.com",
            "-s",
            "bob@example.org",
        ])
        .command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    for expected in [
        "config",
        &format!("DSN          sqlite:{}", s.db.display()),
        "recipient    Alice@example.com (local \"alice\", domain \"example.com\")",
        "Verify       SELECT name, folder FROM users WHERE name = ?",
        "?1 = \"alice\"",
        "found: $1 = \"alice\"  $2 = \"Inbox\"",
        "Deliver      INSERT INTO mail (recipient, folder, sender, body) VALUES (?, ?, ?, ?)",
        "?4 = <the message>",
        "result       would be delivered",
        "exit status  sendmail 0, exim 0, postfix 0, qmail 99, courier 0",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    assert_eq!(s.count(), 0, "--check stores nothing");

    let out = s.run().args(["--check", "-l", "carol"]).output();
    assert_eq!(out.status.code(), Some(67));
    let report = text(&out.stdout);
    assert!(report.contains("not found"), "{report}");
    assert!(
        report.contains("exit status  sendmail 67, exim 67, postfix 67, qmail 100, courier 67"),
        "{report}"
    );

    // A broken database and a password: the failure is shown, the password is not.
    s.write_config(&format!(
        "[Options]\nDSN = postgres://u:Check-S3cret@127.0.0.1:1/m\n{OPTIONS}"
    ));
    let out = s.run().args(["--check", "-l", "alice"]).output();
    assert_eq!(out.status.code(), Some(75));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("postgres://u:****@127.0.0.1:1/m"), "{all}");
    assert!(all.contains("qmail 111"), "{all}");
    assert!(!all.contains("Check-S3cret"), "{all}");
}
