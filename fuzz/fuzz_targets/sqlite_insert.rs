//! The shape check that decides whether SQLite may write a message after its row reads a
//! configured `Deliver` before every large delivery: no statement makes it panic, and what
//! it accepts names a value that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::backend::sqlite::insert;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let Ok(sql) = std::str::from_utf8(rest) else {
        return;
    };
    let markers = sql.matches('?').count();
    let marker = usize::from(n) % (markers + 1);
    if let Some(target) = insert::target(sql, marker, markers) {
        assert!(marker < markers, "{sql:?}: marker {marker} of {markers}");
        assert!(!target.table.is_empty() || sql.contains("\"\"") || sql.contains("[]"));
    }
    insert::mentions(sql, &["CHECK", "AS"]);
});
