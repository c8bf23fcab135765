//! Virtuoso's wire decoder reads whatever a server (or anything listening on its port)
//! sends: no input makes it panic, allocate past its caps or recurse without bound, and
//! every value it accepts that the client can also write (integers, strings, arrays,
//! NULL) encodes back to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::backend::virtuoso::wire::{self, Value};

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    while let Ok(value) = wire::read(&mut input) {
        let mut out = Vec::new();
        if encode(&value, &mut out) {
            let again = wire::read(&mut &out[..]).expect("re-encoded value decodes");
            assert_eq!(again, value);
        }
    }
});

/// Writes `value` with the client's encoder; false when it holds a kind the client never
/// sends.
fn encode(value: &Value, out: &mut Vec<u8>) -> bool {
    match value {
        Value::Null => wire::put_null(out),
        Value::Int(n) => wire::put_int(out, *n),
        Value::Str(s) => wire::put_str(out, s),
        Value::Array(items) => {
            wire::put_array(out, items.len());
            return items.iter().all(|item| encode(item, out));
        }
        _ => return false,
    }
    true
}
