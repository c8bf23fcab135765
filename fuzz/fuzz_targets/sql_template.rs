//! SQL templates: whatever the template, macro values never become SQL text — they only
//! ever reach the statement as bound parameters — and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::macros::{Macros, Placeholder, Template, Value, expand_text};

// Values carry U+0001, which the fuzzed template may not contain: any U+0001 in the SQL
// text came from a value.
const LOCAL: &str = "\u{1}local'--\u{1}";
const SENDER: &str = "\u{1}$sender\"\u{1}";
const COLUMN: &str = "\u{1}col$1\u{1}";

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if sql.contains('\u{1}') {
        return;
    }
    let columns = [Value::Text(COLUMN.into())];
    let body = b"\x01body\0\x01";
    let macros = Macros {
        local: LOCAL,
        domain: "\u{1}domain\u{1}",
        sender: SENDER,
        message: Some(body),
        columns: &columns,
        ..Macros::default()
    };
    let _ = expand_text(sql, &macros);
    let Ok(template) = Template::parse(sql) else {
        return;
    };
    for style in [Placeholder::Question, Placeholder::Numbered] {
        let bound = template.bind(&macros, style);
        assert!(
            !bound.sql.contains('\u{1}'),
            "a value leaked into SQL: {:?}",
            bound.sql
        );
        assert_eq!(bound.params.len(), template.param_count());
    }
});
