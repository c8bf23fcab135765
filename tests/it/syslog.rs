//! Errors reach syslog (facility mail) in the sendmail family, and never in qmail mode.
//! The test gives the binary a private /dev/log: a mount namespace (needs root and
//! unshare(1)) with a tmpfs over /dev that holds only null, zero, urandom and our socket.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Runs `args` with /dev/log bound to a socket of ours; returns what arrived there.
fn syslog_of(args: &[&str], stdin: &str) -> Option<Vec<String>> {
    let root = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&root.stdout).trim() != "0"
        || Command::new("unshare").arg("--version").output().is_err()
    {
        eprintln!("skipping: needs root and unshare(1) for a private /dev/log");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log");
    let listener = UnixDatagram::bind(&sock).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let old = dir.path().join("olddev");
    std::fs::create_dir(&old).unwrap();
    let script = format!(
        "set -e; mount --bind /dev {old}; mount -t tmpfs none /dev; \
         for d in null zero urandom random; do touch /dev/$d; mount --bind {old}/$d /dev/$d; done; \
         touch /dev/log; mount --bind {sock} /dev/log; exec \"$@\"",
        old = old.display(),
        sock = sock.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script, "sh", bin()])
        .args(args);
    for var in ["LOCAL", "HOST", "SENDER", "DTLINE", "RPLINE"] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait().unwrap();
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = listener.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    Some(lines)
}

#[test]
fn errors_go_to_syslog_facility_mail_in_the_sendmail_family() {
    let s = Setup::standard("");
    let config = s.config.display().to_string();
    for mailer in ["sendmail", "exim", "postfix"] {
        let Some(lines) = syslog_of(&["-m", mailer, "-c", &config, "-l", "nobody"], "x") else {
            return;
        };
        assert_eq!(lines.len(), 1, "{mailer}: {lines:?}");
        // <19>: facility mail (2 << 3) + severity err (3), tagged with our name and pid.
        assert!(lines[0].starts_with("<19>"), "{}", lines[0]);
        assert!(lines[0].contains("virt_mail["), "{}", lines[0]);
        assert!(lines[0].contains("User unknown: nobody"), "{}", lines[0]);
    }
    let Some(lines) = syslog_of(&["-m", "qmail", "-c", &config, "-l", "nobody"], "x") else {
        return;
    };
    assert!(lines.is_empty(), "qmail logs our stderr itself: {lines:?}");
}

#[test]
fn syslog_never_sees_the_password() {
    let s = Setup::standard("");
    s.write_config(&format!(
        "[Options]\nDSN = postgres://virt:Syslog-S3cret@127.0.0.1:1/mail\n{OPTIONS}"
    ));
    let config = s.config.display().to_string();
    let Some(lines) = syslog_of(&["-c", &config, "-l", "alice"], "x") else {
        return;
    };
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| !l.contains("Syslog-S3cret")),
        "{lines:?}"
    );
}

#[test]
fn a_successful_delivery_logs_nothing() {
    let s = Setup::standard("");
    let config = s.config.display().to_string();
    let Some(lines) = syslog_of(&["-c", &config, "-l", "alice"], "Subject: x\n\nbody\n") else {
        return;
    };
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(s.count(), 1);
}
