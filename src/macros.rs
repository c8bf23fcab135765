//! Macros (`$local`, `${domain}`, `$1`, …) and the one rule that keeps remote strings out of
//! SQL: a template is scanned once, and every macro use becomes a bound parameter. A quoted
//! literal that contains macros (`'${local}@$domain'`) becomes one parameter holding the
//! expanded literal, so configurations written for the original keep their meaning. Values
//! are data: they are never scanned for macros again.

use std::borrow::Cow;

/// A macro value or a bound parameter. The message and binary columns are bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
}

impl Value<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Text(t) => t.as_bytes(),
            Value::Bytes(b) => b,
        }
    }

    /// Text for places that need text (bounce lines, process arguments shown in logs).
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Value::Text(t) => Cow::Borrowed(t),
            Value::Bytes(b) => String::from_utf8_lossy(b),
        }
    }

    pub fn borrowed(&self) -> Value<'_> {
        match self {
            Value::Text(t) => Value::Text(Cow::Borrowed(t)),
            Value::Bytes(b) => Value::Bytes(Cow::Borrowed(b)),
        }
    }

    pub fn empty() -> Value<'static> {
        Value::Text(Cow::Borrowed(""))
    }
}

/// The macros defined for one delivery.
#[derive(Clone, Debug, Default)]
pub struct Macros<'a> {
    /// Lower-cased, prefix removed.
    pub local: &'a str,
    /// Lower-cased.
    pub domain: &'a str,
    pub sender: &'a str,
    /// The stored message; defined only while binding `Deliver`. It lives as long as the
    /// process (`Message::leak`), so a backend may lend it to another thread.
    pub message: Option<&'static [u8]>,
    /// The first row returned by `Verify`: `$1`, `$2`, …
    pub columns: &'a [Value<'static>],
    /// The recipient as the MTA gave it (`local@domain`).
    pub recipient: &'a str,
    /// qmail's address extension (`EXT`), empty elsewhere.
    pub ext: &'a str,
    /// `$message_id $subject $from $to $date $size`, once the message has been read.
    pub headers: Option<&'a crate::headers::Headers>,
}

impl<'a> Macros<'a> {
    /// The value of a macro, or `None` when it is not defined.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        let text = |s: &'a str| Some(Value::Text(Cow::Borrowed(s)));
        match name {
            "local" => text(self.local),
            "domain" => text(self.domain),
            "sender" => text(self.sender),
            "message" => self.message.map(|m| Value::Bytes(Cow::Borrowed(m))),
            "recipient" => text(self.recipient),
            "ext" => text(self.ext),
            _ if crate::headers::NAMES.contains(&name) => self.headers?.get(name).and_then(text),
            _ if name.bytes().all(|b| b.is_ascii_digit()) => {
                let n: usize = name.parse().ok()?;
                let column: &'a Value<'static> = self.columns.get(n.checked_sub(1)?)?;
                Some(column.borrowed())
            }
            _ => None,
        }
    }
}

/// A piece of text between macros, or a macro reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'t> {
    Text(&'t str),
    /// `name` without `$`/braces; `raw` is the reference as written (`$x` or `${x}`).
    Macro {
        name: &'t str,
        raw: &'t str,
    },
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// If `s` starts with a macro reference, its name and length.
fn macro_at(s: &str) -> Option<(&str, usize)> {
    let rest = s.strip_prefix('$')?;
    if let Some(inner) = rest.strip_prefix('{') {
        let end = inner.find('}')?;
        let name = &inner[..end];
        let valid = !name.is_empty() && name.bytes().all(is_name_byte);
        return valid.then_some((name, end + 3));
    }
    let len = rest.bytes().take_while(|&b| is_name_byte(b)).count();
    (len > 0).then_some((&rest[..len], len + 1))
}

/// Splits text into literal runs and macro references. A `$` not followed by a name is text.
pub fn tokens(s: &str) -> impl Iterator<Item = Token<'_>> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if let Some((name, len)) = macro_at(rest) {
            let raw = &rest[..len];
            rest = &rest[len..];
            return Some(Token::Macro { name, raw });
        }
        // Literal text up to the next `$` that starts a macro (a lone `$` stays text).
        let mut end = 1;
        while end < rest.len() {
            if rest.as_bytes()[end] == b'$' && macro_at(&rest[end..]).is_some() {
                break;
            }
            end += 1;
        }
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let text = &rest[..end];
        rest = &rest[end..];
        Some(Token::Text(text))
    })
}

/// Expands macros in plain text (bounce texts). Undefined macros become empty.
pub fn expand_text(s: &str, macros: &Macros<'_>) -> String {
    let mut out = String::with_capacity(s.len());
    for token in tokens(s) {
        match token {
            Token::Text(t) => out.push_str(t),
            Token::Macro { name, .. } => {
                if let Some(v) = macros.get(name) {
                    out.push_str(&v.to_text());
                }
            }
        }
    }
    out
}

/// How a backend writes a parameter marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `?` (SQLite, MySQL, ODBC).
    Question,
    /// `$1`, `$2`, … (PostgreSQL).
    Numbered,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Macro(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Sql(String),
    /// One bound parameter whose value is the concatenation of its parts.
    Bind(Vec<Part>),
}

/// A configured SQL statement, scanned once at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// A statement ready for a driver: SQL text with markers and the values to bind, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound<'a> {
    pub sql: String,
    pub params: Vec<Value<'a>>,
}

impl Template {
    /// Scans SQL: quoted literals (`'…'`, `"…"` with doubled quotes), `--` and `/* */`
    /// comments (macros inside comments stay text), and macros everywhere else.
    pub fn parse(sql: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = sql;
        while let Some(c) = rest.chars().next() {
            if c == '\'' || c == '"' {
                let (len, content) = quoted(rest, c)?;
                if tokens(&content).any(|t| matches!(t, Token::Macro { .. })) {
                    flush(&mut text, &mut pieces);
                    pieces.push(Piece::Bind(parts(&content)));
                } else {
                    text.push_str(&rest[..len]);
                }
                rest = &rest[len..];
            } else if rest.starts_with("--") {
                let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
                text.push_str(&rest[..len]);
                rest = &rest[len..];
            } else if rest.starts_with("/*") {
                let end = rest[2..].find("*/").ok_or("unterminated /* comment")?;
                let len = end + 4;
                text.push_str(&rest[..len]);
                rest = &rest[len..];
            } else if let Some((name, len)) = macro_at(rest) {
                flush(&mut text, &mut pieces);
                pieces.push(Piece::Bind(vec![Part::Macro(name.to_string())]));
                rest = &rest[len..];
            } else {
                // Plain text, up to the next character that may begin a literal, a comment
                // or a macro (one character at a time was a tenth of a delivery's parsing).
                let start = c.len_utf8();
                let len = rest[start..]
                    .find(['\'', '"', '-', '/', '$'])
                    .map_or(rest.len(), |i| start + i);
                text.push_str(&rest[..len]);
                rest = &rest[len..];
            }
        }
        flush(&mut text, &mut pieces);
        Ok(Template {
            source: sql.to_string(),
            pieces,
        })
    }

    /// The statement as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template refers to a macro (e.g. `message`, to know if it needs the body).
    pub fn uses(&self, name: &str) -> bool {
        self.pieces.iter().any(|p| match p {
            Piece::Bind(parts) => parts
                .iter()
                .any(|x| matches!(x, Part::Macro(n) if n == name)),
            Piece::Sql(_) => false,
        })
    }

    /// Number of parameters `bind` produces.
    pub fn param_count(&self) -> usize {
        self.pieces
            .iter()
            .filter(|p| matches!(p, Piece::Bind(_)))
            .count()
    }

    /// SQL text with markers in `style`, and the values to bind. Undefined macros bind ''.
    pub fn bind<'a>(&self, macros: &Macros<'a>, style: Placeholder) -> Bound<'a> {
        let mut sql = String::with_capacity(self.source.len());
        let mut params = Vec::with_capacity(self.param_count());
        for piece in &self.pieces {
            match piece {
                Piece::Sql(s) => sql.push_str(s),
                Piece::Bind(parts) => {
                    params.push(join(parts, macros));
                    match style {
                        Placeholder::Question => sql.push('?'),
                        Placeholder::Numbered => {
                            sql.push('$');
                            sql.push_str(&params.len().to_string());
                        }
                    }
                }
            }
        }
        Bound { sql, params }
    }
}

fn flush(text: &mut String, pieces: &mut Vec<Piece>) {
    if !text.is_empty() {
        pieces.push(Piece::Sql(std::mem::take(text)));
    }
}

/// Length of the quoted literal at the start of `s`, and its content with doubled quotes undone.
fn quoted(s: &str, quote: char) -> Result<(usize, String), String> {
    let mut content = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if matches!(chars.peek(), Some(&(_, next)) if next == quote) {
                chars.next();
                content.push(quote);
                continue;
            }
            return Ok((i + 1, content));
        }
        content.push(c);
    }
    Err(format!("unterminated {quote}…{quote} literal"))
}

fn parts(content: &str) -> Vec<Part> {
    tokens(content)
        .map(|t| match t {
            Token::Text(s) => Part::Text(s.to_string()),
            Token::Macro { name, .. } => Part::Macro(name.to_string()),
        })
        .collect()
}

/// The value of one parameter: a lone macro keeps its type (bytes stay bytes, no copy);
/// a literal with text around macros is concatenated, as bytes if any part is bytes.
fn join<'a>(parts: &[Part], macros: &Macros<'a>) -> Value<'a> {
    if let [Part::Macro(name)] = parts {
        return macros.get(name).unwrap_or(Value::empty());
    }
    let values: Vec<Option<Value<'a>>> = parts
        .iter()
        .map(|p| match p {
            Part::Text(_) => None,
            Part::Macro(name) => Some(macros.get(name).unwrap_or(Value::empty())),
        })
        .collect();
    let pieces = || {
        parts
            .iter()
            .zip(&values)
            .map(|(part, value)| match (part, value) {
                (Part::Text(t), _) => t.as_bytes(),
                (_, Some(v)) => v.as_bytes(),
                (_, None) => &[],
            })
    };
    if values.iter().flatten().all(|v| matches!(v, Value::Text(_))) {
        let bytes: Vec<u8> = pieces().flatten().copied().collect();
        // Only text went in, so the concatenation is valid UTF-8.
        Value::Text(Cow::Owned(String::from_utf8(bytes).unwrap_or_default()))
    } else {
        Value::Bytes(Cow::Owned(pieces().flatten().copied().collect()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn text(s: &str) -> Value<'_> {
        Value::Text(Cow::Borrowed(s))
    }

    /// alice@example.com from bob@example.org, with these Verify columns.
    pub(crate) fn macros<'a>(columns: &'a [Value<'static>]) -> Macros<'a> {
        Macros {
            local: "alice",
            domain: "example.com",
            sender: "bob@example.org",
            columns,
            ..Macros::default()
        }
    }

    fn bind(sql: &str, m: &Macros<'_>) -> (String, Vec<String>) {
        let b = Template::parse(sql).unwrap().bind(m, Placeholder::Question);
        let params = b.params.iter().map(|v| v.to_text().into_owned()).collect();
        (b.sql, params)
    }

    #[test]
    fn quoted_macro_becomes_one_parameter() {
        let m = macros(&[]);
        let (sql, params) = bind("select 1 from u where name = '$local'", &m);
        assert_eq!(sql, "select 1 from u where name = ?");
        assert_eq!(params, ["alice"]);
    }

    #[test]
    fn literal_with_several_macros_and_text_is_expanded_into_one_value() {
        let m = macros(&[]);
        let (sql, params) = bind("select * from u where a = '${local}@$domain'", &m);
        assert_eq!(sql, "select * from u where a = ?");
        assert_eq!(params, ["alice@example.com"]);
    }

    #[test]
    fn bare_macros_and_columns_become_parameters() {
        let cols = [Value::Text("42".into()), Value::Text("Inbox".into())];
        let m = macros(&cols);
        let (sql, params) = bind("call NEW_MAIL($1, $2, $sender)", &m);
        assert_eq!(sql, "call NEW_MAIL(?, ?, ?)");
        assert_eq!(params, ["42", "Inbox", "bob@example.org"]);
    }

    #[test]
    fn numbered_placeholders_for_postgres() {
        let m = macros(&[]);
        let b = Template::parse("insert into m values ('$local', $domain, '$sender')")
            .unwrap()
            .bind(&m, Placeholder::Numbered);
        assert_eq!(b.sql, "insert into m values ($1, $2, $3)");
    }

    #[test]
    fn message_is_bound_as_bytes_without_copy() {
        let body = b"a\0b\r\n\xff";
        let mut m = macros(&[]);
        m.message = Some(body);
        let b = Template::parse("insert into m values ($message)")
            .unwrap()
            .bind(&m, Placeholder::Question);
        assert_eq!(b.params, [Value::Bytes(Cow::Borrowed(&body[..]))]);
        assert!(matches!(&b.params[0], Value::Bytes(Cow::Borrowed(_))));
    }

    #[test]
    fn message_inside_a_literal_with_text_stays_bytes() {
        let mut m = macros(&[]);
        m.message = Some(b"\xffz");
        let b = Template::parse("select 'x$message'")
            .unwrap()
            .bind(&m, Placeholder::Question);
        assert_eq!(b.params, [Value::Bytes(Cow::Owned(b"x\xffz".to_vec()))]);
    }

    #[test]
    fn values_are_never_expanded_again() {
        let m = Macros {
            local: "al$domain",
            sender: "$local ${sender}",
            ..macros(&[])
        };
        let (_, params) = bind("select '$local', $sender", &m);
        assert_eq!(params, ["al$domain", "$local ${sender}"]);
        assert_eq!(expand_text("$local", &m), "al$domain");
    }

    #[test]
    fn injection_attempts_stay_values() {
        let m = Macros {
            local: "x' or '1'='1",
            sender: "'); drop table mail; --",
            ..macros(&[])
        };
        let (sql, params) = bind("select 1 from u where n = '$local' and s = '$sender'", &m);
        assert_eq!(sql, "select 1 from u where n = ? and s = ?");
        assert_eq!(params, ["x' or '1'='1", "'); drop table mail; --"]);
    }

    #[test]
    fn undefined_macros_bind_empty_and_lone_dollars_are_text() {
        let m = macros(&[]);
        let (sql, params) = bind("select '$nothing', $3, 'cost: $', $ , '${}'", &m);
        assert_eq!(sql, "select ?, ?, 'cost: $', $ , '${}'");
        assert_eq!(params, ["", ""]);
    }

    #[test]
    fn doubled_quotes_inside_literals() {
        let m = macros(&[]);
        let (sql, params) = bind("select 'it''s $local', 'plain '' text'", &m);
        assert_eq!(sql, "select ?, 'plain '' text'");
        assert_eq!(params, ["it's alice"]);
    }

    #[test]
    fn double_quoted_literals_bind_too() {
        let m = macros(&[]);
        let (sql, params) = bind("select \"$local\"", &m);
        assert_eq!(sql, "select ?");
        assert_eq!(params, ["alice"]);
    }

    #[test]
    fn comments_keep_their_dollars() {
        let m = macros(&[]);
        let (sql, params) = bind("select $local -- $domain\n, 1 /* $sender */", &m);
        assert_eq!(sql, "select ? -- $domain\n, 1 /* $sender */");
        assert_eq!(params, ["alice"]);
    }

    #[test]
    fn braces_and_name_characters() {
        let m = macros(&[]);
        let (sql, params) = bind("select ${local}x, $local_x, $domain.", &m);
        assert_eq!(sql, "select ?x, ?, ?.");
        assert_eq!(params, ["alice", "", "example.com"]);
    }

    #[test]
    fn unterminated_literals_and_comments_are_errors() {
        assert!(Template::parse("select 'abc").is_err());
        assert!(Template::parse("select \"abc").is_err());
        assert!(Template::parse("select /* abc").is_err());
    }

    #[test]
    fn unicode_text_around_macros() {
        let m = macros(&[]);
        let (sql, params) = bind("select 'é$local€', 'ü'", &m);
        assert_eq!(sql, "select ?, 'ü'");
        assert_eq!(params, ["éalice€"]);
        assert_eq!(expand_text("¤$local¤$", &m), "¤alice¤$");
    }

    #[test]
    fn tokens_split_text_and_references() {
        let got: Vec<_> = tokens("a$b${c}$").collect();
        assert_eq!(
            got,
            [
                Token::Text("a"),
                Token::Macro {
                    name: "b",
                    raw: "$b"
                },
                Token::Macro {
                    name: "c",
                    raw: "${c}"
                },
                Token::Text("$"),
            ]
        );
    }

    #[test]
    fn envelope_and_header_macros() {
        let message: &[u8] = b"Subject: Hi\nMessage-ID: <x@y>\n\nb";
        let headers = crate::headers::Headers::parse(message);
        let m = Macros {
            recipient: "Alice@Example.com",
            ext: "info",
            headers: Some(&headers),
            ..macros(&[])
        };
        let (sql, params) = bind(
            "select $recipient, '$ext', $subject, '<$message_id>', $size",
            &m,
        );
        assert_eq!(sql, "select ?, ?, ?, ?, ?");
        let size = message.len().to_string();
        assert_eq!(
            params,
            ["Alice@Example.com", "info", "Hi", "<x@y>", size.as_str()]
        );
        assert_eq!(
            macros(&[]).get("subject"),
            None,
            "undefined until the message is read"
        );
    }

    #[test]
    fn columns_are_numbered_from_one() {
        let cols = [Value::Text(Cow::Borrowed("x"))];
        let m = macros(&cols);
        assert_eq!(m.get("1"), Some(text("x")));
        assert_eq!(m.get("0"), None);
        assert_eq!(m.get("2"), None);
        assert!(Template::parse("select $message").unwrap().uses("message"));
        assert!(
            !Template::parse("select '$messages'")
                .unwrap()
                .uses("message")
        );
    }
}
