//! Faults on real servers: the database stops, or dies between Verify and Deliver. These
//! tests stop and start the shared servers, so they are `#[ignore]`d in the parallel run
//! and executed by `scripts/test.sh` one at a time (`--ignored --test-threads=1`).
//! Without any server feature built, there is nothing to fault.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(unused_imports, unused_mut)
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::scenarios::Case;
use crate::stores::{self, Store};

/// `scripts/servers.sh <action> <server>`, which must succeed.
fn servers(action: &str, server: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/servers.sh");
    let status = Command::new(script)
        .args([action, server])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "scripts/servers.sh {action} {server} failed"
    );
}

/// Restarts the server even when the test fails halfway.
struct Restart<'a>(&'a str);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        servers("start", self.0);
    }
}

/// Each server store with the server behind it.
fn server_stores() -> Vec<(Box<dyn Store>, &'static str)> {
    let mut all: Vec<(Box<dyn Store>, &'static str)> = Vec::new();
    #[cfg(feature = "postgres")]
    if let Some(s) = stores::require("postgres", stores::postgres::Postgres::from_env()) {
        all.push((Box::new(s), "pg"));
    }
    #[cfg(feature = "mysql")]
    if let Some(s) = stores::require("mariadb", stores::mysql::Mysql::from_env()) {
        all.push((Box::new(s), "mariadb"));
    }
    #[cfg(feature = "odbc")]
    {
        if let Some(s) = stores::require("odbc postgres", stores::odbc::Odbc::postgres_from_env()) {
            all.push((Box::new(s), "pg"));
        }
        if let Some(s) = stores::require("odbc mariadb", stores::odbc::Odbc::mariadb_from_env()) {
            all.push((Box::new(s), "mariadb"));
        }
        if let Some(s) = stores::require("odbc virtuoso", stores::odbc::Odbc::virtuoso_from_env()) {
            all.push((Box::new(s), "virtuoso"));
        }
        #[cfg(feature = "virtuoso")]
        if let Some(s) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) {
            all.push((Box::new(s), "virtuoso"));
        }
    }
    all
}

#[test]
#[ignore = "stops servers: scripts/test.sh runs it with --ignored --test-threads=1"]
fn a_stopped_server_defers_and_delivery_resumes() {
    for (store, server) in server_stores() {
        let case = Case::new(&*store);
        {
            let _restart = Restart(server);
            servers("stop", server);
            for mailer in MAILERS {
                let out = case
                    .run()
                    .mailer(mailer)
                    .args(["-l", "alice"])
                    .expect(status_for(mailer, 75));
                assert_eq!(
                    text(&out.stdout),
                    "\nThe mail store is unavailable.\n",
                    "{}",
                    store.name()
                );
                assert!(
                    text(&out.stderr).contains("DB_Connect"),
                    "{}: {}",
                    store.name(),
                    text(&out.stderr)
                );
            }
        }
        // The MTA retries once the server is back: stored exactly once.
        case.run().args(["-l", "alice"]).expect(0);
        assert_eq!(case.count(), 1, "{}", store.name());
    }
}

#[test]
#[ignore = "kills servers: scripts/test.sh runs it with --ignored --test-threads=1"]
fn a_server_dying_between_verify_and_deliver_defers_and_stores_nothing() {
    for (store, server) in server_stores() {
        for mailer in ["sendmail", "qmail"] {
            let case = Case::new(&*store);
            // Verify runs before the message is read: hold stdin open until it is done.
            let mut child = case
                .run()
                .mailer(mailer)
                .args(["--debug", "-l", "alice"])
                .command()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stderr = BufReader::new(child.stderr.take().unwrap());
            let started = Instant::now();
            let mut line = String::new();
            while !line.contains("Verify: found") {
                line.clear();
                let n = stderr.read_line(&mut line).unwrap();
                assert!(
                    n > 0 && started.elapsed() < Duration::from_secs(30),
                    "{}: Verify never finished",
                    store.name()
                );
            }
            {
                let _restart = Restart(server);
                servers("kill", server);
                let mut stdin = child.stdin.take().unwrap();
                stdin
                    .write_all(b"Subject: during a crash\n\nbody\n")
                    .unwrap();
                drop(stdin);
                let status = child.wait().unwrap();
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
                assert_eq!(
                    status.code(),
                    Some(status_for(mailer, 75)),
                    "{} {mailer}: {rest}",
                    store.name()
                );
            }
            assert_eq!(
                case.count(),
                0,
                "{} {mailer}: a row survived the crash",
                store.name()
            );
            case.run()
                .mailer(mailer)
                .args(["-l", "alice"])
                .expect(status_for(mailer, 0));
            assert_eq!(case.count(), 1, "{} {mailer}", store.name());
        }
    }
}
