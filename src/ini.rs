//! The original tool's INI dialect, parsed by hand because its rules are not any crate's:
//! the *first* occurrence of a section or key wins, comments are `;`/`#` at line start or
//! whitespace + `;` outside quotes, quotes stay in the value, and a line that begins with
//! blanks continues the previous value (blank and comment lines do not end a continuation).
//! `rust-ini` merges repeated sections, keeps the last key and does not report line numbers,
//! and every one of those would change what an existing configuration means.

/// One `key = value` with the line it started on (for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// Continuation lines are joined with `\n`, each trimmed.
    pub value: String,
    pub line: usize,
}

/// One `[section]` and its entries, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A parsed file: every section in file order, duplicates included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    pub sections: Vec<Section>,
}

/// A syntax error: the line number (1-based) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub reason: String,
}

impl Ini {
    /// The first section of that name (case-insensitive); later ones are ignored.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The first entry of `key` in the first section called `section`.
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.section(section)?.get(key)
    }
}

impl Section {
    /// The first entry of that key (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// Entries with the later duplicates of a key removed, in file order.
    pub fn unique_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            let first = self.entries[..i]
                .iter()
                .all(|earlier| !earlier.key.eq_ignore_ascii_case(&e.key));
            first.then_some(e)
        })
    }
}

/// Parses the whole file. CRLF line ends and a UTF-8 byte order mark are accepted.
pub fn parse(text: &str) -> Result<Ini, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ini = Ini::default();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if indented {
            if let Some(entry) = ini.sections.last_mut().and_then(|s| s.entries.last_mut()) {
                let more = strip_comment(trimmed).trim_end();
                if !more.is_empty() {
                    entry.value.push('\n');
                    entry.value.push_str(more);
                }
                continue;
            }
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(error(line, "section header without `]`"));
            };
            let after = rest[end + 1..].trim();
            if !after.is_empty() && !after.starts_with([';', '#']) {
                return Err(error(line, "text after the section header"));
            }
            ini.sections.push(Section {
                name: rest[..end].trim().to_string(),
                line,
                entries: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(error(
                line,
                "expected `key = value`, a [section] or a comment",
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(error(line, "empty key before `=`"));
        }
        let Some(section) = ini.sections.last_mut() else {
            return Err(error(line, "key outside of any [section]"));
        };
        section.entries.push(Entry {
            key: key.to_string(),
            value: strip_comment(value).trim().to_string(),
            line,
        });
    }
    Ok(ini)
}

fn error(line: usize, reason: &str) -> SyntaxError {
    SyntaxError {
        line,
        reason: reason.to_string(),
    }
}

/// Cuts a trailing `; comment` that follows white space outside quotes.
fn strip_comment(value: &str) -> &str {
    // Bytes, not chars: every character that matters is ASCII, and no byte of a multi-byte
    // character equals one.
    let mut quote: Option<u8> = None;
    let mut previous_blank = true;
    for (i, b) in value.bytes().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b';' && previous_blank => return &value[..i],
            None => {}
        }
        previous_blank = b == b' ' || b == b'\t';
    }
    value
}

/// The original's number rule: optional sign, `0x` hex or decimal digits up to the first
/// other character; no digits is 0 (`yes` is 0, `10 ; x` is 10). Saturates instead of wrapping.
pub fn parse_number(text: &str) -> i64 {
    let s = text.trim_start();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = match s.get(..2) {
        Some("0x" | "0X") => (16, &s[2..]),
        _ => (10, s),
    };
    let mut value: i64 = 0;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else { break };
        value = value.saturating_mul(radix as i64).saturating_add(d as i64);
    }
    if negative {
        value.saturating_neg()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(ini: &'a Ini, section: &str, key: &str) -> Option<&'a str> {
        ini.get(section, key).map(|e| e.value.as_str())
    }

    #[test]
    fn sections_and_keys_are_case_insensitive_and_first_wins() {
        let ini = parse("[OPTIONS]\nDsn = a\ndsn = b\n[options]\nVerify = x\n").unwrap();
        assert_eq!(value(&ini, "Options", "DSN"), Some("a"));
        assert_eq!(
            value(&ini, "options", "verify"),
            None,
            "only the first [Options] counts"
        );
    }

    #[test]
    fn comments_at_line_start_and_after_blanks_outside_quotes() {
        let text =
            "; top\n# also\n[Options]\nA = 1 ; note\nB = x;y\nC = 'a ; b' ; c\nD = \"p ; q\"\n";
        let ini = parse(text).unwrap();
        assert_eq!(value(&ini, "Options", "A"), Some("1"));
        assert_eq!(value(&ini, "Options", "B"), Some("x;y"));
        assert_eq!(value(&ini, "Options", "C"), Some("'a ; b'"));
        assert_eq!(value(&ini, "Options", "D"), Some("\"p ; q\""));
    }

    #[test]
    fn continuation_lines_survive_blank_and_comment_lines() {
        let text = "[Bounce]\nUserUnknown = line one\n  line two\n\n  ; comment\n\tline three ; c\nTooLong = t\n";
        let ini = parse(text).unwrap();
        assert_eq!(
            value(&ini, "Bounce", "UserUnknown"),
            Some("line one\nline two\nline three")
        );
        assert_eq!(value(&ini, "Bounce", "TooLong"), Some("t"));
    }

    #[test]
    fn indented_key_right_after_a_header_is_a_key() {
        let ini = parse("[Options]\n  Deliver = insert\n").unwrap();
        assert_eq!(value(&ini, "Options", "Deliver"), Some("insert"));
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let ini = parse("\u{feff}[Options]\r\nDSN = sqlite:x.db\r\n").unwrap();
        assert_eq!(value(&ini, "Options", "DSN"), Some("sqlite:x.db"));
    }

    #[test]
    fn syntax_errors_carry_their_line() {
        assert_eq!(parse("[Options]\nno equals sign\n").unwrap_err().line, 2);
        assert_eq!(parse("key = outside\n").unwrap_err().line, 1);
        assert_eq!(parse("\n[Options\n").unwrap_err().line, 2);
        assert_eq!(parse("[Options]\n= v\n").unwrap_err().line, 2);
    }

    #[test]
    fn values_keep_equals_signs_and_quotes() {
        let ini = parse("[Options]\nDSN = DSN=V;UID=dba;PWD=x\nV = '$local'\n").unwrap();
        assert_eq!(value(&ini, "Options", "DSN"), Some("DSN=V;UID=dba;PWD=x"));
        assert_eq!(value(&ini, "Options", "V"), Some("'$local'"));
    }

    #[test]
    fn unique_entries_drop_later_duplicates() {
        let ini = parse("[Environment]\nA = 1\nB = 2\na = 3\n").unwrap();
        let keys: Vec<_> = ini.sections[0]
            .unique_entries()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(keys, [("A", "1"), ("B", "2")]);
    }

    #[test]
    fn numbers_follow_the_original_rules() {
        for (text, want) in [
            ("10", 10),
            ("  10 ; x", 10),
            ("10abc", 10),
            ("-5", -5),
            ("+7", 7),
            ("0x10", 16),
            ("0XfF", 255),
            ("yes", 0),
            ("", 0),
            ("0x", 0),
            ("99999999999999999999999", i64::MAX),
            ("-99999999999999999999999", -i64::MAX),
        ] {
            assert_eq!(parse_number(text), want, "{text:?}");
        }
    }
}
