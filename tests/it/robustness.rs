//! SPEC §7 and §8: parallel deliveries, signals, panics, closed pipes and an abandoned run
//! all end with a deliberate status, and nothing is lost or stored twice.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn parallel(s: &Setup, n: usize) {
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let mut run = s.run();
            run.args(["-l", "alice", "-s", &format!("sender{i}@example.org")])
                .stdin(format!("Subject: {i}\n\nmessage {i}\n"));
            std::thread::spawn(move || run.output())
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
}

#[test]
fn fifty_parallel_deliveries_into_one_file() {
    let s = Setup::standard("");
    parallel(&s, 50);
    let mails = s.mails();
    assert_eq!(mails.len(), 50);
    let mut senders: Vec<_> = mails.iter().map(|m| m.sender.clone().unwrap()).collect();
    senders.sort();
    senders.dedup();
    assert_eq!(senders.len(), 50, "each delivery stored once");
}

#[test]
fn fifty_parallel_deliveries_into_a_file_not_yet_in_wal_mode() {
    let s = Setup::standard("");
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    drop(conn);
    parallel(&s, 50);
    assert_eq!(s.count(), 50);
}

fn spawn_waiting(s: &Setup, mailer: &str) -> std::process::Child {
    // stdin stays open, so the binary sits in its read of the message.
    let child = s
        .run()
        .mailer(mailer)
        .args(["-l", "alice"])
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn terminating_signals_defer_instead_of_killing() {
    for signal in ["TERM", "HUP", "INT", "ALRM", "QUIT", "USR1"] {
        for mailer in ["sendmail", "postfix", "qmail", "courier"] {
            let s = Setup::standard("");
            let child = spawn_waiting(&s, mailer);
            let ok = std::process::Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(status_for(mailer, 75)),
                "SIG{signal} under {mailer}"
            );
            assert_eq!(s.count(), 0);
        }
    }
}

#[test]
fn a_signal_during_the_fallback_kills_it_too() {
    let s = Setup::standard("");
    let pidfile = s.path("fallback.pid");
    s.configure(
        &format!(
            "{OPTIONS}\nFallback = /bin/sh -c \"echo $$ > {}; sleep 60\"",
            pidfile.display()
        ),
        "",
    );
    let child = s
        .run()
        .args(["-l", "carol"])
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !pidfile.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75));
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "fallback {pid} still running"
    );
}

#[test]
fn a_panic_defers_with_the_mailer_temporary_code() {
    for mailer in MAILERS {
        let s = Setup::standard("");
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .env("VIRT_MAIL_TEST_PANIC", "1")
            .expect(status_for(mailer, 75));
        assert!(
            text(&out.stderr).contains("internal error"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(s.count(), 0);
    }
}

/// A message larger than the memory the process may have (a ulimit here; a cgroup or a
/// loaded machine elsewhere) defers with the mailer's temporary code, from a file (sized
/// up front) and from a pipe (grown as it arrives): a failed allocation is an error that
/// says so, not an abort (SIGABRT), which an MTA takes for a crash.
#[test]
fn a_message_larger_than_the_memory_allowed_defers() {
    let s = Setup::standard("");
    let big = s.path("big.eml");
    // Sparse: 150 MB of zeros that take no disk.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(150_000_000)
        .unwrap();
    let limited = ["sh", "-c", "ulimit -v 100000 && exec \"$@\"", "sh"];
    for mailer in ["sendmail", "exim"] {
        for from_file in [true, false] {
            let mut run = s.run();
            run.mailer(mailer).args(["-l", "alice"]);
            if from_file {
                run.stdin_file(&big);
            } else {
                run.stdin(std::fs::read(&big).unwrap());
            }
            let out = run.wrapped_output(&limited);
            run.check(&out, status_for(mailer, 75));
            assert!(
                text(&out.stderr).contains("Cannot read the message: out of memory"),
                "{mailer}, from a file: {from_file}: {}",
                text(&out.stderr)
            );
        }
    }
    assert_eq!(s.count(), 0);
    // The same message, without the limit, is delivered: the limit was the cause.
    s.run().args(["-l", "alice"]).stdin_file(&big).expect(0);
    assert_eq!(s.count(), 1);
}

#[test]
fn a_closed_stdout_does_not_change_the_result() {
    let s = Setup::standard("");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = s
        .run()
        .args(["-l", "carol"])
        .command()
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    assert_eq!(
        child.wait().unwrap().code(),
        Some(67),
        "bounce text to a closed pipe"
    );
}

#[test]
fn stdin_closed_by_the_reader_side_is_fine_for_a_bounce() {
    // Too long: we stop reading; the writer sees EPIPE, we still answer 77.
    let s = Setup::standard("MaxMessageSize = 10");
    let out = s
        .run()
        .args(["-l", "alice"])
        .stdin(vec![b'x'; 5_000_000])
        .expect(77);
    assert!(text(&out.stdout).contains("Too long"));
}

#[test]
fn an_abandoned_delivery_is_not_stored() {
    let s = Setup::standard("");
    let err = s.path("err");
    // The shell starts the binary in the background and exits; the message arrives after.
    let script = format!(
        "exec 3<&0; \"{}\" -c \"{}\" -l alice <&3 2>\"{}\" & sleep 1",
        bin(),
        s.config.display(),
        err.display()
    );
    let mut shell = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    shell.wait().unwrap();
    stdin.write_all(b"Subject: late\n\nbody\n").unwrap();
    drop(stdin);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("gone")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = std::fs::read_to_string(&err).unwrap();
    assert!(err.contains("has gone"), "{err}");
    assert_eq!(s.count(), 0);
}

#[test]
fn the_wal_stays_small_across_many_deliveries() {
    // Each delivery is a new process that rebuilds the WAL index by reading the WAL: it must
    // not grow without bound (it would if checkpoints were left to SQLite's defaults).
    let s = Setup::standard("");
    for i in 0..150 {
        s.run()
            .args(["-l", "alice"])
            .stdin(vec![b'a' + (i % 26) as u8; 6000])
            .expect(0);
    }
    assert_eq!(s.count(), 150);
    let wal = std::fs::metadata(format!("{}-wal", s.db.display())).map_or(0, |m| m.len());
    assert!(wal < 1024 * 1024, "WAL grew to {wal} bytes");
}
