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
    // The values carry U+0001, which the fuzzed line may not: any U+0001 in the result
    // came from a value (quotes cannot assemble it out of the line's own text).
    if line.contains('\u{1}') {
        return;
    }
    let Ok(command) = FallbackCommand::parse(line) else {
        return;
    };
    let macros = Macros {
        local: "\u{1}$(id)\u{1}",
        domain: "\u{1}`id`\u{1}",
        sender: "\u{1}'\";id;\u{1}",
        ..Macros::default()
    };
    let prepared = command.prepare(&macros);
    let program = prepared.argv[0].to_string_lossy();
    assert!(
        !program.contains('\u{1}'),
        "a value named the program: {program}"
    );
    if let Some(script) = command.script_index() {
        let text = prepared.argv[script].to_string_lossy();
        assert!(
            !text.contains('\u{1}'),
            "a value reached the shell script: {text}"
        );
    }
});
