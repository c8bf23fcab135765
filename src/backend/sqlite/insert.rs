//! Recognises the one shape of `Deliver` whose message may be written after the row:
//! `INSERT [OR …] INTO table [(columns)] VALUES (…, ?, …)`, one row, the message marker a
//! value of its own. Anything else (a function around the marker, `SELECT`, several rows,
//! `ON CONFLICT`, `RETURNING`, a marker the configuration wrote itself) is `None`, and the
//! statement runs as written. Only the configuration's SQL is read here, never a value.

/// Where a single-row `INSERT` puts one of its bound values.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// `main`, `temp` or an attached database, when the statement names one.
    pub schema: Option<String>,
    pub table: String,
    /// The column list's name for the value, when the statement has a column list.
    pub column: Option<String>,
    /// The value's position in `VALUES (…)`, from 0.
    pub position: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A bare word: keyword or identifier.
    Word(String),
    /// A quoted identifier (`"…"`, `[…]`, `` `…` ``), unquoted.
    Quoted(String),
    /// A bare `?` marker.
    Marker,
    /// A numbered or named marker (`?1`, `:a`, `@a`, `$a`): the configuration's own.
    Named,
    Punct(char),
    /// Anything else: string literals, numbers, operators.
    Other,
}

/// The target of the bound value number `marker` (from 0; markers counted in order) of
/// `sql`, which must have exactly `markers` bare `?` markers and no other kind.
pub fn target(sql: &str, marker: usize, markers: usize) -> Option<Target> {
    let tokens = tokenize(sql)?;
    if tokens.contains(&Token::Named)
        || tokens.iter().filter(|t| **t == Token::Marker).count() != markers
    {
        return None;
    }
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
    };
    if p.keyword("REPLACE") {
    } else if p.keyword("INSERT") {
        if p.keyword("OR") {
            p.name()?;
        }
    } else {
        return None;
    }
    p.expect_keyword("INTO")?;
    let first = p.name()?;
    let (schema, table) = if p.punct('.') {
        (Some(first), p.name()?)
    } else {
        (None, first)
    };
    if p.keyword("AS") {
        p.name()?;
    }
    let mut columns = Vec::new();
    if p.punct('(') {
        loop {
            columns.push(p.name()?);
            if p.punct(')') {
                break;
            }
            p.expect_punct(',')?;
        }
    }
    p.expect_keyword("VALUES")?;
    p.expect_punct('(')?;
    let values = p.values()?;
    p.punct(';');
    if p.at != tokens.len() {
        return None;
    }
    // The marker must be a whole value; count the markers before it.
    let mut seen = 0;
    let mut position = None;
    for (i, value) in values.iter().enumerate() {
        if let [Token::Marker] = value {
            if seen == marker {
                position = Some(i);
            }
        }
        seen += value.iter().filter(|t| **t == Token::Marker).count();
    }
    let position = position?;
    if !columns.is_empty() && columns.len() != values.len() {
        return None;
    }
    Some(Target {
        schema,
        table,
        column: columns.get(position).cloned(),
        position,
    })
}

/// Whether `sql` has one of `words` as a bare word (not inside a literal, a quoted name or a
/// comment), ignoring case; `true` when it cannot be read, so that a doubt refuses.
pub fn mentions(sql: &str, words: &[&str]) -> bool {
    tokenize(sql).is_none_or(|tokens| {
        tokens
            .iter()
            .any(|t| matches!(t, Token::Word(w) if words.iter().any(|k| w.eq_ignore_ascii_case(k))))
    })
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
}

impl<'t> Parser<'t> {
    fn keyword(&mut self, word: &str) -> bool {
        match self.tokens.get(self.at) {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Option<()> {
        self.keyword(word).then_some(())
    }

    fn punct(&mut self, c: char) -> bool {
        if self.tokens.get(self.at) == Some(&Token::Punct(c)) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect_punct(&mut self, c: char) -> Option<()> {
        self.punct(c).then_some(())
    }

    fn name(&mut self) -> Option<String> {
        let name = match self.tokens.get(self.at)? {
            Token::Word(w) | Token::Quoted(w) => w.clone(),
            _ => return None,
        };
        self.at += 1;
        Some(name)
    }

    /// The values of one parenthesised row, its opening `(` already read: each value's
    /// tokens, split at the commas outside nested parentheses.
    fn values(&mut self) -> Option<Vec<&'t [Token]>> {
        let mut values = Vec::new();
        let mut depth = 0usize;
        let mut start = self.at;
        let tokens = self.tokens;
        while let Some(token) = tokens.get(self.at) {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') if depth == 0 => {
                    values.push(&tokens[start..self.at]);
                    self.at += 1;
                    return Some(values);
                }
                Token::Punct(')') => depth -= 1,
                Token::Punct(',') if depth == 0 => {
                    values.push(&tokens[start..self.at]);
                    start = self.at + 1;
                }
                _ => {}
            }
            self.at += 1;
        }
        None
    }
}

/// SQLite's lexical rules, as far as this needs them; `None` for an unterminated literal
/// or comment.
fn tokenize(sql: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        let len = if c.is_whitespace() {
            c.len_utf8()
        } else if rest.starts_with("--") {
            rest.find('\n').map_or(rest.len(), |i| i + 1)
        } else if let Some(comment) = rest.strip_prefix("/*") {
            comment.find("*/")? + 4
        } else if let Some(close) = match c {
            '\'' => Some('\''),
            '"' => Some('"'),
            '`' => Some('`'),
            '[' => Some(']'),
            _ => None,
        } {
            let (len, text) = quoted(rest, close)?;
            tokens.push(if c == '\'' {
                Token::Other
            } else {
                Token::Quoted(text)
            });
            len
        } else if c == '?' {
            let digits = rest[1..].bytes().take_while(u8::is_ascii_digit).count();
            tokens.push(if digits == 0 {
                Token::Marker
            } else {
                Token::Named
            });
            1 + digits
        } else if matches!(c, ':' | '@' | '$')
            && rest[1..].starts_with(|n: char| n.is_alphanumeric() || n == '_')
        {
            tokens.push(Token::Named);
            1
        } else if c.is_alphabetic() || c == '_' || !c.is_ascii() {
            let len = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()))
                .unwrap_or(rest.len());
            tokens.push(Token::Word(rest[..len].to_string()));
            len
        } else if matches!(c, '(' | ')' | ',' | '.' | ';') {
            tokens.push(Token::Punct(c));
            1
        } else {
            // Numbers and operators: none may stand next to the message in the accepted
            // shape, so one token per character suffices.
            tokens.push(Token::Other);
            c.len_utf8()
        };
        rest = &rest[len..];
    }
    Some(tokens)
}

/// Length of the quoted text at the start of `s` (opening quote included) and its content,
/// a doubled closing quote standing for one (SQLite's rule; `[…]` cannot contain `]`).
fn quoted(s: &str, close: char) -> Option<(usize, String)> {
    let mut text = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == close {
            if close != ']' && chars.peek().is_some_and(|&(_, n)| n == close) {
                chars.next();
                text.push(c);
                continue;
            }
            return Some((i + c.len_utf8(), text));
        }
        text.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sql: &str, marker: usize) -> Option<Target> {
        let markers = sql.matches('?').count();
        target(sql, marker, markers)
    }

    #[test]
    fn the_message_as_a_value_of_a_single_row_insert() {
        let t = at(
            "INSERT INTO message (mailbox_id, folder, sender, body)\n    VALUES (?, ?, ?, ?)",
            3,
        )
        .unwrap();
        assert_eq!(t.schema, None);
        assert_eq!(t.table, "message");
        assert_eq!(t.column.as_deref(), Some("body"));
        assert_eq!(t.position, 3);

        let t = at(
            "insert or abort into main.\"Mail Box\" values (1, ?, 'x', ?);",
            1,
        )
        .unwrap();
        assert_eq!(t.schema.as_deref(), Some("main"));
        assert_eq!(t.table, "Mail Box");
        assert_eq!(t.column, None);
        assert_eq!(t.position, 3);

        let t = at(
            "REPLACE INTO [m] AS x (`a``b`, c) VALUES (coalesce(?, 'a,b'), ?) -- end",
            1,
        )
        .unwrap();
        assert_eq!(t.table, "m");
        assert_eq!(t.column.as_deref(), Some("c"));
        // Markers inside an earlier value still count.
        assert_eq!(t.position, 1);
    }

    #[test]
    fn any_other_shape_is_refused() {
        for sql in [
            // The value is transformed, or it decides something.
            "INSERT INTO m (a, b) VALUES (?, upper(?))",
            "INSERT INTO m (a, b) VALUES (?, CAST(? AS BLOB))",
            "INSERT INTO m (a, b) VALUES (?, ? || '')",
            "INSERT INTO m (a, b) VALUES (?, (?))",
            "INSERT INTO m (a, b) SELECT ?, ? WHERE 1",
            "INSERT INTO m (a, b) VALUES (?, ?) RETURNING b",
            "INSERT INTO m (a, b) VALUES (?, ?) ON CONFLICT DO UPDATE SET b = excluded.b",
            "INSERT INTO m (a, b) VALUES (1, 2), (?, ?)",
            "WITH x AS (SELECT 1) INSERT INTO m (a, b) VALUES (?, ?)",
            "UPDATE m SET b = ? WHERE a = ?",
            "CALL deliver(?, ?)",
            // Column list and values disagree.
            "INSERT INTO m (a) VALUES (?, ?)",
            // Unterminated.
            "INSERT INTO m (a, b) VALUES (?, ?",
            "INSERT INTO m (a, b) VALUES (?, ?) /* x",
            "INSERT INTO m ('a', b) VALUES (?, ?)",
        ] {
            assert_eq!(at(sql, 1), None, "{sql}");
        }
    }

    #[test]
    fn keywords_are_found_outside_literals_and_quoted_names() {
        let words = ["CHECK", "AS"];
        assert!(mentions("CREATE TABLE m (a INT check (a > 0))", &words));
        assert!(mentions("CREATE TABLE m (a INT, b AS (a + 1))", &words));
        assert!(!mentions(
            "CREATE TABLE m (\"check\" INT, [as] TEXT, c DEFAULT 'as')",
            &words
        ));
        assert!(!mentions("CREATE TABLE m (checked INT) -- check", &words));
        assert!(mentions("CREATE TABLE m (a 'unterminated)", &words));
    }

    #[test]
    fn markers_the_configuration_wrote_itself_are_refused() {
        // Bound values and bare markers would no longer correspond.
        assert_eq!(target("INSERT INTO m VALUES (?, ?, ?)", 1, 2), None);
        for sql in [
            "INSERT INTO m VALUES (?1, ?)",
            "INSERT INTO m VALUES (:a, ?)",
            "INSERT INTO m VALUES (@a, ?)",
        ] {
            assert_eq!(target(sql, 0, 1), None, "{sql}");
        }
        // A marker inside a literal or a comment is text.
        let t = target("INSERT INTO m VALUES ('?', /* ? */ ?) -- ?", 0, 1).unwrap();
        assert_eq!(t.position, 1);
    }
}
