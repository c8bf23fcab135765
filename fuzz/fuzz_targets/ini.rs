//! The INI dialect and the typed configuration built from it: any text parses or fails
//! with a line number inside the file; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::config::Config;
use virt_mail::ini;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match ini::parse(text) {
        Ok(parsed) => {
            for section in &parsed.sections {
                assert!(section.line >= 1 && section.line <= lines);
                for entry in &section.entries {
                    assert!(entry.line >= section.line && entry.line <= lines);
                    let _ = ini::parse_number(&entry.value);
                }
            }
            let _ = Config::from_ini(std::path::Path::new("fuzz.ini"), &parsed);
        }
        Err(e) => assert!(
            e.line >= 1 && e.line <= lines,
            "error line {} of {lines}",
            e.line
        ),
    }
});
