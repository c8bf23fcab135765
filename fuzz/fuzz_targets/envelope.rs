//! Envelopes from arbitrary bytes: accepted values are UTF-8 without control characters
//! and within the length limits; everything else is refused with an error, never a panic.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;
use virt_mail::envelope::{Envelope, MAX_DOMAIN, MAX_LOCAL, MAX_SENDER};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0xff);
    let local = parts.next().map(OsStr::from_bytes);
    let host = parts.next().map(OsStr::from_bytes);
    let sender = parts.next().map(OsStr::from_bytes);
    let prefix = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    for split in [true, false] {
        if let Ok(e) = Envelope::new(local, host, sender, split, prefix) {
            for (value, max) in [
                (&e.local, MAX_LOCAL),
                (&e.domain, MAX_DOMAIN),
                (&e.sender, MAX_SENDER),
            ] {
                assert!(value.len() <= max);
                assert!(!value.chars().any(char::is_control), "{value:?}");
            }
            assert_eq!(e.local, e.local.to_ascii_lowercase());
            assert_eq!(e.domain, e.domain.to_ascii_lowercase());
        }
    }
});
