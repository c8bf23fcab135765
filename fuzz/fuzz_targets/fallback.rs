//! Fallback command lines: whatever the configured line, an envelope value never becomes
//! shell code (it never appears in a `sh -c` script, only in the environment) and never
//! names the program; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::fallback::FallbackCommand;
use virt_mail::macros::Macros;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if line.contains("QQ") {
        return;
    }
    let Ok(command) = FallbackCommand::parse(line) else {
        return;
    };
    let macros = Macros {
        local: "QQ$(id)QQ",
        domain: "QQ`id`QQ",
        sender: "QQ'\";id;QQ",
        ..Macros::default()
    };
    let prepared = command.prepare(&macros);
    let program = prepared.argv[0].to_string_lossy();
    assert!(
        !program.contains("QQ"),
        "a value named the program: {program}"
    );
    if let Some(script) = command.script_index() {
        let text = prepared.argv[script].to_string_lossy();
        assert!(
            !text.contains("QQ"),
            "a value reached the shell script: {text}"
        );
    }
});
