//! Header macros from arbitrary messages: `$subject $from $to $message_id $date` are what a
//! remote sender controls most directly. Whatever the bytes, parsing never panics and every
//! value is printable text (no control characters: no CR/LF/NUL can reach a statement, a
//! Fallback script or a log line) within the documented length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::headers::{Headers, MAX_VALUE, NAMES};

fuzz_target!(|data: &[u8]| {
    let h = Headers::parse(data);
    assert_eq!(h.size, data.len().to_string());
    for name in NAMES {
        let value = h.get(name).expect("every name has a value");
        assert!(value.len() <= MAX_VALUE, "{name}: {} bytes", value.len());
        assert!(
            !value.chars().any(char::is_control),
            "{name}: control character in {value:?}"
        );
        assert_eq!(value, value.trim(), "{name}: untrimmed {value:?}");
    }
});
