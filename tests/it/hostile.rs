//! SPEC §4, §8, §10: remote senders choose the sender, the local part, the domain and the
//! header fields. Every value of the hostile corpus (`tests/corpus/hostile.txt` plus the
//! long values generated here) is either stored exactly as data or refused with a defined
//! code (65 for a sender, 67 for a recipient); no statement changes, no table is touched,
//! and no command runs — in SQL and through both forms of Fallback (a `sh -c` script and a
//! plain argument list). Commands in the corpus create files under a marker directory if
//! they ever run; every test checks it stays empty. The scenario suite runs the same corpus
//! on every store (`scenarios::hostile_envelopes_are_data`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::common::*;

/// The directory a corpus command would leave its marker file in (one per test process;
/// `@MARK@` in the corpus stands for it).
pub fn marker_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virt_mail-markers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// No corpus command has run: the marker directory is empty.
pub fn assert_no_marker() {
    let found: Vec<_> = std::fs::read_dir(marker_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        found.is_empty(),
        "hostile values ran as commands: {found:?}"
    );
}

/// The corpus in `tests/corpus/hostile.txt`, escapes decoded and `@MARK@` replaced, plus
/// generated long values: 10 KB strings and each limit exactly and one byte over (local
/// part 512, domain 255, sender 1024 bytes).
pub fn corpus() -> Vec<Vec<u8>> {
    let text = include_str!("../corpus/hostile.txt");
    let mark = marker_dir().display().to_string();
    let mut values: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| decode(&l.replace("@MARK@", &mark)))
        .collect();
    values.push("a".repeat(500).into_bytes());
    values.push(format!("{}' OR '1'='1", "x".repeat(400)).into_bytes());
    values.push("'".repeat(300).into_bytes());
    values.push("é".repeat(200).into_bytes());
    for (unit, times) in [
        ("x", 10240),
        ("'", 10240),
        ("\\'", 5120),
        ("é", 5120),
        ("🙂", 2560),
        ("%_", 5120),
        ("$(id)", 2048),
    ] {
        values.push(unit.repeat(times).into_bytes());
    }
    values.push(format!("$(touch {mark}/long){}", " ".repeat(10240)).into_bytes());
    for limit in [255, 256, 512, 513, 1024, 1025] {
        values.push("l".repeat(limit).into_bytes());
    }
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

/// Why virt_mail must refuse `value` as a sender, a local part or a domain (`None`: it is
/// data). NUL cannot be passed at all (argv and the environment end at it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotUtf8,
    Control,
    TooLong,
}

fn refusal(value: &[u8], max: usize) -> Option<Refusal> {
    match std::str::from_utf8(value) {
        Err(_) => Some(Refusal::NotUtf8),
        Ok(s) if s.chars().any(char::is_control) => Some(Refusal::Control),
        Ok(_) if value.len() > max => Some(Refusal::TooLong),
        Ok(_) => None,
    }
}

pub fn as_sender(value: &[u8]) -> Option<Refusal> {
    refusal(value, 1024)
}

pub fn as_local(value: &[u8]) -> Option<Refusal> {
    refusal(value, 512)
}

pub fn as_domain(value: &[u8]) -> Option<Refusal> {
    refusal(value, 255)
}

/// What virt_mail stores for a local part or domain: ASCII lower-cased, nothing else.
pub fn lowered(value: &[u8]) -> String {
    String::from_utf8_lossy(value).to_ascii_lowercase()
}

#[test]
fn corpus_is_substantial_and_decoded() {
    let c = corpus();
    assert!(c.len() >= 300, "{}", c.len());
    assert!(c.contains(&b"a\0b".to_vec()));
    assert!(c.contains(&b"\x1b[31mred".to_vec()));
    assert!(c.contains(&b"\xff".to_vec()));
    assert!(c.contains(&"e\u{301}".as_bytes().to_vec()), "NFD");
    assert!(c.iter().any(|v| v.len() >= 10240));
    let mark = marker_dir().display().to_string();
    let commands = c
        .iter()
        .filter(|v| String::from_utf8_lossy(v).contains(&mark))
        .count();
    assert!(commands >= 25, "{commands} marker commands");
    // Enough of each kind for every role.
    let data = |f: fn(&[u8]) -> Option<Refusal>| c.iter().filter(|v| f(v).is_none()).count();
    assert!(data(as_sender) >= 200 && data(as_local) >= 200 && data(as_domain) >= 200);
}

#[test]
fn hostile_senders_are_stored_as_data_or_refused() {
    let s = Setup::standard("");
    let mut stored = 0;
    for value in corpus() {
        if value.contains(&0) {
            continue; // The OS cannot pass NUL in argv or the environment.
        }
        let sender = OsString::from_vec(value.clone());
        let before = s.count();
        let mut run = s.run();
        run.args(["-l", "alice", "-h", "example.com"])
            .arg("-s")
            .arg(&sender);
        if as_sender(&value).is_some() {
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
    assert!(stored > 250, "{stored}");
    assert_no_marker();
}

#[test]
fn hostile_local_parts_find_nobody_or_exactly_their_user() {
    let s = Setup::standard("");
    let users = ["alice", "o'brien", "info"];
    for value in corpus() {
        if value.contains(&0) {
            continue;
        }
        let local = OsString::from_vec(value.clone());
        let mut run = s.run();
        run.arg("-l")
            .arg(&local)
            .args(["-h", "example.com", "-s", "x@y"]);
        let lower = lowered(&value);
        let before = s.count();
        if as_local(&value).is_some() {
            let out = run.expect(67);
            assert!(text(&out.stderr).contains("Invalid recipient"), "{value:?}");
        } else if users.contains(&lower.as_str()) {
            run.expect(0);
            assert_eq!(s.mails().last().unwrap().recipient, lower);
            continue;
        } else {
            let out = run.expect(67);
            assert!(text(&out.stderr).contains("User unknown"), "{value:?}");
        }
        assert_eq!(s.count(), before, "{value:?} stored something");
        s.assert_tables_intact();
    }
    assert_eq!(s.count(), 1, "only o'brien is a real user in the corpus");
    assert_no_marker();
}

#[test]
fn hostile_domains_are_stored_as_data_or_refused() {
    let s = Setup::new(
        "Verify = SELECT name, folder FROM users WHERE name = '$local'\n\
         Deliver = INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, '$domain', '$sender', $message)",
        BOUNCE,
    );
    let mut stored = 0;
    for value in corpus() {
        if value.contains(&0) {
            continue;
        }
        let before = s.count();
        let mut run = s.run();
        run.args(["-l", "alice", "-s", "x@y", "-h"])
            .arg(OsString::from_vec(value.clone()));
        match as_domain(&value) {
            Some(_) => {
                let out = run.expect(67);
                assert!(text(&out.stderr).contains("Invalid recipient"), "{value:?}");
                assert_eq!(s.count(), before);
            }
            None => {
                run.expect(0);
                stored += 1;
                let m = s.mails().pop().unwrap();
                assert_eq!(m.folder, Some(lowered(&value)), "{value:?}");
            }
        }
        s.assert_tables_intact();
    }
    assert!(stored > 250, "{stored}");
    // `user@domain` in -l alone is split at the last `@`: the domain part is checked the same.
    s.run()
        .args(["-l", "alice@a'b;$(id)", "-s", "x@y"])
        .expect(0);
    assert_eq!(
        s.mails().pop().unwrap().folder.as_deref(),
        Some("a'b;$(id)")
    );
    s.run().args(["-l", "alice@a\nb", "-s", "x@y"]).expect(67);
    assert_no_marker();
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
        if value.contains(&0) || as_local(&value).is_some() {
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
    assert_no_marker();
}

/// The values one Fallback run should see: sender as given; local part and domain
/// lower-cased (ASCII).
fn fallback_values(value: &[u8]) -> Vec<u8> {
    let mut want = Vec::new();
    for v in [
        value.to_vec(),
        lowered(value).into_bytes(),
        lowered(value).into_bytes(),
    ] {
        want.extend_from_slice(&v);
        want.push(b'\n');
    }
    want
}

/// The documented Fallback forms, each fed every hostile value as sender, local part and
/// domain at once: the shell script (`sh -c "… $sender …"`, which virt_mail rewrites to
/// variable references), a plain argument list (`program -f $sender …`), `flock -c`, and a
/// second shell given the values as arguments. The values arrive exactly, one argument
/// each, and nothing in them runs.
#[test]
fn hostile_values_through_both_fallback_forms_run_nothing() {
    let s = Setup::standard("");
    let out = s.path("out");
    let record = s.path("record");
    std::fs::write(
        &record,
        "#!/bin/sh\nexec printf '%s\\n' \"$@\" > \"$OUT\"\n",
    )
    .unwrap();
    mode(&record, 0o755);
    let forms = [
        format!(
            "Fallback = /bin/sh -c \"printf '%s\\n' $sender $local $domain > {}\"",
            out.display()
        ),
        format!(
            "Fallback = /bin/sh -c 'printf \"%s\\n\" \"$sender\" $local \"$domain\" > {}'",
            out.display()
        ),
        format!("Fallback = {} $sender $local $domain", record.display()),
        // flock runs its -c command with sh -c: the same rewrite.
        format!(
            "Fallback = /usr/bin/flock {} -c \"printf '%s\\n' $sender $local $domain > {}\"",
            s.path("lock").display(),
            out.display()
        ),
        // What the refusal of a macro in a second shell's script advises: hand the values
        // to that shell as its positional parameters.
        format!(
            r#"Fallback = /bin/sh -c "sh -c 'printf \"%s\\n\" \"$@\" > {}' sh $sender $local $domain""#,
            out.display()
        ),
    ];
    let mut checked = 0;
    for form in &forms {
        s.configure(&format!("{OPTIONS}\n{form}"), BOUNCE);
        for value in corpus() {
            let usable = value.len() <= 255
                && !value.contains(&0)
                && as_sender(&value).is_none()
                && as_domain(&value).is_none();
            if !usable || ["alice", "o'brien", "info"].contains(&lowered(&value).as_str()) {
                continue;
            }
            let _ = std::fs::remove_file(&out);
            let v = OsString::from_vec(value.clone());
            s.run()
                .arg("-l")
                .arg(&v)
                .arg("-h")
                .arg(&v)
                .arg("-s")
                .arg(&v)
                .env("OUT", &out)
                .expect(0);
            let got = std::fs::read(&out).unwrap_or_default();
            assert_eq!(
                text(&got),
                text(&fallback_values(&value)),
                "{form}\nvalue {:?}",
                text(&value)
            );
            checked += 1;
        }
        assert_no_marker();
    }
    assert!(checked > 1000, "{checked}");
    assert_eq!(s.count(), 0);
    s.assert_tables_intact();
}

/// Header macros (`$subject $from $to $message_id`) come from the message itself. Each
/// hostile value as a header field: what is stored is what the documented parser reads
/// (control characters as spaces, at most 4096 bytes), bound as data; through a Fallback
/// script it runs nothing.
#[test]
fn hostile_header_fields_are_data() {
    use virt_mail::headers::Headers;
    let s = Setup::new(
        "Verify = SELECT name, folder FROM users WHERE name = '$local'\n\
         Deliver = INSERT INTO mail (recipient, folder, sender, body) VALUES ('$message_id', '$subject', '$from', $message)",
        BOUNCE,
    );
    let mut n = 0;
    for value in corpus() {
        let mut message = Vec::new();
        for name in ["Subject", "From", "To", "Message-ID"] {
            message.extend_from_slice(name.as_bytes());
            message.extend_from_slice(b": ");
            message.extend_from_slice(&value);
            message.extend_from_slice(b"\r\n");
        }
        message.extend_from_slice(b"\r\nbody\r\n");
        let want = Headers::parse(&message);
        s.run()
            .args(["-l", "alice", "-s", "x@y"])
            .stdin(message.clone())
            .expect(0);
        let m = s.mails().pop().unwrap();
        assert_eq!(
            m.folder.as_deref(),
            Some(want.subject.as_str()),
            "{value:?}"
        );
        assert_eq!(m.sender.as_deref(), Some(want.from.as_str()), "{value:?}");
        assert_eq!(m.recipient, want.message_id, "{value:?}");
        assert_eq!(m.body, message);
        n += 1;
    }
    s.assert_tables_intact();
    assert_eq!(s.count(), n);
    // The same fields in a Fallback script.
    let out = s.path("subject");
    s.configure(
        &format!(
            "{OPTIONS}\nFallback = /bin/sh -c \"printf '%s|%s' $subject $from > {}\"",
            out.display()
        ),
        BOUNCE,
    );
    for value in corpus() {
        let mut message = b"Subject: ".to_vec();
        message.extend_from_slice(&value);
        message.extend_from_slice(b"\nFrom: ");
        message.extend_from_slice(&value);
        message.extend_from_slice(b"\n\nbody\n");
        let want = Headers::parse(&message);
        let _ = std::fs::remove_file(&out);
        s.run()
            .args(["-l", "carol", "-s", "x@y"])
            .stdin(message)
            .expect(0);
        assert_eq!(
            text(&std::fs::read(&out).unwrap()),
            format!("{}|{}", want.subject, want.from),
            "{value:?}"
        );
    }
    assert_no_marker();
}
