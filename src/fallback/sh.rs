//! An sh script read as the shell reads it, as far as the Fallback needs: where each macro
//! stands (for the rewrite: quoted, unquoted, inside `'…'`; for the check: in arithmetic,
//! where bash runs code in a value), and which words make up each simple command, those
//! of command substitutions and here-documents included.
//!
//! Quotes, backslashes, `$(…)`, backquotes, `${…}`, `$((…))` and `((…))`, subscripts,
//! comments and here-documents are followed as POSIX sh and bash nest them. Not followed: a
//! `case` pattern's lone `)` inside `$(…)` (read as the substitution's end), and aliases.

use crate::macros::{Token, tokens};

/// Where a macro stands in the script, which decides how its variable is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// Outside quotes: `"${VAR}"`, so that the value stays one word and no pattern.
    Unquoted,
    /// Inside `"…"` or an expanding here-document: `${VAR}` as it stands.
    Double,
    /// Inside `'…'`: the quote closed, `"${VAR}"`, the quote reopened.
    Single,
    /// An arithmetic expression (`$((…))`, `((…))`), a subscript (`a[…]`), an offset
    /// (`${x:…}`) or a parameter's name: bash evaluates the value there as an expression,
    /// and runs the command substitutions in it.
    Arithmetic,
    /// Where the shell expands nothing: a comment, a here-document with a quoted delimiter.
    Inert,
}

/// What a piece of the script is to the command it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Text of the current word.
    Text,
    /// Quoting or expansion syntax: the current word goes on, without this text.
    Syntax,
    /// A blank or a redirection operator: the current word ends.
    Blank,
    /// `<<` or `<<-`: the current word ends, and a here-document is declared, read by
    /// the current command.
    Redirect,
    /// `;`, `&`, `|`, a newline or a parenthesis: the current command ends.
    End,
    /// A command substitution opens (`$(`, a backquote): commands of its own, nested in
    /// the current word, or in a here-document's text.
    Open { in_document: bool },
    /// It closes.
    Close,
    /// No part of any command: a comment, a here-document's text.
    Skip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Frame {
    Single,
    Double,
    /// `$(…)`, with the count of parentheses opened inside it.
    Subst(u32),
    Backquote,
    /// `${…}`: its name and operator (`word` false), then a word read like its surroundings.
    Brace {
        word: bool,
        name: usize,
    },
    /// An arithmetic context until `end` (and the parentheses opened inside it).
    Arith {
        end: char,
        depth: u32,
    },
    Comment,
    Heredoc(Heredoc),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Heredoc {
    /// The count of here-documents declared before it.
    index: usize,
    delimiter: String,
    quoted: bool,
    /// `<<-`: leading tabs of each line are not part of it.
    tabs: bool,
    line: String,
}

/// A reader of one script, fed its text a piece at a time (the text between macros).
#[derive(Default)]
pub(super) struct Reader {
    frames: Vec<Frame>,
    escaped: bool,
    /// The current word has begun, and all of it so far is a name (`a` in `a[1]=x`).
    word: bool,
    name: bool,
    /// After `<<`: the delimiter word being read.
    delimiter: Option<Heredoc>,
    /// Here-documents whose text begins at the next newline.
    pending: Vec<Heredoc>,
    declared: usize,
}

impl Reader {
    /// Reads `text`, calling `each` with every piece of it (a character, or an operator of
    /// two or three) and what it is.
    pub(super) fn read(&mut self, text: &str, mut each: impl FnMut(&str, Step)) {
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            let collecting = self.delimiter.is_some();
            // A here-document's text is no command's words, but its substitutions are commands.
            let in_document = self.document().is_some();
            let (len, step) = match self.step(rest) {
                (len, Step::Open { .. }) if in_document => (len, Step::Open { in_document }),
                (len, _) if in_document => (len, Step::Skip),
                step => step,
            };
            let len = len.max(rest.chars().next().map_or(1, char::len_utf8));
            let piece = &rest[..len];
            // A here-document's delimiter: its text, and whether any of it was quoted.
            if let Some(doc) = self.delimiter.as_mut().filter(|_| collecting) {
                match step {
                    Step::Text => doc.delimiter.push_str(piece),
                    Step::Syntax => doc.quoted |= matches!(piece, "'" | "\"" | "\\"),
                    _ => {}
                }
            }
            each(piece, step);
            at += len;
        }
    }

    /// Where a macro read now stands; the macro is then part of the current word.
    pub(super) fn place_macro(&mut self, raw: &str) -> (Place, bool) {
        let escaped = std::mem::take(&mut self.escaped);
        let place = self.place();
        if let Some(Frame::Heredoc(doc)) = self.frames.last_mut() {
            doc.line.push_str(raw);
        }
        if let Some(Frame::Brace { name, .. }) = self.frames.last_mut() {
            *name += 1;
        }
        (self.word, self.name) = (true, false);
        (place, escaped)
    }

    /// The here-document whose text is being read (outside any command substitution in it),
    /// by the order of declaration.
    fn document(&self) -> Option<usize> {
        self.frames.iter().rev().find_map(|f| match f {
            Frame::Heredoc(doc) => Some(Some(doc.index)),
            Frame::Subst(_) | Frame::Backquote => Some(None),
            _ => None,
        })?
    }

    fn place(&self) -> Place {
        let mut quote = None;
        for frame in self.frames.iter().rev() {
            match frame {
                Frame::Comment => return Place::Inert,
                Frame::Heredoc(doc) if doc.quoted => return Place::Inert,
                Frame::Heredoc(_) => return quote.unwrap_or(Place::Double),
                Frame::Arith { .. } | Frame::Brace { word: false, .. } => {
                    return Place::Arithmetic;
                }
                Frame::Single => _ = quote.get_or_insert(Place::Single),
                Frame::Double => _ = quote.get_or_insert(Place::Double),
                Frame::Brace { word: true, .. } => {}
                Frame::Subst(_) | Frame::Backquote => return quote.unwrap_or(Place::Unquoted),
            }
        }
        quote.unwrap_or(Place::Unquoted)
    }

    /// One piece at the start of `rest`: its length in bytes (0 for one character) and
    /// what it is.
    fn step(&mut self, rest: &str) -> (usize, Step) {
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or('\0');
        let (n1, n2) = (chars.next(), chars.next());
        if std::mem::take(&mut self.escaped) {
            if let Some(Frame::Heredoc(doc)) = self.frames.last_mut() {
                doc.line.push(c);
                return (0, Step::Skip);
            }
            self.word = true;
            self.name = false;
            return (0, if c == '\n' { Step::Syntax } else { Step::Text });
        }
        match self.frames.last_mut() {
            Some(Frame::Comment) if c == '\n' => {
                self.frames.pop();
                self.newline()
            }
            Some(Frame::Comment) => (0, Step::Skip),
            Some(Frame::Single) if c == '\'' => {
                self.frames.pop();
                (0, Step::Syntax)
            }
            Some(Frame::Single) => (0, Step::Text),
            Some(Frame::Heredoc(doc)) if c == '\n' => {
                let line = std::mem::take(&mut doc.line);
                let line = if doc.tabs {
                    line.trim_start_matches('\t')
                } else {
                    &line
                };
                if line == doc.delimiter {
                    self.frames.pop();
                    self.next_heredoc();
                }
                (0, Step::Skip)
            }
            Some(Frame::Heredoc(doc)) if doc.quoted => {
                doc.line.push(c);
                (0, Step::Skip)
            }
            Some(Frame::Heredoc(doc)) => {
                doc.line.push(c);
                match c {
                    '\\' => {
                        self.escaped = true;
                        (0, Step::Skip)
                    }
                    '$' | '`' => self.expansion(c, n1, n2).unwrap_or((0, Step::Skip)),
                    _ => (0, Step::Skip),
                }
            }
            Some(Frame::Double) => {
                self.word = true;
                match c {
                    '"' => {
                        self.frames.pop();
                        (0, Step::Syntax)
                    }
                    '\\' => {
                        self.escaped = true;
                        (0, Step::Syntax)
                    }
                    _ => self.expansion(c, n1, n2).unwrap_or((0, Step::Text)),
                }
            }
            Some(Frame::Brace { word: false, name }) => {
                let first = *name == 0;
                *name += 1;
                match c {
                    '}' => {
                        self.frames.pop();
                        (0, Step::Syntax)
                    }
                    '[' => {
                        self.frames.push(Frame::Arith { end: ']', depth: 0 });
                        (0, Step::Syntax)
                    }
                    ':' if matches!(n1, Some('-' | '=' | '+' | '?')) => {
                        self.frames.pop();
                        self.frames.push(Frame::Brace {
                            word: true,
                            name: 1,
                        });
                        (2, Step::Syntax)
                    }
                    // `${x:offset:length}`: arithmetic up to the closing brace.
                    ':' => {
                        self.frames.pop();
                        self.frames.push(Frame::Arith { end: '}', depth: 0 });
                        (0, Step::Syntax)
                    }
                    '-' | '=' | '+' | '?' | '#' | '%' | '/' | '^' | ',' | '@' if !first => {
                        self.frames.pop();
                        self.frames.push(Frame::Brace {
                            word: true,
                            name: 1,
                        });
                        (0, Step::Syntax)
                    }
                    _ => (0, Step::Syntax),
                }
            }
            Some(Frame::Brace { word: true, .. }) => match c {
                '}' => {
                    self.frames.pop();
                    (0, Step::Syntax)
                }
                _ => self.word_syntax(c, n1, n2),
            },
            Some(Frame::Arith { end, depth }) => {
                match c {
                    '(' => *depth += 1,
                    ')' if *depth > 0 => *depth -= 1,
                    ')' if *end == ')' && n1 == Some(')') => {
                        self.frames.pop();
                        return (2, Step::Syntax);
                    }
                    c if c == *end && *depth == 0 => {
                        self.frames.pop();
                        return (0, Step::Syntax);
                    }
                    _ => return self.word_syntax(c, n1, n2),
                }
                (0, Step::Text)
            }
            Some(Frame::Subst(_) | Frame::Backquote) | None => self.command(c, n1, n2),
        }
    }

    /// A character where commands are read: outside quotes, in `$(…)` or backquotes.
    fn command(&mut self, c: char, n1: Option<char>, n2: Option<char>) -> (usize, Step) {
        match c {
            ' ' | '\t' => self.blank(Step::Blank),
            '\n' => {
                self.end_delimiter();
                self.newline()
            }
            ';' | '&' | '|' => self.blank(Step::End),
            '#' if !self.word => {
                self.frames.push(Frame::Comment);
                (0, Step::Skip)
            }
            '(' if !self.word && n1 == Some('(') => {
                self.frames.push(Frame::Arith { end: ')', depth: 0 });
                (2, Step::Syntax)
            }
            '(' => {
                if let Some(Frame::Subst(depth)) = self.frames.last_mut() {
                    *depth += 1;
                }
                self.blank(Step::End)
            }
            ')' => match self.frames.last_mut() {
                Some(Frame::Subst(0)) => {
                    self.end_delimiter();
                    self.frames.pop();
                    (self.word, self.name) = (true, false);
                    (0, Step::Close)
                }
                Some(Frame::Subst(depth)) => {
                    *depth -= 1;
                    self.blank(Step::End)
                }
                _ => self.blank(Step::End),
            },
            '`' if self.frames.last() == Some(&Frame::Backquote) => {
                self.end_delimiter();
                self.frames.pop();
                (self.word, self.name) = (true, false);
                (0, Step::Close)
            }
            // A subscript: `a[…]=value`, or `[…]=value` in a compound assignment.
            // (A piece of text ends only before a macro: `[` then is followed by something.)
            '[' if self.name || (!self.word && !matches!(n1, Some(' ' | '\t' | '\n' | '['))) => {
                self.word = true;
                self.frames.push(Frame::Arith { end: ']', depth: 0 });
                (0, Step::Syntax)
            }
            '<' if n1 == Some('<') && n2 == Some('<') => {
                self.blank(Step::Blank);
                (3, Step::Blank)
            }
            '<' if n1 == Some('<') => {
                let tabs = n2 == Some('-');
                self.end_delimiter();
                self.blank(Step::Blank);
                self.delimiter = Some(Heredoc {
                    index: self.declared,
                    delimiter: String::new(),
                    quoted: false,
                    tabs,
                    line: String::new(),
                });
                self.declared += 1;
                (if tabs { 3 } else { 2 }, Step::Redirect)
            }
            '<' | '>' => self.blank(Step::Blank),
            _ => {
                let step = self.word_syntax(c, n1, n2);
                if step.1 == Step::Text {
                    self.name = if self.word {
                        self.name && (c.is_ascii_alphanumeric() || c == '_')
                    } else {
                        c.is_ascii_alphabetic() || c == '_'
                    };
                }
                self.word = true;
                step
            }
        }
    }

    /// Quotes, a backslash and expansions, as they work in a word (outside `"…"`).
    fn word_syntax(&mut self, c: char, n1: Option<char>, n2: Option<char>) -> (usize, Step) {
        let in_double = self.frames.iter().rev().find_map(|f| match f {
            Frame::Double => Some(true),
            Frame::Subst(_) | Frame::Backquote | Frame::Heredoc(_) => Some(false),
            _ => None,
        }) == Some(true);
        let step = match c {
            '\'' if !in_double => {
                self.frames.push(Frame::Single);
                (0, Step::Syntax)
            }
            '"' => {
                self.frames.push(Frame::Double);
                (0, Step::Syntax)
            }
            '\\' => {
                self.escaped = true;
                (0, Step::Syntax)
            }
            _ => self.expansion(c, n1, n2).unwrap_or((0, Step::Text)),
        };
        if step.1 != Step::Text {
            self.name = false;
        }
        step
    }

    /// `$(`, `$((`, `${` or a backquote, where the shell expands them.
    fn expansion(&mut self, c: char, n1: Option<char>, n2: Option<char>) -> Option<(usize, Step)> {
        let step = match (c, n1, n2) {
            ('$', Some('('), Some('(')) => {
                self.frames.push(Frame::Arith { end: ')', depth: 0 });
                (3, Step::Syntax)
            }
            ('$', Some('('), _) => {
                self.frames.push(Frame::Subst(0));
                (2, Step::Open { in_document: false })
            }
            ('$', Some('{'), _) => {
                self.frames.push(Frame::Brace {
                    word: false,
                    name: 0,
                });
                (2, Step::Syntax)
            }
            ('`', _, _) => {
                self.frames.push(Frame::Backquote);
                (0, Step::Open { in_document: false })
            }
            _ => return None,
        };
        if matches!(step.1, Step::Open { .. }) {
            (self.word, self.name) = (false, false);
        }
        Some(step)
    }

    /// A blank or an operator: the word ends, and with it a here-document's delimiter.
    fn blank(&mut self, step: Step) -> (usize, Step) {
        if self.word {
            self.end_delimiter();
        }
        (self.word, self.name) = (false, false);
        (0, step)
    }

    fn end_delimiter(&mut self) {
        if let Some(doc) = self.delimiter.take() {
            if doc.delimiter.is_empty() && !doc.quoted {
                // `<<` and blanks so far: the delimiter is the next word.
                self.delimiter = Some(doc);
            } else {
                self.pending.push(doc);
            }
        }
    }

    /// A newline where commands are read: the command ends, and the here-documents begun
    /// on its line start.
    fn newline(&mut self) -> (usize, Step) {
        (self.word, self.name) = (false, false);
        self.delimiter = None;
        self.next_heredoc();
        (0, Step::End)
    }

    fn next_heredoc(&mut self) {
        if !self.pending.is_empty() {
            let doc = self.pending.remove(0);
            self.frames.push(Frame::Heredoc(doc));
        }
    }
}

/// A word of a simple command: its text without quotes, and the macros in it (those the
/// Fallback defines and no backslash escapes) with their places.
#[derive(Debug, Default)]
pub(super) struct Word<'a> {
    pub text: String,
    pub macros: Vec<(&'a str, Place)>,
}

/// A simple command: its words, its pipeline and its place in it (commands joined by `|`
/// share a pipeline; each reads what those before it write).
#[derive(Debug)]
pub(super) struct Command<'a> {
    pub words: Vec<Word<'a>>,
    pub pipeline: usize,
    pub position: usize,
}

/// A macro in a here-document's text, and the command that reads the document (its
/// pipeline and position).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Document<'a> {
    pub name: &'a str,
    pub pipeline: usize,
    pub position: usize,
}

/// The simple commands of an sh script, those of its command substitutions included, and
/// the macros in its here-documents. `defined` says which macros count.
pub(super) fn commands(
    script: &str,
    defined: impl Fn(&str) -> bool,
) -> (Vec<Command<'_>>, Vec<Document<'_>>) {
    /// A command being read: a substitution's commands nest in a word of the one around.
    #[derive(Default)]
    struct Open<'a> {
        words: Vec<Word<'a>>,
        word: Option<Word<'a>>,
        pipeline: usize,
        position: usize,
    }
    let mut pipelines = 0;
    let mut open = vec![Open::default()];
    let mut done = Vec::new();
    let mut owners = Vec::new();
    let mut documents = Vec::new();
    let mut reader = Reader::default();
    impl<'a> Open<'a> {
        fn finish(&mut self, done: &mut Vec<Command<'a>>) {
            self.words.extend(self.word.take());
            done.push(Command {
                words: std::mem::take(&mut self.words),
                pipeline: self.pipeline,
                position: self.position,
            });
        }
    }
    for token in tokens(script) {
        match token {
            Token::Text(text) => reader.read(text, |piece, step| {
                let o = open.last_mut().expect("the script's own level");
                match step {
                    Step::Text => o.word.get_or_insert_default().text.push_str(piece),
                    Step::Syntax => _ = o.word.get_or_insert_default(),
                    Step::Blank => o.words.extend(o.word.take()),
                    Step::Redirect => {
                        o.words.extend(o.word.take());
                        owners.push((o.pipeline, o.position));
                    }
                    Step::End => {
                        o.finish(&mut done);
                        if piece == "|" {
                            o.position += 1;
                        } else {
                            pipelines += 1;
                            (o.pipeline, o.position) = (pipelines, 0);
                        }
                    }
                    Step::Open { in_document } => {
                        if !in_document {
                            o.word.get_or_insert_default();
                        }
                        pipelines += 1;
                        open.push(Open {
                            pipeline: pipelines,
                            ..Open::default()
                        });
                    }
                    Step::Close if open.len() > 1 => {
                        let mut inner = open.pop().expect("checked");
                        inner.finish(&mut done);
                    }
                    Step::Close | Step::Skip => {}
                }
            }),
            Token::Macro { name, raw } => {
                let document = reader.document();
                let (place, escaped) = reader.place_macro(raw);
                if escaped || !defined(name) || place == Place::Inert {
                    continue;
                }
                // In arithmetic, a document's macro is code whoever reads the document.
                let document = document.filter(|_| place != Place::Arithmetic);
                match document.and_then(|d| owners.get(d)) {
                    Some(&(pipeline, position)) => documents.push(Document {
                        name,
                        pipeline,
                        position,
                    }),
                    None => {
                        let o = open.last_mut().expect("the script's own level");
                        let word = o.word.get_or_insert_default();
                        word.text.push_str(raw);
                        word.macros.push((name, place));
                    }
                }
            }
        }
    }
    while let Some(mut o) = open.pop() {
        o.finish(&mut done);
    }
    done.retain(|c| !c.words.is_empty());
    (done, documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The place of each `@` in `script` (standing in for a macro).
    fn places(script: &str) -> Vec<Place> {
        let mut reader = Reader::default();
        let mut out = Vec::new();
        for (i, part) in script.split('@').enumerate() {
            if i > 0 {
                out.push(reader.place_macro("$m").0);
            }
            reader.read(part, |_, _| {});
        }
        out
    }

    #[test]
    fn quotes_and_substitutions_nest_as_in_sh() {
        use Place::*;
        for (script, want) in [
            ("echo @ '@' \"@\"", vec![Unquoted, Single, Double]),
            ("echo \"$(printf %s @)\"", vec![Unquoted]),
            ("echo \"`printf %s @`\" \"x@\"", vec![Unquoted, Double]),
            ("echo \"$(echo \"@\")\" '\"' @", vec![Double, Unquoted]),
            ("echo \"it's @\"", vec![Double]),
            (
                "echo ${x:-@} \"${x:-@}\" ${x:+'@'}",
                vec![Unquoted, Double, Single],
            ),
            ("echo \"${x:-'@'}\"", vec![Double]),
            ("echo \\\"@ \\'@", vec![Unquoted, Unquoted]),
            ("# it's a \"comment @\n echo @", vec![Inert, Unquoted]),
            ("echo $# @ x#y @", vec![Unquoted, Unquoted]),
            ("echo $(( @ + 1 )) $((1)) @", vec![Arithmetic, Unquoted]),
            (
                "(( n = @ )); for ((i=0; i<\"@\"; i++)); do :; done",
                vec![Arithmetic, Arithmetic],
            ),
            (
                "a[@]=1; b=(x [@]=y); echo ${a[@]} ${x:@} ${x:1:@}",
                vec![Arithmetic; 5],
            ),
            (
                "echo ${@} [ @ ] [[ @ ]] x[y] \"a[@]\"",
                vec![Arithmetic, Unquoted, Unquoted, Double],
            ),
            ("echo $( (echo @) ) @", vec![Unquoted, Unquoted]),
        ] {
            assert_eq!(places(script), want, "{script}");
        }
    }

    #[test]
    fn here_documents_are_text() {
        use Place::*;
        for (script, want) in [
            ("cat <<EOF\nit's @\nEOF\necho @", vec![Double, Unquoted]),
            (
                "cat <<'EOF' | x\nit's @ $(x)\nEOF\necho '@'",
                vec![Inert, Single],
            ),
            (
                "cat <<-\"E\" >f; echo @\n\tdon't @\n\tE\necho @",
                vec![Unquoted, Inert, Unquoted],
            ),
            (
                "cat <<A <<B\na @\nA\nb $(echo @)\nB\n@",
                vec![Double, Unquoted, Unquoted],
            ),
            ("cat <<< \"@\"; echo @", vec![Double, Unquoted]),
        ] {
            assert_eq!(places(script), want, "{script}");
        }
    }

    #[test]
    fn commands_end_and_substitutions_open_and_close() {
        let mut reader = Reader::default();
        let mut steps = String::new();
        reader.read("a \"$(b; c)\" `d`|e # f\ng", |piece, step| {
            steps.push(match step {
                Step::Text => 't',
                Step::Syntax => 's',
                Step::Blank | Step::Redirect => ' ',
                Step::End => ';',
                Step::Open { .. } => '(',
                Step::Close => ')',
                Step::Skip => '-',
            });
            assert!(!piece.is_empty());
        });
        assert_eq!(steps, "t s(t; t)s (t);t ---;t");
    }
}
