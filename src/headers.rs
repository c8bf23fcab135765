//! Header macros: `$message_id $subject $from $to $date` from the message's header section
//! (parsed only when a configured statement uses one of them), plus `$size`. Encoded words
//! (RFC 2047) are decoded and folded lines joined. A sender writes all of these, so they are
//! made safe for every place a macro can go: control characters (NUL, CR, LF, tabs …)
//! become spaces and each value is cut at `MAX_VALUE` bytes. They are still data: bound as
//! parameters in SQL, variables in a Fallback script.

use mail_parser::{Address, HeaderName, HeaderValue, MessageParser};

/// Longest header macro value, in bytes (cut at a character boundary).
pub const MAX_VALUE: usize = 4096;

/// Names of the macros this module defines (for `Template::uses`).
pub const NAMES: [&str; 6] = ["message_id", "subject", "from", "to", "date", "size"];

/// The header macros of one message. Missing headers are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// Message-ID without the angle brackets.
    pub message_id: String,
    /// Subject, decoded.
    pub subject: String,
    /// The first address of From (the address only).
    pub from: String,
    /// Every address of To, comma-separated (addresses only).
    pub to: String,
    /// Date in RFC 3339 form (`2026-11-23T12:00:00+00:00`); the raw text if unparsable.
    pub date: String,
    /// Size of the stored message in bytes.
    pub size: String,
}

impl Headers {
    /// Reads the header section of `message` (the first occurrence of each header counts:
    /// a second `Subject:` appended by someone else does not replace the first).
    pub fn parse(message: &[u8]) -> Headers {
        let mut headers = Headers {
            size: message.len().to_string(),
            ..Headers::default()
        };
        let Some(parsed) = MessageParser::new().parse_headers(message) else {
            return headers;
        };
        let first = |name: HeaderName<'static>| {
            parsed
                .headers()
                .iter()
                .find(|h| h.name == name)
                .map(|h| &h.value)
        };
        headers.message_id = first(HeaderName::MessageId).map(text).unwrap_or_default();
        headers.subject = first(HeaderName::Subject).map(text).unwrap_or_default();
        headers.from = first(HeaderName::From)
            .map(|v| addresses(v).into_iter().next().unwrap_or_default())
            .unwrap_or_default();
        headers.to = first(HeaderName::To)
            .map(|v| addresses(v).join(", "))
            .unwrap_or_default();
        // A date that does not parse is kept as written.
        headers.date = parsed
            .headers()
            .iter()
            .find(|h| h.name == HeaderName::Date)
            .map(|h| match &h.value {
                HeaderValue::DateTime(d) => d.to_rfc3339(),
                _ => String::from_utf8_lossy(
                    message
                        .get(h.offset_start as usize..h.offset_end as usize)
                        .unwrap_or_default(),
                )
                .into_owned(),
            })
            .unwrap_or_default();
        for value in [
            &mut headers.message_id,
            &mut headers.subject,
            &mut headers.from,
            &mut headers.to,
            &mut headers.date,
        ] {
            *value = clean(value);
        }
        headers
    }

    /// The value of a header macro, if `name` is one.
    pub fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "message_id" => &self.message_id,
            "subject" => &self.subject,
            "from" => &self.from,
            "to" => &self.to,
            "date" => &self.date,
            "size" => &self.size,
            _ => return None,
        })
    }
}

fn text(value: &HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(list) => list.join(" "),
        HeaderValue::Address(a) => addresses_of(a).join(", "),
        HeaderValue::DateTime(d) => d.to_rfc3339(),
        _ => String::new(),
    }
}

fn addresses(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Address(a) => addresses_of(a),
        HeaderValue::Text(t) => vec![t.to_string()],
        _ => Vec::new(),
    }
}

fn addresses_of(address: &Address<'_>) -> Vec<String> {
    address
        .iter()
        .filter_map(|a| a.address.as_deref().map(str::to_string))
        .collect()
}

/// Control characters to spaces, runs of blanks kept as they are, trimmed, length capped.
fn clean(value: &str) -> String {
    let mut out: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    if out.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_headers() {
        let message: &[u8] =
            b"From: Bob Example <bob@example.org>\r\nTo: a@x.org, \"C\" <c@y.org>\r\n\
              Subject: Hello\r\nMessage-ID: <id-1@example.org>\r\n\
              Date: Mon, 23 Nov 2026 12:00:00 +0100\r\n\r\nbody\r\n";
        let h = Headers::parse(message);
        assert_eq!(h.from, "bob@example.org");
        assert_eq!(h.to, "a@x.org, c@y.org");
        assert_eq!(h.subject, "Hello");
        assert_eq!(h.message_id, "id-1@example.org");
        assert_eq!(h.date, "2026-11-23T12:00:00+01:00");
        assert_eq!(h.size, message.len().to_string());
    }

    #[test]
    fn encoded_words_and_folded_lines_are_decoded() {
        let h = Headers::parse(
            b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus\r\n =?ISO-8859-1?B?S/Zsbg==?=\r\n\r\n",
        );
        assert_eq!(h.subject, "Grüße aus Köln");
    }

    #[test]
    fn missing_headers_are_empty() {
        let h = Headers::parse(b"X-Other: 1\n\nbody");
        assert_eq!(
            (h.subject.as_str(), h.from.as_str(), h.message_id.as_str()),
            ("", "", "")
        );
        assert_eq!(Headers::parse(b"").size, "0");
        assert_eq!(Headers::parse(b"no header at all").subject, "");
    }

    #[test]
    fn the_first_of_duplicate_headers_counts() {
        let h = Headers::parse(
            b"Subject: first\nSubject: second\nMessage-ID: <a@b>\nMessage-ID: <c@d>\n\n",
        );
        assert_eq!(h.subject, "first");
        assert_eq!(h.message_id, "a@b");
    }

    #[test]
    fn hostile_values_are_made_harmless_text() {
        // An encoded CR LF NUL in the subject, a huge subject.
        let h = Headers::parse(b"Subject: =?UTF-8?Q?a=0D=0AX-Injected:_1=00b?=\n\n");
        assert_eq!(h.subject, "a  X-Injected: 1 b");
        assert!(!h.subject.chars().any(char::is_control));
        let long = format!("Subject: {}\n\n", "é".repeat(5000));
        let h = Headers::parse(long.as_bytes());
        assert!(h.subject.len() <= MAX_VALUE && h.subject.starts_with('é'));
        let h = Headers::parse(b"Subject: '; DROP TABLE m; -- $(id) `id` $local\n\n");
        assert_eq!(h.subject, "'; DROP TABLE m; -- $(id) `id` $local");
    }

    #[test]
    fn an_unparsable_date_is_kept_as_written() {
        assert_eq!(
            Headers::parse(b"Date: yesterday-ish\n\n").date,
            "yesterday-ish"
        );
    }

    #[test]
    fn names() {
        let h = Headers::parse(b"Subject: s\n\n");
        for name in NAMES {
            assert!(h.get(name).is_some(), "{name}");
        }
        assert_eq!(h.get("local"), None);
    }
}
