//! `regex::bytes`, as much of it as `mysql_common` uses (`Regex::new`, `is_match`,
//! `captures`, `Captures::get`, `Match::as_bytes`), on top of `regex-lite`.
//!
//! `regex-lite` compiles a pattern in microseconds where `regex` spends most of a millisecond
//! building Unicode classes and its meta engine, once per process: for a delivery agent that
//! connects once per message, that was a quarter of a MariaDB delivery's CPU.
//!
//! Two differences from `regex`, neither of which changes what `mysql_common`'s patterns
//! match in practice:
//! - Perl classes (`\d`, `\w`, `\s`) are ASCII, not Unicode. `mysql_common` reads the
//!   digits it matched with an ASCII-only integer parser, which would panic on the other
//!   Unicode digits `regex` lets through.
//! - A haystack that is not valid UTF-8 is searched with each invalid byte read as a line
//!   feed. `regex` in Unicode mode matches no invalid byte with anything, and no pattern
//!   `mysql_common` has can match a line feed, so their matches are the same; a pattern that
//!   can match `\n` (`\s`, `[^…]`, `(?s).`) would see a difference. Offsets are unchanged,
//!   so matches slice the caller's bytes.

/// Matching on `&[u8]`, as `regex::bytes` offers it.
pub mod bytes {
    use std::borrow::Cow;
    use std::ops::Range;

    pub use regex_lite::Error;

    /// A compiled pattern that searches bytes.
    #[derive(Clone, Debug)]
    pub struct Regex(regex_lite::Regex);

    impl Regex {
        pub fn new(pattern: &str) -> Result<Regex, Error> {
            regex_lite::Regex::new(pattern).map(Regex)
        }

        pub fn is_match(&self, haystack: &[u8]) -> bool {
            self.0.is_match(&text(haystack))
        }

        pub fn captures<'h>(&self, haystack: &'h [u8]) -> Option<Captures<'h>> {
            let text = text(haystack);
            let found = self.0.captures(&text)?;
            let groups = (0..found.len())
                .map(|i| found.get(i).map(|m| m.range()))
                .collect();
            Some(Captures { haystack, groups })
        }
    }

    /// The groups of one match; group 0 is the whole match.
    #[derive(Clone, Debug)]
    pub struct Captures<'h> {
        haystack: &'h [u8],
        groups: Vec<Option<Range<usize>>>,
    }

    impl<'h> Captures<'h> {
        pub fn get(&self, i: usize) -> Option<Match<'h>> {
            let range = self.groups.get(i)?.clone()?;
            Some(Match {
                haystack: self.haystack,
                range,
            })
        }
    }

    /// Where a pattern or group matched, in the caller's bytes.
    #[derive(Clone, Debug, Eq, PartialEq)]
    pub struct Match<'h> {
        haystack: &'h [u8],
        range: Range<usize>,
    }

    impl<'h> Match<'h> {
        pub fn range(&self) -> Range<usize> {
            self.range.clone()
        }

        pub fn as_bytes(&self) -> &'h [u8] {
            &self.haystack[self.range.clone()]
        }
    }

    /// The haystack as text of the same length: borrowed when it is UTF-8, otherwise a copy
    /// with every byte of each invalid sequence replaced by `\n` (see the crate's doc).
    fn text(haystack: &[u8]) -> Cow<'_, str> {
        if let Ok(text) = std::str::from_utf8(haystack) {
            return Cow::Borrowed(text);
        }
        let mut out = Vec::with_capacity(haystack.len());
        let mut rest = haystack;
        while let Err(e) = std::str::from_utf8(rest) {
            let (valid, after) = rest.split_at(e.valid_up_to());
            let bad = e.error_len().unwrap_or(after.len());
            out.extend_from_slice(valid);
            out.resize(out.len() + bad, b'\n');
            rest = &after[bad..];
        }
        out.extend_from_slice(rest);
        Cow::Owned(String::from_utf8(out).expect("invalid sequences were replaced"))
    }
}
