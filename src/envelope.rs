//! The envelope: who the message is for and who sent it, from the flags or from the
//! environment the MTA set (qmail/courier). Remote senders choose these strings, so they are
//! checked here once (UTF-8, no control characters, sane lengths) and are data from then on.

use std::ffi::OsStr;

use crate::error::Error;

/// Longest local part accepted. RFC 5321 says 64; VERP/SRS addresses run longer in practice.
pub const MAX_LOCAL: usize = 512;
/// Longest domain accepted (RFC 1035 names are at most 255 octets).
pub const MAX_DOMAIN: usize = 255;
/// Longest sender accepted (a whole address plus generous room for SRS/BATV rewriting).
pub const MAX_SENDER: usize = 1024;

/// The recipient and sender of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Lower-cased, `RemovePrefix` removed; may be empty (then no user can match).
    pub local: String,
    /// Lower-cased; empty when none was given.
    pub domain: String,
    /// As given (case is kept: local parts of remote senders are case-sensitive).
    pub sender: String,
    /// `local@domain` as given (before lower-casing), or the local part alone.
    pub recipient: String,
}

impl Envelope {
    /// Builds the envelope. `local`, `host` and `sender` are the flag if given, else the
    /// environment's `LOCAL`/`HOST`/`SENDER`. `split` is true when `-h` was not given, so
    /// `-l user@domain` names both.
    pub fn new(
        local: Option<&OsStr>,
        host: Option<&OsStr>,
        sender: Option<&OsStr>,
        split: bool,
        remove_prefix: Option<&str>,
    ) -> Result<Envelope, Error> {
        let local = match local.filter(|l| !l.is_empty()) {
            Some(l) => utf8(l).ok_or_else(|| invalid("the local part is not valid UTF-8"))?,
            None => return Err(Error::NoRecipient),
        };
        let mut domain = match host {
            Some(h) => utf8(h).ok_or_else(|| invalid("the domain is not valid UTF-8"))?,
            None => "",
        };
        let mut local_part = local;
        if split {
            if let Some((l, d)) = local.rsplit_once('@') {
                local_part = l;
                domain = d;
            }
        }
        let sender = match sender {
            Some(s) => utf8(s).ok_or_else(|| Error::InvalidSender("not valid UTF-8".into()))?,
            None => "",
        };

        check(local_part, "local part", MAX_LOCAL).map_err(invalid)?;
        check(domain, "domain", MAX_DOMAIN).map_err(invalid)?;
        check(sender, "sender", MAX_SENDER).map_err(|r| Error::InvalidSender(r.into()))?;
        if local_part.is_empty() {
            return Err(invalid("empty local part"));
        }

        let recipient = if domain.is_empty() {
            local_part.to_string()
        } else {
            format!("{local_part}@{domain}")
        };
        let mut local = local_part.to_ascii_lowercase();
        if let Some(prefix) = remove_prefix {
            let prefix = prefix.to_ascii_lowercase();
            if let Some(rest) = local.strip_prefix(prefix.as_str()) {
                local = rest.to_string();
            }
        }
        Ok(Envelope {
            local,
            domain: domain.to_ascii_lowercase(),
            sender: sender.to_string(),
            recipient,
        })
    }
}

impl Envelope {
    /// A stand-in for bounce texts when the envelope itself was refused: the values as
    /// given, made printable (control characters become `?`, at most 100 characters).
    pub fn printable(
        local: Option<&OsStr>,
        host: Option<&OsStr>,
        sender: Option<&OsStr>,
    ) -> Envelope {
        let clean = |v: Option<&OsStr>| -> String {
            v.map(|v| {
                v.to_string_lossy()
                    .chars()
                    .take(100)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            })
            .unwrap_or_default()
        };
        let local = clean(local);
        let (local, domain) = match host {
            Some(_) => (local, clean(host)),
            None => match local.rsplit_once('@') {
                Some((l, d)) => (l.to_string(), d.to_string()),
                None => (local, String::new()),
            },
        };
        Envelope {
            recipient: local.clone(),
            local: local.to_ascii_lowercase(),
            domain: domain.to_ascii_lowercase(),
            sender: clean(sender),
        }
    }
}

/// A value for a macro that only informs (qmail's `EXT`): lossy UTF-8, control characters as
/// `?`, at most `MAX_LOCAL` bytes.
pub fn printable(value: Option<&OsStr>) -> String {
    let mut out = String::new();
    for c in value
        .map(|v| v.to_string_lossy())
        .unwrap_or_default()
        .chars()
    {
        if out.len() + c.len_utf8() > MAX_LOCAL {
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

fn utf8(s: &OsStr) -> Option<&str> {
    s.to_str()
}

fn invalid(reason: &str) -> Error {
    Error::InvalidRecipient(reason.to_string())
}

/// Rejects control characters (CR, LF, NUL, ESC, DEL…) and overlong values.
fn check(value: &str, what: &'static str, max: usize) -> Result<(), &'static str> {
    if value.len() > max {
        return Err(match what {
            "local part" => "the local part is too long",
            "domain" => "the domain is too long",
            _ => "too long",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(match what {
            "local part" => "control character in the local part",
            "domain" => "control character in the domain",
            _ => "control character in the address",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        local: &str,
        host: Option<&str>,
        sender: &str,
        prefix: Option<&str>,
    ) -> Result<Envelope, Error> {
        Envelope::new(
            Some(OsStr::new(local)),
            host.map(OsStr::new),
            Some(OsStr::new(sender)),
            host.is_none(),
            prefix,
        )
    }

    #[test]
    fn local_and_domain_are_lower_cased_sender_is_not() {
        let e = env("Alice", Some("Example.COM"), "Bob@Example.ORG", None).unwrap();
        assert_eq!(
            (e.local.as_str(), e.domain.as_str()),
            ("alice", "example.com")
        );
        assert_eq!(e.sender, "Bob@Example.ORG");
        assert_eq!(e.recipient, "Alice@Example.COM");
    }

    #[test]
    fn user_at_domain_is_split_only_without_h() {
        let e = env("Info@Example.com", None, "", None).unwrap();
        assert_eq!(
            (e.local.as_str(), e.domain.as_str()),
            ("info", "example.com")
        );
        let e = env("info@example.com", Some("other.org"), "", None).unwrap();
        assert_eq!(
            (e.local.as_str(), e.domain.as_str()),
            ("info@example.com", "other.org")
        );
        let e = env("\"a@b\"@c.org", None, "", None).unwrap();
        assert_eq!((e.local.as_str(), e.domain.as_str()), ("\"a@b\"", "c.org"));
    }

    #[test]
    fn prefix_is_removed_once_case_insensitively() {
        let e = env("DB-db-info", Some("x"), "", Some("db-")).unwrap();
        assert_eq!(e.local, "db-info");
        let e = env("db-", Some("x"), "", Some("DB-")).unwrap();
        assert_eq!(e.local, "", "a bare prefix leaves an empty local part");
        let e = env("info", Some("x"), "", Some("db-")).unwrap();
        assert_eq!(e.local, "info");
    }

    #[test]
    fn missing_recipient() {
        let none = Envelope::new(None, None, None, true, None);
        assert!(matches!(none, Err(Error::NoRecipient)));
        let empty = Envelope::new(Some(OsStr::new("")), None, None, true, None);
        assert!(matches!(empty, Err(Error::NoRecipient)));
    }

    #[test]
    fn hostile_values_are_refused_with_a_reason() {
        for bad in ["a\nb", "a\rb", "a\0b", "a\x1bb", "a\x7fb", "@example.com"] {
            assert!(
                matches!(env(bad, None, "", None), Err(Error::InvalidRecipient(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            env("a", Some("ex\nample"), "", None),
            Err(Error::InvalidRecipient(_))
        ));
        assert!(matches!(
            env("a", None, "x\r\nRCPT TO:<y>", None),
            Err(Error::InvalidSender(_))
        ));
        let long = "x".repeat(MAX_LOCAL + 1);
        assert!(matches!(
            env(&long, None, "", None),
            Err(Error::InvalidRecipient(_))
        ));
        let long = "x".repeat(MAX_SENDER + 1);
        assert!(matches!(
            env("a", None, &long, None),
            Err(Error::InvalidSender(_))
        ));
    }

    #[test]
    fn quotes_and_shell_characters_are_ordinary_data() {
        for ok in [
            "o'brien",
            "x' OR '1'='1",
            "$(touch /tmp/p)",
            "`id`",
            "a;b",
            "a\"b",
            "ünïcödé",
        ] {
            let e = env(ok, Some("x"), ok, None).unwrap();
            assert_eq!(e.sender, ok);
        }
    }

    #[test]
    fn printable_stand_in_for_refused_envelopes() {
        let e = Envelope::printable(
            Some(OsStr::new("Bad\nUser@Example.com")),
            None,
            Some(OsStr::new("x\ry")),
        );
        assert_eq!(
            (e.local.as_str(), e.domain.as_str(), e.sender.as_str()),
            ("bad?user", "example.com", "x?y")
        );
        let long = "x".repeat(1000);
        assert_eq!(
            Envelope::printable(Some(OsStr::new(&long)), None, None)
                .local
                .len(),
            100
        );
    }

    #[test]
    fn non_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"\xffuser");
        let r = Envelope::new(Some(bad), None, None, true, None);
        assert!(matches!(r, Err(Error::InvalidRecipient(_))));
        let r = Envelope::new(Some(OsStr::new("a")), None, Some(bad), true, None);
        assert!(matches!(r, Err(Error::InvalidSender(_))));
    }
}
