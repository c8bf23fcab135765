//! The process's allocator (`src/arena.rs`): small blocks, SQLite's included, come from a
//! fixed region; a delivery that outgrows it goes on with the system allocator.

use crate::common::*;

/// The `--debug` line's figure: KiB of the region in use at most.
fn region_peak(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .find(|l| l.contains("small-block region in use at most"))
        .unwrap_or_else(|| panic!("no memory line in {stderr}"));
    let figure = line
        .split("memory: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    figure.parse().unwrap()
}

#[test]
fn sqlite_and_the_program_allocate_from_the_region() {
    let s = Setup::standard("");
    let out = s
        .run()
        .args(["--debug", "-l", "alice"])
        .stdin("Subject: hi\n\nhello\n")
        .expect(0);
    let err = text(&out.stderr);
    assert!(
        err.contains("sqlite: allocates through the process's allocator"),
        "{err}"
    );
    let peak = region_peak(&err);
    assert!((16..512).contains(&peak), "{peak} KiB\n{err}");
    assert_eq!(s.count(), 1);
}

/// Thousands of configuration sections, each a few small blocks, fill the region; what
/// comes after (SQLite opening the store, a streamed 3 MiB message) is served by the system
/// allocator, and the message is stored whole.
#[test]
fn a_delivery_past_the_region_goes_on_and_stores_the_message_whole() {
    let sections: String = (0..8000)
        .map(|i| format!("[Extra{i}]\nKey{i} = value number {i}\n"))
        .collect();
    let s = Setup::new(OPTIONS, &format!("{BOUNCE}\n{sections}"));
    let mut body = b"Subject: large\n\n".to_vec();
    body.extend(pseudo_random(3 << 20));
    let out = s
        .run()
        .args(["--debug", "-l", "alice"])
        .stdin(body.clone())
        .expect(0);
    let err = text(&out.stderr);
    assert_eq!(region_peak(&err), 512, "the region is full");
    let mails = s.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].body == body, "body differs");
}
