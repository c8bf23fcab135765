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
    let mut out = text.to_string();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
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

/// Splits an ODBC connect string into `key=value` attributes; `{…}` values may hold `;`.
fn odbc_attributes(dsn: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = dsn;
    while !rest.is_empty() {
        let (attr, next) = match rest.find(['=', ';']) {
            Some(i) if rest.as_bytes()[i] == b'=' => {
                let key = &rest[..i];
                let after = &rest[i + 1..];
                let end = if after.starts_with('{') {
                    after.find('}').map_or(after.len(), |j| j + 1)
                } else {
                    after.find(';').unwrap_or(after.len())
                };
                ((key, &after[..end]), &after[end..])
            }
            Some(i) => (("", &rest[..i]), &rest[i..]),
            None => (("", rest), ""),
        };
        out.push(attr);
        rest = next.strip_prefix(';').unwrap_or(next);
    }
    out
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

/// The passwords a DSN contains: ODBC `PWD=`/`PASSWORD=`, a URL's `user:password@`, and a
/// `password=` query parameter, both as written and percent-decoded.
pub fn dsn_secrets(dsn: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim_matches(['{', '}']);
        if !s.is_empty() {
            secrets.push(s.to_string());
            let decoded = percent_decode(s);
            if decoded != s {
                secrets.push(decoded);
            }
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
    } else {
        for (k, v) in odbc_attributes(dsn) {
            if is_password_key(k) {
                push(v);
            }
        }
    }
    secrets
}

/// A DSN fit for printing: every password replaced by `****`.
pub fn mask_dsn(dsn: &str) -> String {
    let mut out = dsn.to_string();
    for secret in dsn_secrets(dsn) {
        out = out.replace(&secret, MASK);
    }
    out
}

fn percent_decode(s: &str) -> String {
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
