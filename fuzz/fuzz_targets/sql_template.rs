//! SQL templates: whatever the template, macro values never become SQL text — they only
//! ever reach the statement as bound parameters — and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::macros::{Macros, Placeholder, Template, Value, expand_text};

const LOCAL: &str = "QQlocal'--QQ";
const SENDER: &str = "QQ$sender\"QQ";
const COLUMN: &str = "QQcol$1QQ";

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if sql.contains("QQ") {
        return; // the markers must come only from the values
    }
    let columns = [Value::Text(COLUMN.into())];
    let body = b"QQbody\0QQ";
    let macros = Macros {
        local: LOCAL,
        domain: "QQdomainQQ",
        sender: SENDER,
        message: Some(body),
        columns: &columns,
    };
    let _ = expand_text(sql, &macros);
    let Ok(template) = Template::parse(sql) else {
        return;
    };
    for style in [Placeholder::Question, Placeholder::Numbered] {
        let bound = template.bind(&macros, style);
        assert!(
            !bound.sql.contains("QQ"),
            "a value leaked into SQL: {:?}",
            bound.sql
        );
        assert_eq!(bound.params.len(), template.param_count());
    }
});
