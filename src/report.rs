//! What the tool says: one-line errors on stderr (and syslog, facility mail, in the sendmail
//! family), the `--debug` trace, and the bounce text on stdout. Everything leaving the process
//! passes `redact`, so a database password cannot reach a bounce, a log or a terminal.
//!
//! Writes never panic: a closed stdout or stderr (the MTA gave up) must not turn a finished
//! delivery into a crash.

use std::ffi::CString;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

static DEBUG: AtomicBool = AtomicBool::new(false);
static SYSLOG: AtomicBool = AtomicBool::new(false);
static PROGRAM: OnceLock<String> = OnceLock::new();
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The replacement for a password wherever it would appear.
pub const MASK: &str = "****";

/// Sets the name used in messages, the debug switch and whether errors go to syslog.
pub fn init(program: &str, debug: bool, syslog: bool) {
    let _ = PROGRAM.set(program.to_string());
    DEBUG.store(debug, Ordering::Relaxed);
    if syslog {
        if let Ok(ident) = CString::new(program) {
            // openlog keeps the pointer: the identity must live as long as the process.
            let ident: &'static std::ffi::CStr = Box::leak(ident.into_boxed_c_str());
            let flags = nix::syslog::LogFlags::LOG_PID;
            if nix::syslog::openlog(Some(ident), flags, nix::syslog::Facility::LOG_MAIL).is_ok() {
                SYSLOG.store(true, Ordering::Relaxed);
            }
        }
    }
}

fn program() -> &'static str {
    PROGRAM.get().map_or("virt_mail", String::as_str)
}

/// Registers passwords to be masked in all later output.
pub fn add_secrets(secrets: impl IntoIterator<Item = String>) {
    let mut list = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    list.extend(secrets.into_iter().filter(|s| !s.is_empty()));
    // Longest first, so a password that contains another is masked whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Masks every registered password in `text`.
pub fn redact(text: &str) -> String {
    let list = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    mask_all(text, &list)
}

/// Replaces every occurrence of every secret with `****`. Occurrences are found in the
/// original text first and overlapping ones merged, so masking one secret can never break
/// up an occurrence of another and leave a piece of it visible.
pub(crate) fn mask_all(text: &str, secrets: &[String]) -> String {
    let mut covered = vec![false; text.len()];
    let mut any = false;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut from = 0;
        while let Some(at) = text[from..].find(secret.as_str()) {
            let start = from + at;
            covered[start..start + secret.len()].fill(true);
            any = true;
            // Overlapping occurrences too: go on from the next character.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if !any {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if covered[i] {
            out.push_str(MASK);
            while chars.peek().is_some_and(|&(j, _)| covered[j]) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn debugging() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// An error line: stderr, and syslog at LOG_ERR when enabled.
pub fn error(message: &str) {
    line(nix::syslog::Severity::LOG_ERR, message);
}

/// A warning line: stderr, and syslog at LOG_WARNING when enabled.
pub fn warn(message: &str) {
    line(
        nix::syslog::Severity::LOG_WARNING,
        &format!("warning: {message}"),
    );
}

fn line(severity: nix::syslog::Severity, message: &str) {
    let message = redact(&crate::error::one_line(message));
    let _ = writeln!(std::io::stderr(), "{}: {message}", program());
    if SYSLOG.load(Ordering::Relaxed) {
        let priority = nix::syslog::Priority::new(severity, nix::syslog::Facility::LOG_MAIL);
        let _ = nix::syslog::syslog(priority, message.as_str());
    }
}

/// A `--debug` trace line (stderr only); multi-line text (SQL) keeps the prefix per line.
pub fn debug_line(args: std::fmt::Arguments<'_>) {
    let text = redact(&args.to_string());
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.lines() {
        out.push_str(program());
        out.push_str(": debug: ");
        out.push_str(line);
        out.push('\n');
    }
    let _ = std::io::stderr().write_all(out.as_bytes());
}

/// `debug!("...", args)`: formats only when `--debug` is on.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::report::debugging() {
            $crate::report::debug_line(format_args!($($arg)*));
        }
    };
}

/// Prints a bounce text on stdout as the original did: an empty line, then each line trimmed.
pub fn bounce(text: &str) {
    let mut out = String::from("\n");
    for l in text.lines() {
        out.push_str(l.trim());
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(redact(&out).as_bytes());
    let _ = stdout.flush();
}

/// The `KEY=value` attributes of an ODBC connect string, spaces around keys and values
/// dropped (other whitespace in a value is part of it), empty ones left out (a piece without `=` is a key with an empty value). A value that starts with `{`
/// runs to its closing brace and may hold `;`; inside it `}}` stands for `}` (the
/// MS-ODBCSTR rule that odbc-api also writes). Values are returned as written, braces
/// included. The one parser of connect strings: masking and the ODBC backend share it.
pub(crate) fn odbc_attributes(connect: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = connect;
    while !rest.is_empty() {
        let (attr, next) = match rest.find(['=', ';']) {
            Some(i) if rest.as_bytes()[i] == b'=' => {
                let after = &rest[i + 1..];
                let value = after.trim_start_matches(' ');
                let end = after.len() - value.len()
                    + if value.starts_with('{') {
                        braced_end(value)
                    } else {
                        value.find(';').unwrap_or(value.len())
                    };
                let value = after[..end].trim_matches(' ');
                ((rest[..i].trim(), value), &after[end..])
            }
            Some(i) => ((rest[..i].trim(), ""), &rest[i..]),
            None => ((rest.trim(), ""), ""),
        };
        if !attr.0.is_empty() || !attr.1.is_empty() {
            out.push(attr);
        }
        rest = next.strip_prefix(';').unwrap_or(next);
    }
    out
}

/// An attribute value without its braces, `}}` read as `}`.
pub(crate) fn odbc_unbrace(value: &str) -> String {
    match value.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}').unwrap_or(inner).replace("}}", "}"),
        None => value.to_string(),
    }
}

/// Where a `{…}` value that starts `text` ends (just after its closing brace; `}}` is an
/// escaped brace, not the end), or the end of `text` when it is never closed.
fn braced_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'}' {
            if bytes.get(i + 1) == Some(&b'}') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn is_password_key(key: &str) -> bool {
    let key = key.trim();
    key.eq_ignore_ascii_case("PWD") || key.eq_ignore_ascii_case("PASSWORD")
}

/// The part of a URL between `scheme://` and the host, when it holds `user:password@`.
fn url_password(dsn: &str) -> Option<&str> {
    let (_, rest) = dsn.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    Some(password)
}

/// The passwords a DSN contains: ODBC `PWD=`/`PASSWORD=` (a braced value both as written and
/// with `}}` unescaped), a URL's `user:password@`, and a `password=` query parameter, each as
/// written and percent-decoded. ODBC attributes are looked for in every DSN, URL or not: an
/// ODBC string may well contain `://` (a password, or an attribute holding a URL).
pub fn dsn_secrets(dsn: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !secrets.iter().any(|k| k == s) {
            secrets.push(s.to_string());
        }
        let decoded = percent_decode(s);
        if !decoded.is_empty() && !secrets.contains(&decoded) {
            secrets.push(decoded);
        }
    };
    if dsn.contains("://") {
        if let Some(p) = url_password(dsn) {
            push(p);
        }
        if let Some((_, query)) = dsn.split_once('?') {
            for pair in query.split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    if is_password_key(k) {
                        push(v);
                    }
                }
            }
        }
    }
    for (k, v) in odbc_attributes(dsn) {
        if !is_password_key(k) {
            continue;
        }
        // As written (`}}` escaped) and as the driver reads it.
        if let Some(inner) = v.strip_prefix('{') {
            push(inner.strip_suffix('}').unwrap_or(inner));
        }
        push(&odbc_unbrace(v));
    }
    secrets
}

/// A DSN fit for printing: every password replaced by `****`.
pub fn mask_dsn(dsn: &str) -> String {
    mask_all(dsn, &dsn_secrets(dsn))
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odbc_passwords_are_found_and_masked() {
        let dsn = "DSN=Virtuoso;HOST=localhost:1111;UID=dba;PWD=s3cret";
        assert_eq!(dsn_secrets(dsn), ["s3cret"]);
        assert_eq!(
            mask_dsn(dsn),
            "DSN=Virtuoso;HOST=localhost:1111;UID=dba;PWD=****"
        );
        let braced = "DRIVER={x};Password={a;b}c;UID=u";
        assert_eq!(dsn_secrets(braced), ["a;b"]);
        assert!(!mask_dsn(braced).contains("a;b"));
    }

    /// Found by the `dsn_mask` fuzz target: an ODBC string that contains `://` anywhere (in
    /// the password, or in an attribute holding a URL) was read as a URL, and its `PWD=` was
    /// never masked; a braced password with an escaped `}}` was masked only up to it.
    #[test]
    fn odbc_passwords_with_urls_and_escaped_braces_are_masked() {
        for (dsn, password) in [
            ("DSN=;UID=x;PWD=://;HOST=x:1111", "://"),
            ("DSN=v;URL=http://h/x;PWD=s3cret", "s3cret"),
            ("DRIVER={d};PWD={a}}b;c}}};UID=u", "a}b;c}"),
            ("DSN=v;PASSWORD={}}secret};X=1", "}secret"),
        ] {
            let masked = mask_dsn(dsn);
            assert!(!masked.contains(password), "{dsn} -> {masked}");
            assert!(
                !masked.contains("secret") && !masked.contains("b;c"),
                "{masked}"
            );
        }
        // Two secrets overlapping (an ODBC password that looks like a URL with a query
        // password): both stay masked whole.
        let dsn = "DSN=x;PWD=db://x@x/x?password=abc;HOST=h";
        let masked = mask_dsn(dsn);
        assert!(
            !masked.contains("db://") && !masked.contains("abc"),
            "{masked}"
        );
        assert_eq!(
            mask_dsn("DRIVER={d};PWD={a}}b};UID=u"),
            "DRIVER={d};PWD={****};UID=u"
        );
    }

    /// Spaces around a value are not part of it, any other whitespace is (found by the
    /// `dsn_mask` fuzz target when the parser was shared with the ODBC backend: a password
    /// of one CR was trimmed away and shown).
    #[test]
    fn only_spaces_around_odbc_values_are_dropped() {
        assert_eq!(dsn_secrets("UID=u;PWD=\r"), ["\r"]);
        assert!(!mask_dsn("UID=u;PWD=\t").contains('\t'));
        assert_eq!(dsn_secrets("UID = u ; PWD =  s3cret ;X=1"), ["s3cret"]);
        assert_eq!(
            odbc_attributes("DSN=a;PWD={x;y=z};;UID = u ;flag"),
            [("DSN", "a"), ("PWD", "{x;y=z}"), ("UID", "u"), ("flag", "")]
        );
    }

    #[test]
    fn url_passwords_are_found_and_masked() {
        let dsn = "postgres://virt:p%40ss@127.0.0.1:5432/mail?sslmode=disable";
        assert_eq!(dsn_secrets(dsn), ["p%40ss", "p@ss"]);
        assert_eq!(
            mask_dsn(dsn),
            "postgres://virt:****@127.0.0.1:5432/mail?sslmode=disable"
        );
        let q = "mysql://u@h/db?password=zz&x=1";
        assert_eq!(dsn_secrets(q), ["zz"]);
        assert_eq!(dsn_secrets("sqlite:/var/mail.db"), Vec::<String>::new());
        assert_eq!(dsn_secrets("postgres://u@host/db"), Vec::<String>::new());
    }

    #[test]
    fn percent_decoding_handles_edges() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%zz%"), "A%zz%");
    }
}
