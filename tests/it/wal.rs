//! SQLite: once its frames pass 256 KiB the WAL is checkpointed, and then reused in place:
//! its header cleared where SQLite would truncate it, its blocks written over by the next
//! delivery (`src/backend/sqlite/wal_reuse.rs`); the checkpoint grows the database file in
//! allocated chunks (`GROWTH_CHUNK` in `src/backend/sqlite.rs`).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::common::*;

/// The WAL header's magic number (the low bit: the checksums' byte order).
const MAGIC: u32 = 0x377f_0682;

fn wal(s: &Setup) -> PathBuf {
    PathBuf::from(format!("{}-wal", s.db.display()))
}

fn header(s: &Setup) -> [u8; 32] {
    let mut header = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open(wal(s)).unwrap(), &mut header).unwrap();
    header
}

fn valid(header: &[u8; 32]) -> bool {
    u32::from_be_bytes(header[..4].try_into().unwrap()) & !1 == MAGIC
}

/// SQLite's own VFS (a connection of this process) finds the store intact.
fn assert_integrity(s: &Setup) {
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

fn deliver(s: &Setup, body: &[u8]) -> String {
    let out = s
        .run()
        .args(["--debug", "-l", "alice"])
        .stdin(body.to_vec())
        .expect(0);
    text(&out.stderr)
}

#[test]
fn a_checkpointed_wal_is_kept_with_its_header_cleared_and_written_over() {
    let s = Setup::standard("");
    let large = pseudo_random(300 * 1024);
    let err = deliver(&s, &large);
    assert!(err.contains("checkpointed"), "{err}");
    assert!(err.contains("WAL kept for reuse"), "{err}");
    let kept = std::fs::metadata(wal(&s)).unwrap();
    assert!(kept.len() > 300 * 1024, "WAL of {} bytes", kept.len());
    assert_eq!(header(&s), [0u8; 32], "the header is cleared");

    // The next delivery starts the WAL again from its beginning, in the same file, over the
    // old frames: a valid header, no new blocks.
    let small = b"Subject: hi\n\nhello\n";
    let err = deliver(&s, small);
    assert!(!err.contains("checkpointed"), "{err}");
    let reused = std::fs::metadata(wal(&s)).unwrap();
    assert_eq!((reused.ino(), reused.len()), (kept.ino(), kept.len()));
    assert!(valid(&header(&s)), "{:?}", header(&s));

    // SQLite's own VFS reads both messages, and nothing of the frames left behind.
    assert_integrity(&s);
    let bodies: Vec<Vec<u8>> = s.mails().into_iter().map(|m| m.body).collect();
    assert!(bodies == [large, small.to_vec()], "bodies differ");
}

/// A WAL longer than the 64 MiB kept for reuse is truncated to zero bytes, as SQLite does:
/// cut to 64 MiB, a power loss before its cleared header reached the disk would leave a
/// valid header before part of its frames, and recovery would put their old pages over the
/// newer ones of the checkpoint.
#[test]
fn a_wal_past_64_mib_is_truncated_to_zero_not_cut_short() {
    let s = Setup::standard("");
    let huge = pseudo_random(65 << 20);
    let err = deliver(&s, &huge);
    assert!(err.contains("checkpointed"), "{err}");
    assert!(!err.contains("WAL kept for reuse"), "{err}");
    assert_eq!(std::fs::metadata(wal(&s)).unwrap().len(), 0);
    let small = b"Subject: hi\n\nhello\n";
    deliver(&s, small);
    assert_integrity(&s);
    let bodies: Vec<Vec<u8>> = s.mails().into_iter().map(|m| m.body).collect();
    assert!(bodies == [huge, small.to_vec()], "bodies differ");
}

/// Another program's SQLite (the stock VFS, as an administrator's shell or a mail reader
/// uses) writes into a WAL we left with a cleared header, and deliveries go on after it.
#[test]
fn another_program_writes_into_a_cleared_wal() {
    let s = Setup::standard("");
    let large = pseudo_random(300 * 1024);
    deliver(&s, &large);
    assert_eq!(header(&s), [0u8; 32], "the header is cleared");
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute(
        "INSERT INTO mail (recipient, body) VALUES ('bob', x'6869')",
        [],
    )
    .unwrap();
    assert!(valid(&header(&s)), "the other program wrote a new header");
    drop(conn);
    let small = b"Subject: after\n\nhello again\n";
    deliver(&s, small);
    assert_integrity(&s);
    let mails = s.mails();
    let got: Vec<(&str, &[u8])> = mails
        .iter()
        .map(|m| (m.recipient.as_str(), m.body.as_slice()))
        .collect();
    assert!(
        got == [("alice", &large[..]), ("bob", b"hi"), ("alice", small)],
        "{:?}",
        got.iter().map(|(r, b)| (r, b.len())).collect::<Vec<_>>()
    );
}

/// The limit is on the WAL's frames, counted with the database's own page size.
#[test]
fn the_checkpoint_comes_after_256_kib_of_frames_of_any_page_size() {
    for page_size in [4096u64, 16384] {
        let s = Setup::standard("");
        rusqlite::Connection::open(&s.db)
            .unwrap()
            .execute_batch(&format!("PRAGMA page_size = {page_size}; VACUUM;"))
            .unwrap();
        let body = pseudo_random(40 * 1024);
        let mut checkpoints = Vec::new();
        for i in 0..30 {
            let err = deliver(&s, &body);
            if let Some(at) = err.find("checkpointed ") {
                let words: Vec<&str> = err[at..].split([' ', '(']).collect();
                let frames: u64 = words[1].parse().unwrap();
                let bytes: u64 = words[4].parse().unwrap();
                checkpoints.push((i, frames, bytes));
            }
        }
        assert!(checkpoints.len() >= 2, "{page_size}: {checkpoints:?}");
        for &(_, frames, bytes) in &checkpoints {
            assert_eq!(
                bytes,
                frames * (page_size + 24),
                "{page_size}: {checkpoints:?}"
            );
            // Past the limit by less than one delivery (40 KiB and a few pages).
            assert!(
                (256 * 1024..256 * 1024 + 48 * 1024 + 4 * page_size).contains(&bytes),
                "{page_size}: {checkpoints:?}"
            );
        }
        assert_eq!(s.count(), 30);
    }
}

/// A delivery that opens the store alone resets the WAL index by writing zeros over the
/// `-shm` file, where SQLite would truncate it and grow it again
/// (`src/backend/sqlite/shm_reset.rs`).
#[test]
fn the_wal_index_is_reset_over_its_own_blocks() {
    if !strace_available() {
        return;
    }
    let s = Setup::standard("");
    deliver(&s, b"Subject: first\n\nhello\n");
    let trace = s.delivery_straced("Subject: second\n\nhello\n", "ftruncate,pwrite64", "strace");
    let shm: Vec<&str> = trace.lines().filter(|l| l.contains("-shm>")).collect();
    assert!(!shm.iter().any(|l| l.contains("ftruncate(")), "{trace}");
    assert!(
        shm.iter()
            .any(|l| l.contains("pwrite64(") && l.ends_with(", 32768, 0) = 32768")),
        "{trace}"
    );
    assert_eq!(s.count(), 2);
}

/// The checkpoint asks for the database's new space with one `fallocate` of a whole 1 MiB
/// chunk before it writes the pages, and the store reads as before.
#[test]
fn the_database_grows_in_allocated_chunks() {
    if !strace_available() {
        return;
    }
    let s = Setup::standard("");
    let large = pseudo_random(300 * 1024);
    let trace = s.delivery_straced(large.clone(), "fallocate,ftruncate", "strace");
    let db = format!("{}>", s.db.display());
    assert!(
        trace
            .lines()
            .any(|l| l.contains("fallocate(") && l.contains(&db)),
        "{trace}"
    );
    let meta = std::fs::metadata(&s.db).unwrap();
    assert_eq!(meta.len() % (1024 * 1024), 0, "{} bytes", meta.len());
    assert!(meta.blocks() * 512 >= meta.len(), "sparse: {meta:?}");
    assert_integrity(&s);
    let bodies: Vec<Vec<u8>> = s.mails().into_iter().map(|m| m.body).collect();
    assert!(bodies == [large], "bodies differ");
}
