//! SPEC §2 and §11: options, usage errors and their mapping, help and version.

use crate::common::*;

#[test]
fn bad_mailer_is_a_usage_error_mapped_by_the_mailer_before_it() {
    let s = Setup::standard("");
    let out = s.run().args(["-m", "foo", "-l", "alice"]).expect(64);
    assert!(text(&out.stderr).contains("Usage"), "usage text on stderr");
    assert!(out.stdout.is_empty());
    s.run()
        .args(["-m", "qmail", "-m", "foo", "-l", "alice"])
        .expect(100);
    s.run().args(["-m", "courier", "-m", "foo"]).expect(64);
    s.run().args(["-m", "QMAIL", "-l", "alice"]).expect(64);
    assert_eq!(s.count(), 0);
}

#[test]
fn unknown_option_and_missing_value_are_usage_errors() {
    for mailer in MAILERS {
        let want = status_for(mailer, 64);
        Run::new().mailer(mailer).arg("--bogus").expect(want);
        Run::new().mailer(mailer).arg("-x").expect(want);
        Run::new().mailer(mailer).arg("-l").expect(want);
    }
}

#[test]
fn attached_long_and_plus_spellings() {
    let s = Setup::standard("");
    let cfg = s.config.display().to_string();
    s.run()
        .args(["-lalice", "-mqmail"])
        .env("DTLINE", DTLINE)
        .env("RPLINE", RPLINE)
        .expect(99);
    Run::new()
        .args([
            "--config-file",
            &cfg,
            "--local",
            "alice",
            "--mailer",
            "postfix",
        ])
        .expect(0);
    Run::new()
        .args([
            &format!("--config-file={cfg}"),
            "--local=alice",
            "--sender=x@y",
        ])
        .expect(0);
    Run::new()
        .args([
            "+config-file",
            &cfg,
            "+local",
            "alice",
            "+host",
            "example.com",
            "+sender",
            "z@y",
        ])
        .expect(0);
    Run::new()
        .args(["-s", "late@y", "-c", &cfg, "-l", "alice", "-m", "exim"])
        .expect(0);
    assert_eq!(s.count(), 5);
    assert_eq!(s.mails()[4].sender.as_deref(), Some("late@y"));
}

#[test]
fn help_and_version_print_on_stdout_and_exit_zero() {
    let out = Run::new().arg("--help").expect(0);
    let help = text(&out.stdout);
    for word in [
        "--config-file",
        "--local",
        "--host",
        "--sender",
        "--mailer",
        "--debug",
    ] {
        assert!(help.contains(word), "{word} missing from --help");
    }
    let out = Run::new().arg("--version").expect(0);
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    // It names the databases this build reaches (builds differ by cargo features).
    let databases = bin_databases();
    assert!(!databases.is_empty());
    for d in &databases {
        assert!(
            ["sqlite", "postgres", "mysql", "virtuoso", "odbc"].contains(&d.as_str()),
            "{d}"
        );
    }
    // Also under qmail: information is not a delivery result.
    Run::new().args(["-m", "qmail", "--help"]).expect(0);
}

#[test]
fn extra_words_are_ignored_with_a_warning() {
    let s = Setup::standard("");
    let out = s.run().args(["-l", "alice", "stray", "words"]).expect(0);
    assert!(text(&out.stderr).contains("extra arguments ignored"));
    assert_eq!(s.count(), 1);
}

#[test]
fn double_dash_ends_the_options() {
    let s = Setup::standard("");
    s.run().args(["--", "-l", "alice"]).expect(78);
    assert_eq!(s.count(), 0);
}

#[test]
fn debug_traces_the_steps() {
    let s = Setup::standard("");
    let out = s
        .run()
        .args(["--debug", "-l", "alice", "-s", "bob@x"])
        .expect(0);
    let err = text(&out.stderr);
    for step in [
        "configuration file",
        "DSN sqlite:",
        "Verify: SELECT",
        "?1 = \"alice\"",
        "Deliver: INSERT",
        "delivered",
    ] {
        assert!(err.contains(step), "--debug lacks {step:?}:\n{err}");
    }
}

#[test]
fn the_password_is_never_printed() {
    let secret = "Sup3r-S3cret";
    let s = Setup::standard("");
    for dsn in [
        format!("DSN=Virtuoso;HOST=127.0.0.1:1;UID=dba;PWD={secret}"),
        format!("postgres://virt:{secret}@127.0.0.1:1/mail"),
        format!("mysql://virt:{secret}@127.0.0.1:1/mail"),
    ] {
        s.write_config(&format!("[Options]\nDSN = {dsn}\n{OPTIONS}\n{BOUNCE}"));
        for mailer in MAILERS {
            let out = s
                .run()
                .mailer(mailer)
                .args(["--debug", "-l", "alice"])
                .expect(status_for(mailer, 75));
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(!all.contains(secret), "password shown for {dsn}:\n{all}");
            assert!(
                all.contains("****"),
                "masked DSN expected in --debug:\n{all}"
            );
        }
    }
    // The HOST/PORT/UID/PWD composition too.
    s.write_config(&format!(
        "[Options]\nHOST=127.0.0.1\nPORT=1\nUID=dba\nPWD={secret}\n{OPTIONS}"
    ));
    let out = s.run().args(["--debug", "-l", "alice"]).expect(75);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(secret), "{all}");
}
