//! The `regex` shim (shims/regex) that Cargo.toml patches in for `mysql_common`: its
//! patterns must match what they matched under the regex crate, and it must have no other
//! user, whose patterns it was not checked against.

use regex::bytes::Regex;

// mysql_common 0.37's patterns, verbatim (src/packets/mod.rs, src/value/convert/mod.rs).
const MARIADB_VERSION: &str = r"^(?:5.5.5-)?(\d{1,2})\.(\d{1,2})\.(\d{1,3})-MariaDB";
const VERSION: &str = r"^(\d{1,2})\.(\d{1,2})\.(\d{1,3})(.*)";
const YMD: &str = r"^\d{4}-\d{2}-\d{2}$";
const YMD_HMS: &str = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$";
const YMD_HMS_NS: &str = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{1,6}$";
const HH_MM_SS: &str = r"^\d{2}:[0-5]\d:[0-5]\d$";
const HH_MM_SS_MS: &str = r"^\d{2}:[0-5]\d:[0-5]\d\.\d{1,6}$";
const HHH_MM_SS: &str = r"^[0-8]\d\d:[0-5]\d:[0-5]\d$";
const HHH_MM_SS_MS: &str = r"^[0-8]\d\d:[0-5]\d:[0-5]\d\.\d{1,6}$";

/// The three numbers, read the way mysql_common reads them.
fn version(pattern: &str, server: &[u8]) -> Option<(u16, u16, u16)> {
    let captures = Regex::new(pattern).unwrap().captures(server)?;
    let number = |i| {
        std::str::from_utf8(captures.get(i).unwrap().as_bytes())
            .unwrap()
            .parse()
            .unwrap()
    };
    Some((number(1), number(2), number(3)))
}

#[test]
fn server_versions_parse_as_with_the_regex_crate() {
    let mariadb = b"5.5.5-10.11.6-MariaDB-0+deb12u1";
    assert_eq!(version(MARIADB_VERSION, mariadb), Some((10, 11, 6)));
    assert_eq!(version(VERSION, mariadb), Some((5, 5, 5)));
    assert_eq!(
        version(MARIADB_VERSION, b"11.4.2-MariaDB-log"),
        Some((11, 4, 2))
    );
    assert_eq!(version(VERSION, b"8.0.36"), Some((8, 0, 36)));
    assert_eq!(version(MARIADB_VERSION, b"8.0.36"), None);
    assert_eq!(version(VERSION, b"v8.0.36"), None);
    assert_eq!(version(VERSION, b"100.1.1"), None);
    // The rest of the string is the fourth group.
    let captures = Regex::new(VERSION)
        .unwrap()
        .captures(b"8.0.36-log")
        .unwrap();
    assert_eq!(captures.get(4).unwrap().as_bytes(), b"-log");
    assert_eq!(captures.get(0).unwrap().range(), 0..10);
}

#[test]
fn dates_and_times_are_recognised_as_with_the_regex_crate() {
    let is = |pattern: &str, text: &str| Regex::new(pattern).unwrap().is_match(text.as_bytes());
    assert!(is(YMD, "2026-12-05"));
    assert!(!is(YMD, "2026-12-5"));
    assert!(!is(YMD, "2026-12-05 "));
    assert!(is(YMD_HMS, "2026-12-05 12:30:59"));
    assert!(!is(YMD_HMS, "2026-12-05T12:30:59"));
    assert!(is(YMD_HMS_NS, "2026-12-05 12:30:59.123456"));
    assert!(!is(YMD_HMS_NS, "2026-12-05 12:30:59.1234567"));
    assert!(is(HH_MM_SS, "23:59:59"));
    assert!(!is(HH_MM_SS, "23:60:59"));
    assert!(is(HH_MM_SS_MS, "23:59:59.5"));
    assert!(is(HHH_MM_SS, "838:59:59"));
    assert!(!is(HHH_MM_SS, "938:59:59"));
    assert!(is(HHH_MM_SS_MS, "838:59:59.000001"));
}

/// `regex` in Unicode mode matches no invalid UTF-8 byte with anything: a match stops
/// before one, and an anchored pattern fails across one.
#[test]
fn invalid_utf8_is_matched_by_nothing() {
    let captures = Regex::new(VERSION)
        .unwrap()
        .captures(b"10.11.6-\xffabc")
        .unwrap();
    assert_eq!(captures.get(4).unwrap().as_bytes(), b"-");
    assert_eq!(version(VERSION, b"10.\xff11.6"), None);
    let is = |pattern: &str, bytes: &[u8]| Regex::new(pattern).unwrap().is_match(bytes);
    assert!(!is(YMD_HMS_NS, b"2026-12-05 12:30:59.1\xff"));
    assert!(!is(YMD, b"2026-12-0\xe2\x82"));
    assert!(is(YMD, b"2026-12-05"));
    // A truncated sequence at the end, and one in the middle, keep the offsets.
    let captures = Regex::new(r"(\d+)")
        .unwrap()
        .captures(b"\xe2\x82ab12")
        .unwrap();
    let m = captures.get(1).unwrap();
    assert_eq!((m.range(), m.as_bytes()), (4..6, &b"12"[..]));
}

/// Unicode digits are not digits here (mysql_common parses what matched as ASCII).
#[test]
fn only_ascii_digits_are_digits() {
    assert_eq!(version(VERSION, "١٠.١١.٦".as_bytes()), None);
}

/// Every package in Cargo.lock that uses `regex` — the shim replaces it for all of them,
/// and was checked only against mysql_common's patterns.
#[test]
fn mysql_common_is_the_only_user_of_the_shim() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let mut users: Vec<&str> = lock
        .split("[[package]]")
        .filter(|package| {
            package
                .lines()
                .any(|line| line.trim() == "\"regex\"," || line.trim().starts_with("\"regex "))
        })
        .map(|package| {
            package
                .lines()
                .find_map(|line| line.strip_prefix("name = "))
                .unwrap_or("?")
                .trim_matches('"')
        })
        .collect();
    users.sort();
    assert_eq!(users, ["mysql_common", "virt_mail"]);
}
