//! SPEC §4, §8, §10: remote senders choose the sender and the local part. Every value of
//! the hostile corpus is either stored exactly as data or refused with a defined code;
//! no statement changes and no table is touched.

use std::os::unix::ffi::OsStringExt;

use crate::common::*;

/// The corpus in `tests/corpus/hostile.txt`, escapes decoded, plus generated long values.
pub fn corpus() -> Vec<Vec<u8>> {
    let text = include_str!("../corpus/hostile.txt");
    let mut values: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(decode)
        .collect();
    values.push("a".repeat(500).into_bytes());
    values.push(format!("{}' OR '1'='1", "x".repeat(400)).into_bytes());
    values.push("'".repeat(300).into_bytes());
    values.push("é".repeat(200).into_bytes());
    values
}

fn decode(line: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, len) = match b[i + 1] {
                b'n' => (Some(b'\n'), 2),
                b'r' => (Some(b'\r'), 2),
                b't' => (Some(b'\t'), 2),
                b'0' => (Some(0), 2),
                b'x' if i + 3 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("");
                    (u8::from_str_radix(hex, 16).ok(), 4)
                }
                _ => (None, 1),
            };
            if let Some(byte) = byte {
                out.push(byte);
                i += len;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn has_control(value: &[u8]) -> bool {
    String::from_utf8_lossy(value).chars().any(char::is_control)
}

#[test]
fn corpus_is_substantial_and_decoded() {
    let c = corpus();
    assert!(c.len() >= 80, "{}", c.len());
    assert!(c.contains(&b"a\0b".to_vec()));
    assert!(c.contains(&b"\x1b[31mred".to_vec()));
}

#[test]
fn hostile_senders_are_stored_as_data_or_refused() {
    let s = Setup::standard("");
    let mut stored = 0;
    for value in corpus() {
        if value.contains(&0) {
            continue; // The OS cannot pass NUL in argv or the environment.
        }
        let sender = std::ffi::OsString::from_vec(value.clone());
        let before = s.count();
        let mut run = s.run();
        run.args(["-l", "alice", "-h", "example.com"])
            .arg("-s")
            .arg(&sender);
        if has_control(&value) {
            let out = run.expect(65);
            assert!(text(&out.stderr).contains("Invalid sender"), "{value:?}");
            assert_eq!(s.count(), before);
        } else {
            run.expect(0);
            stored += 1;
            let mails = s.mails();
            assert_eq!(mails.len(), before + 1, "{value:?}");
            assert_eq!(
                mails.last().unwrap().sender.as_deref().map(str::as_bytes),
                Some(&value[..])
            );
        }
        s.assert_tables_intact();
    }
    assert!(stored > 70);
}

#[test]
fn hostile_local_parts_find_nobody_or_exactly_their_user() {
    let s = Setup::standard("");
    let users = ["alice", "o'brien", "info"];
    for value in corpus() {
        if value.contains(&0) {
            continue;
        }
        let local = std::ffi::OsString::from_vec(value.clone());
        let mut run = s.run();
        run.arg("-l")
            .arg(&local)
            .args(["-h", "example.com", "-s", "x@y"]);
        let lower = String::from_utf8_lossy(&value).to_ascii_lowercase();
        let before = s.count();
        if has_control(&value) {
            let out = run.expect(67);
            assert!(text(&out.stderr).contains("Invalid recipient"), "{value:?}");
        } else if users.contains(&lower.as_str()) {
            run.expect(0);
            assert_eq!(s.mails().last().unwrap().recipient, lower);
            continue;
        } else if value.len() > 512 {
            run.expect(67);
        } else {
            let out = run.expect(67);
            assert!(text(&out.stderr).contains("User unknown"), "{value:?}");
        }
        assert_eq!(s.count(), before, "{value:?} stored something");
        s.assert_tables_intact();
    }
    assert_eq!(s.count(), 1, "only o'brien is a real user in the corpus");
}

#[test]
fn values_reach_verify_exactly() {
    // A Verify that echoes its parameters back as columns shows what the database received.
    let s = Setup::new(
        "Verify = SELECT '$local', '$sender', '${local}@$domain'\n\
         Deliver = INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $3, $2, $message)",
        "",
    );
    for value in corpus() {
        if value.contains(&0) || has_control(&value) || value.len() > 512 {
            continue;
        }
        let v = String::from_utf8(value.clone()).unwrap();
        s.run()
            .args(["-l", &v, "-h", "Example.com", "-s", &v])
            .expect(0);
        let m = s.mails().pop().unwrap();
        let lower = v.to_ascii_lowercase();
        assert_eq!(m.recipient, lower);
        assert_eq!(m.sender.as_deref(), Some(v.as_str()));
        assert_eq!(m.folder, Some(format!("{lower}@example.com")));
    }
    s.assert_tables_intact();
}
