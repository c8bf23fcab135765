//! The configuration file checks (SPEC §3, §9) and their codes under every mailer.

use crate::common::*;

#[test]
fn missing_config_is_osfile_with_internal_error_text() {
    for mailer in MAILERS {
        let out = Run::new()
            .mailer(mailer)
            .args(["-c", "/nonexistent/virt_mail.ini", "-l", "alice"])
            .expect(status_for(mailer, 72));
        assert_eq!(text(&out.stdout), "\nFailure: InternalError\n");
        assert!(
            text(&out.stderr).contains("Cannot open configuration file /nonexistent/virt_mail.ini")
        );
    }
}

#[test]
fn unreadable_config_is_osfile() {
    use std::os::unix::process::CommandExt;
    let s = Setup::standard("");
    mode(s.dir.path(), 0o755);
    mode(&s.config, 0o000);
    let mut cmd = s.run().args(["-l", "alice"]).command();
    if std::fs::read(&s.config).is_ok() {
        // We are root, who reads everything: run the binary as nobody instead.
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(72), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Cannot open configuration file"));
    assert_eq!(text(&out.stdout), "\nFailure: InternalError\n");
}

#[test]
fn directory_as_config_is_a_configuration_error() {
    for mailer in MAILERS {
        let dir = tempfile::tempdir().unwrap();
        let out = Run::new()
            .mailer(mailer)
            .arg("-c")
            .arg(dir.path())
            .args(["-l", "alice"])
            .expect(status_for(mailer, 78));
        assert!(text(&out.stderr).contains("Invalid configuration file"));
        assert!(text(&out.stderr).contains("not a regular file"));
    }
}

#[test]
fn group_or_world_writable_config_defers() {
    for m in [0o620, 0o602, 0o666, 0o660] {
        for mailer in MAILERS {
            let s = Setup::standard("");
            mode(&s.config, m);
            let out = s
                .run()
                .mailer(mailer)
                .args(["-l", "alice"])
                .expect(status_for(mailer, 75));
            assert!(text(&out.stderr).contains("Bad permissions on"), "{m:o}");
            assert_eq!(s.count(), 0);
        }
    }
    // Readable by others is fine (no password in it, say).
    let s = Setup::standard("");
    mode(&s.config, 0o644);
    s.run().args(["-l", "alice"]).expect(0);
}

#[test]
fn symlinked_and_relative_config_paths_work() {
    let s = Setup::standard("");
    let link = s.path("link.ini");
    std::os::unix::fs::symlink(&s.config, &link).unwrap();
    s.run().args(["-l", "alice"]).expect(0);
    Run::new()
        .arg("-c")
        .arg(&link)
        .args(["-l", "alice"])
        .expect(0);
    Run::new()
        .args(["-c", "virt_mail.ini", "-l", "alice"])
        .command()
        .current_dir(s.dir.path())
        .status()
        .map(|st| assert_eq!(st.code(), Some(0)))
        .unwrap();
    assert_eq!(s.count(), 3);
}

#[test]
fn default_config_is_named_after_the_program() {
    let s = Setup::standard("");
    let link = s.path("odbc_mail");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    std::fs::copy(&s.config, s.path("odbc_mail.ini")).unwrap();
    mode(&s.path("odbc_mail.ini"), 0o600);
    let mut cmd = std::process::Command::new(&link);
    cmd.args(["-l", "alice"]).stdin(std::process::Stdio::null());
    for v in ["LOCAL", "HOST", "SENDER"] {
        cmd.env_remove(v);
    }
    assert_eq!(cmd.status().unwrap().code(), Some(0));
    assert_eq!(s.count(), 1);
}

#[test]
fn syntax_error_is_invalid_config_with_line() {
    let s = Setup::standard("");
    s.write_config("[Options]\nDSN = sqlite:x\nthis line has no equals sign\n");
    let out = s.run().args(["-l", "alice"]).expect(78);
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "\nFailure: InternalError\n");
}

#[test]
fn missing_deliver_is_a_configuration_error() {
    for mailer in MAILERS {
        let s = Setup::new("Verify = SELECT 1", BOUNCE);
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 78));
        assert!(text(&out.stderr).contains("Missing Deliver statement in [Options]"));
    }
}

#[test]
fn bad_environment_entry_is_a_configuration_error() {
    let s = Setup::new(OPTIONS, "[Environment]\nA\u{0}B = x\n");
    let out = s.run().args(["-l", "alice"]).expect(78);
    assert!(text(&out.stderr).contains("Bad environment"));
}

#[test]
fn parser_rules_of_the_original() {
    // First key wins, only the first [Options] counts, comments, continuation, CRLF.
    let s = Setup::standard("");
    let db = s.db.display().to_string();
    s.write_config(&format!(
        "; comment\r\n[OPTIONS]\r\ndsn = sqlite:{db} ; trailing comment\r\n\
         VERIFY = SELECT name, folder FROM users\r\n   WHERE name = '$local'\r\n\r\n   ; comment inside\r\n\
         Verify = SELECT 'wrong'\r\n\
         Deliver = INSERT INTO mail (recipient, folder, body) VALUES ($1, $2, $message)\r\n\
         [Options]\r\nDeliver = INSERT INTO nowhere VALUES (1)\r\n"
    ));
    s.run().args(["-l", "alice"]).expect(0);
    s.run().args(["-l", "carol"]).expect(67);
    assert_eq!(s.mails()[0].folder.as_deref(), Some("Inbox"));
}

#[test]
fn max_message_size_forms() {
    for (value, limit) in [
        ("10 ; bytes", Some(10)),
        ("0x0a", Some(10)),
        ("0", None),
        ("-1", None),
        ("yes", None),
    ] {
        let s = Setup::standard(&format!("MaxMessageSize = {value}"));
        s.run()
            .args(["-l", "alice"])
            .stdin(vec![b'x'; 10])
            .expect(0);
        let over = s.run().args(["-l", "alice"]).stdin(vec![b'x'; 11]).output();
        let want = if limit.is_some() { 77 } else { 0 };
        assert_eq!(over.status.code(), Some(want), "MaxMessageSize = {value}");
    }
}

#[test]
fn unknown_keys_are_warned_about_on_every_run() {
    // A misspelt Verify would otherwise accept every recipient without a word.
    let s = Setup::new(&format!("{OPTIONS}\nVerfy = SELECT 1"), "");
    let out = s.run().args(["-l", "alice"]).expect(0);
    let err = text(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("unknown key Verfy"),
        "{err}"
    );
    assert!(
        err.contains("virt_mail.ini:"),
        "names the file and line: {err}"
    );
}

/// `[Environment]` values reach the Fallback as written: they are not macros (SPEC §3, §9),
/// so `$local` there stays `$local` whatever the recipient.
#[test]
fn environment_entries_reach_the_fallback_unexpanded() {
    let s = Setup::new(
        &format!("{OPTIONS}\nFallback = /usr/bin/env"),
        "[Environment]\nSITE_NAME = mail $local @ $domain\n",
    );
    let out = s.run().args(["-l", "carol", "-h", "example.com"]).expect(0);
    let env = text(&out.stdout);
    assert!(
        env.lines().any(|l| l == "SITE_NAME=mail $local @ $domain"),
        "{env}"
    );
}

/// The DSN is not macro-expanded either: `$local` in it is part of the file name.
#[test]
fn the_dsn_is_not_macro_expanded() {
    let s = Setup::standard("");
    let literal = s.path("$local.db");
    std::fs::copy(&s.db, &literal).unwrap();
    s.write_config(&format!(
        "[Options]\nDSN = sqlite:{}\n{OPTIONS}\n{BOUNCE}",
        literal.display()
    ));
    s.run().args(["-l", "alice"]).expect(0);
    let stored = |path: &std::path::Path| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM mail", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(stored(&literal), 1);
    assert_eq!(stored(&s.db), 0);
    assert!(!s.path("alice.db").exists());
}

/// A Verify that returns no result set at all (a statement, not a query) finds nobody:
/// the recipient is unknown (67), as when the query returns no row (SPEC §9).
#[test]
fn a_verify_without_a_result_set_finds_nobody() {
    let s = Setup::new(
        "Verify = UPDATE users SET folder = folder WHERE name = '$local'\n\
         Deliver = INSERT INTO mail (recipient, body) VALUES ('$local', $message)",
        BOUNCE,
    );
    let out = s.run().args(["-l", "alice"]).expect(67);
    assert!(text(&out.stdout).contains("No mailbox for alice@"));
    assert_eq!(s.count(), 0);
}

/// A data source where SQLite cannot keep a WAL (`sqlite::memory:`, a typo away from a
/// path) would take the message into memory that is gone at exit: the mail waits instead.
#[test]
fn an_sqlite_store_without_a_wal_defers_instead_of_losing_the_mail() {
    let s = Setup::standard("");
    s.write_config("[Options]\nDSN = sqlite::memory:\nDeliver = SELECT length($message)\n");
    let out = s.run().args(["-l", "alice"]).expect(75);
    assert!(
        text(&out.stderr).contains("not WAL"),
        "{}",
        text(&out.stderr)
    );
}

/// A file written for the original may be in Latin-1: it is read as such, comments and
/// bounce texts alike, instead of refusing every delivery for one byte.
#[test]
fn a_latin1_configuration_file_works() {
    let s = Setup::standard("");
    let mut file = format!(
        "[Options]\nDSN = sqlite:{}\n{OPTIONS}\n; Empf",
        s.db.display()
    )
    .into_bytes();
    file.extend(b"\xe4nger unbekannt\n[Bounce]\nUserUnknown = Kein Empf\xe4nger $local\n");
    std::fs::write(&s.config, file).unwrap();
    s.run().args(["-l", "alice"]).expect(0);
    let out = s.run().args(["-l", "carol"]).expect(67);
    assert_eq!(text(&out.stdout), "\nKein Empfänger carol\n");
}
