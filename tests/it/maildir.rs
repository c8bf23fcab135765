//! `maildir:` targets: vpopmail-style paths from Verify, Maildir++ folders, a catch-all
//! Fallback, crash safety at every step, unique names under load, and Dovecot reading the
//! result.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// A store whose Verify returns each user's home directory, as vpopmail's `pw_dir` does.
fn vpopmail_like(extra: &str) -> (Setup, PathBuf) {
    let s = Setup::standard("");
    let homes = s.path("domains");
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE vpopmail (pw_name TEXT, pw_domain TEXT, pw_dir TEXT);
         INSERT INTO vpopmail VALUES ('alice', 'example.com', '{0}/example.com/alice'),
                                     ('bob', 'example.com', '{0}/example.com/bob');",
        homes.display()
    ))
    .unwrap();
    s.configure(
        &format!(
            "Verify = SELECT pw_dir FROM vpopmail WHERE pw_name = '$local' AND pw_domain = '$domain'\n\
             Deliver = maildir:$1/Maildir\n{extra}"
        ),
        BOUNCE,
    );
    (s, homes)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    all.sort();
    all
}

#[test]
fn a_verified_home_receives_the_message_byte_for_byte() {
    let (s, homes) = vpopmail_like("");
    let body = b"Subject: hi\r\n\r\nbody\0with NUL\r\n".to_vec();
    for mailer in MAILERS {
        s.run()
            .mailer(mailer)
            .args(["-l", "Alice", "-h", "example.com"])
            .stdin(body.clone())
            .expect(status_for(mailer, 0));
    }
    let maildir = homes.join("example.com/alice/Maildir");
    let new = files(&maildir.join("new"));
    assert_eq!(new.len(), MAILERS.len());
    for file in &new {
        let stored = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!(",S={}", stored.len())), "{name}");
        assert!(stored.ends_with(&body), "{name}");
    }
    assert!(files(&maildir.join("tmp")).is_empty());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&maildir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // Nobody else's mailbox was touched, no SQL row written.
    assert!(!homes.join("example.com/bob").exists());
    assert_eq!(s.count(), 0);
}

#[test]
fn unknown_users_and_unsafe_names_go_nowhere() {
    let s = Setup::standard("");
    let root = s.path("vmail");
    s.configure(
        &format!(
            "Verify = SELECT name FROM users WHERE name = '$local'\n\
             Deliver = maildir:{}/$domain/$local/Maildir",
            root.display()
        ),
        BOUNCE,
    );
    s.run()
        .args(["-l", "carol", "-h", "example.com"])
        .expect(67);
    // A domain a sender chooses may not climb out of the tree.
    for domain in ["..", "a/../../etc", "."] {
        let out = s.run().args(["-l", "alice", "-h", domain]).expect(67);
        assert!(
            text(&out.stderr).contains("cannot name a mailbox directory"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!root.exists(), "nothing created");
    s.run().args(["-l", "alice", "-h", "example.com"]).expect(0);
    assert_eq!(files(&root.join("example.com/alice/Maildir/new")).len(), 1);
}

#[test]
fn a_folder_is_a_maildir_plus_plus_subfolder() {
    let (s, homes) = vpopmail_like("Folder = Lists/Rust");
    s.run().args(["-l", "bob", "-h", "example.com"]).expect(0);
    let folder = homes.join("example.com/bob/Maildir/.Lists.Rust");
    assert_eq!(files(&folder.join("new")).len(), 1);
    assert!(folder.join("maildirfolder").exists());
    assert!(
        homes.join("example.com/bob/Maildir/cur").is_dir(),
        "the Maildir itself exists too"
    );
}

#[test]
fn a_catch_all_fallback_maildir() {
    let s = Setup::standard("");
    let catchall = s.path("catchall/Maildir");
    s.configure(
        &format!("{OPTIONS}\nFallback = maildir:{}", catchall.display()),
        BOUNCE,
    );
    s.run()
        .args(["-l", "nobody"])
        .stdin("Subject: lost\n\nx")
        .expect(0);
    s.run()
        .args(["-l", "nobody"])
        .mailer("qmail")
        .stdin("y")
        .expect(99);
    let bodies: Vec<Vec<u8>> = files(&catchall.join("new"))
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies.contains(&b"Subject: lost\n\nx".to_vec()),
        "{bodies:?}"
    );
    let mut qmail = prefix("qmail");
    qmail.push(b'y');
    assert!(bodies.contains(&qmail), "{bodies:?}");
    assert_eq!(s.count(), 0);
}

#[test]
fn a_crash_at_any_step_never_leaves_a_partial_message_in_new() {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    for point in ["maildir-written", "maildir-synced", "maildir-linked"] {
        let (s, homes) = vpopmail_like("");
        let out = s
            .run()
            .args(["-l", "alice", "-h", "example.com"])
            .env("VIRT_MAIL_TEST_KILL_AT", point)
            .stdin(body.clone())
            .output();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: the test hook did not fire"
        );
        let maildir = homes.join("example.com/alice/Maildir");
        let new = files(&maildir.join("new"));
        match point {
            // Killed before the link: nothing in new/ (a stray tmp/ file at most).
            "maildir-written" | "maildir-synced" => assert!(new.is_empty(), "{point}: {new:?}"),
            // Killed after the link: the complete message is there.
            _ => {
                assert_eq!(new.len(), 1, "{point}");
                assert!(
                    std::fs::read(&new[0]).unwrap() == body,
                    "{point}: partial message"
                );
            }
        }
        // The MTA retries; a clean delivery follows and everything in new/ is whole.
        s.run()
            .args(["-l", "alice", "-h", "example.com"])
            .stdin(body.clone())
            .expect(0);
        for file in files(&maildir.join("new")) {
            assert!(
                std::fs::read(&file).unwrap() == body,
                "{point}: {}",
                file.display()
            );
        }
    }
}

#[test]
fn a_thousand_parallel_deliveries_get_a_thousand_names() {
    let (s, homes) = vpopmail_like("");
    let config = s.config.clone();
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let config = config.clone();
            std::thread::spawn(move || {
                for i in 0..(1000 / 32 + usize::from(w < 1000 % 32)) {
                    let mut run = Run::new();
                    run.arg("-c")
                        .arg(&config)
                        .args(["-l", "alice", "-h", "example.com"]);
                    run.stdin(format!("Subject: {w}-{i}\n\nmessage {w}-{i}\n"));
                    let out = run.output();
                    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let new = files(&homes.join("example.com/alice/Maildir/new"));
    assert_eq!(new.len(), 1000);
    let mut bodies: Vec<Vec<u8>> = new.iter().map(|f| std::fs::read(f).unwrap()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 1000, "every message stored once, whole");
}

#[test]
fn dovecot_lists_and_reads_what_was_delivered() {
    if Command::new("doveadm").arg("help").output().is_err() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "doveadm (Debian dovecot-core) is needed under CI"
        );
        eprintln!("skipping: no doveadm (apt-get install dovecot-core)");
        return;
    }
    let (s, homes) = vpopmail_like("Folder = Junk");
    let home = homes.join("example.com/alice");
    s.run()
        .args(["-l", "alice", "-h", "example.com"])
        .stdin("Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nFrom: bob@example.org\r\n\r\nhello dovecot\r\n")
        .expect(0);
    s.configure(
        "Verify = SELECT pw_dir FROM vpopmail WHERE pw_name = '$local'\nDeliver = maildir:$1/Maildir",
        "",
    );
    s.run()
        .args(["-l", "alice"])
        .stdin("Subject: inbox\n\nin the inbox\n")
        .expect(0);

    // A private Dovecot instance: only its auth service runs, doveadm reads the Maildir.
    let run = s.path("dovecot-run");
    std::fs::create_dir(&run).unwrap();
    let conf = s.path("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols =\nbase_dir = {run}\nstate_dir = {run}\nlog_path = /dev/stderr\nssl = no\n\
             first_valid_uid = 1\nmail_location = maildir:~/Maildir\n\
             passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
             userdb {{\n  driver = static\n  args = uid=mail gid=mail home={home}\n}}\n",
            run = run.display(),
            home = home.display()
        ),
    )
    .unwrap();
    // Delivered as root here; Dovecot reads as the mail user, through the directories above.
    let chown = Command::new("chown")
        .args(["-R", "mail:mail"])
        .arg(&home)
        .status()
        .unwrap();
    assert!(chown.success());
    for dir in [s.dir.path(), &homes, &homes.join("example.com")] {
        mode(dir, 0o755);
    }
    let mut daemon = Command::new("dovecot")
        .arg("-c")
        .arg(&conf)
        .arg("-F")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let doveadm = |args: &[&str]| -> String {
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new("doveadm")
                .arg("-c")
                .arg(&conf)
                .args(args)
                .output()
                .unwrap();
            if out.status.success() {
                return text(&out.stdout);
            }
            last = text(&out.stderr);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("doveadm {args:?} kept failing: {last}");
    };
    let mailboxes = doveadm(&["mailbox", "list", "-u", "alice"]);
    let inbox = doveadm(&[
        "fetch",
        "-u",
        "alice",
        "hdr.subject text",
        "mailbox",
        "INBOX",
        "all",
    ]);
    let junk = doveadm(&[
        "fetch",
        "-u",
        "alice",
        "hdr.subject text",
        "mailbox",
        "Junk",
        "all",
    ]);
    let _ = Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .arg("stop")
        .status();
    let _ = daemon.wait();
    assert!(
        mailboxes.lines().any(|l| l == "INBOX") && mailboxes.lines().any(|l| l == "Junk"),
        "{mailboxes}"
    );
    assert!(
        inbox.contains("hdr.subject: inbox") && inbox.contains("in the inbox"),
        "{inbox}"
    );
    assert!(junk.contains("hello dovecot"), "{junk}");
}

/// The sync of `new/` that makes the link durable fails: the delivery defers (75) and takes
/// its message out of `new/`, so the MTA's retry leaves exactly one copy.
#[test]
fn a_failed_sync_of_new_defers_and_leaves_no_copy_behind() {
    if !strace_available() {
        return;
    }
    let (s, homes) = vpopmail_like("");
    let new = homes.join("example.com/alice/Maildir/new");
    let deliver = |prefix: &[&str]| {
        s.run()
            .args(["-l", "alice", "-h", "example.com"])
            .stdin(b"Subject: x\n\nbody\n".to_vec())
            .wrapped_output(prefix)
    };
    assert_eq!(deliver(&["env"]).status.code(), Some(0));
    assert_eq!(files(&new).len(), 1);
    // Which fsync is that of new/, in a delivery into an existing Maildir.
    let log = s.path("fsync.log");
    let out = deliver(&[
        "strace",
        "-f",
        "-y",
        "-e",
        "trace=fsync",
        "-o",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let trace = std::fs::read_to_string(&log).unwrap();
    let at = fsync_positions(&trace, "/Maildir/new>");
    let Some(&at) = at.first() else {
        panic!("no fsync of new/:\n{trace}");
    };
    let failing = failing_fsyncs(&at.to_string());
    let out = deliver(&failing.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("sync new/"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        files(&new).len(),
        2,
        "the deferred message was taken out of new/"
    );
}
