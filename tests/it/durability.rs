//! SQLite: the WAL's directory entry is synced by the first commit into each WAL file and
//! trusted after that only for that very file (`src/backend/sqlite/dirsync.rs`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::*;

const ATTRIBUTE: &str = "user.virt_mail.dirsynced";

fn wal(s: &Setup) -> PathBuf {
    PathBuf::from(format!("{}-wal", s.db.display()))
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// The mark on `path`, if any.
fn mark(path: &Path) -> Option<String> {
    let (path, name) = (c(path), CString::new(ATTRIBUTE).unwrap());
    let mut value = [0u8; 64];
    // SAFETY: NUL-terminated strings; at most `value.len()` bytes are written.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    Some(String::from_utf8_lossy(&value[..n]).into_owned())
}

fn set_mark(path: &Path, value: &str) {
    let (path, name) = (c(path), CString::new(ATTRIBUTE).unwrap());
    // SAFETY: NUL-terminated strings; the kernel reads `value.len()` bytes.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

fn identity(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Whether the test directory's filesystem keeps user extended attributes.
fn attributes_supported(s: &Setup) -> bool {
    let probe = s.path("probe");
    std::fs::write(&probe, "").unwrap();
    let (path, name) = (c(&probe), CString::new("user.virt_mail.probe").unwrap());
    // SAFETY: NUL-terminated strings, one byte of value.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    rc == 0
}

fn deliver(s: &Setup) -> String {
    let out = s
        .run()
        .args(["--debug", "-l", "alice"])
        .stdin("Subject: hi\n\nhello\n")
        .expect(0);
    text(&out.stderr)
}

const SYNCED: &str = "directory synced with the first commit; marked";
const TRUSTED: &str = "directory entry known durable (marked): not synced again";

#[test]
fn the_first_commit_into_a_wal_syncs_its_directory_and_later_ones_do_not() {
    let s = Setup::standard("");
    if !attributes_supported(&s) {
        // No mark can be kept: every delivery syncs the directory, as SQLite always does.
        for _ in 0..2 {
            let err = deliver(&s);
            assert!(!err.contains(TRUSTED) && !err.contains(SYNCED), "{err}");
        }
        assert_eq!(s.count(), 2);
        return;
    }
    let err = deliver(&s);
    assert!(err.contains(SYNCED) && !err.contains(TRUSTED), "{err}");
    assert_eq!(mark(&wal(&s)), Some(identity(&wal(&s))));
    for _ in 0..2 {
        let err = deliver(&s);
        assert!(err.contains(TRUSTED) && !err.contains(SYNCED), "{err}");
    }
    assert_eq!(s.count(), 3);
}

/// A program whose last connection checkpoints on close deletes the WAL; the next delivery
/// creates a new one, which has no mark, and syncs its directory again.
#[test]
fn a_wal_created_again_is_synced_again() {
    let s = Setup::standard("");
    if !attributes_supported(&s) {
        return; // the test above covers this case
    }
    deliver(&s);
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.query_row("SELECT count(*) FROM mail", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    assert!(!wal(&s).exists(), "the closing connection deletes the WAL");
    let err = deliver(&s);
    assert!(err.contains(SYNCED) && !err.contains(TRUSTED), "{err}");
    assert_eq!(mark(&wal(&s)), Some(identity(&wal(&s))));
    assert_eq!(s.count(), 2);
}

/// A copy that kept the attribute (`cp -a`, a restore) names another file: not trusted.
#[test]
fn a_copied_wal_is_not_trusted() {
    let s = Setup::standard("");
    if !attributes_supported(&s) {
        return;
    }
    deliver(&s);
    let (wal, copy) = (wal(&s), s.path("copy"));
    std::fs::copy(&wal, &copy).unwrap();
    set_mark(&copy, &mark(&wal).unwrap());
    std::fs::rename(&copy, &wal).unwrap();
    let err = deliver(&s);
    assert!(err.contains(SYNCED) && !err.contains(TRUSTED), "{err}");
    assert_eq!(mark(&wal), Some(identity(&wal)));
    assert_eq!(s.count(), 2);
}

/// What the kernel sees: the first delivery opens the WAL to create it and fsyncs the
/// directory; the next opens it without O_CREAT and fsyncs the WAL alone.
#[test]
fn strace_shows_one_directory_fsync_per_wal_file() {
    if !strace_available() {
        return;
    }
    let s = Setup::standard("");
    if !attributes_supported(&s) {
        return;
    }
    let traced = |n: usize| {
        s.delivery_straced(
            "Subject: hi\n\nhello\n",
            "openat,open,fsync",
            &format!("strace{n}"),
        )
    };
    let dir = s.dir.path().canonicalize().unwrap();
    let dir_fsync = format!("<{}>)", dir.display());
    let wal_name = format!("{}-wal\"", dir.join("mail.db").display());
    let first = traced(1);
    let opens: Vec<_> = first.lines().filter(|l| l.contains(&wal_name)).collect();
    assert!(opens.iter().all(|l| l.contains("O_CREAT")), "{first}");
    assert!(
        first
            .lines()
            .any(|l| l.contains("fsync(") && l.contains(&dir_fsync)),
        "{first}"
    );
    let second = traced(2);
    let opens: Vec<_> = second.lines().filter(|l| l.contains(&wal_name)).collect();
    assert!(
        !opens.is_empty() && opens.iter().all(|l| !l.contains("O_CREAT")),
        "{second}"
    );
    let fsyncs: Vec<_> = second.lines().filter(|l| l.contains("fsync(")).collect();
    assert_eq!(fsyncs.len(), 1, "{second}");
    assert!(fsyncs[0].contains("-wal>)"), "{second}");
    assert_eq!(s.count(), 2);
}

/// SQLite ignores a failed sync of the WAL's directory; the mark must not make that failure
/// permanent. With every directory fsync of the first delivery failing, the WAL is not
/// marked, and the next delivery syncs the directory again.
#[test]
fn a_failed_directory_sync_leaves_the_wal_unmarked() {
    if !strace_available() {
        return;
    }
    let s = Setup::standard("");
    if !attributes_supported(&s) {
        return;
    }
    // Which fsyncs are the directory's, in a first delivery into a store just like it.
    let probe = Setup::standard("");
    let dir = probe.dir.path().canonicalize().unwrap();
    let trace = probe.delivery_straced("Subject: hi\n\nhello\n", "fsync", "strace");
    let at = fsync_positions(&trace, &format!("<{}>)", dir.display()));
    // The last two: SQLite's at the commit and virt_mail's own after it (a first delivery
    // also syncs it for the rollback journal of the switch to WAL mode).
    let [.., first, second] = at[..] else {
        panic!("SQLite's and virt_mail's own directory fsyncs:\n{trace}");
    };
    let failing = failing_fsyncs(&format!("{first}..{second}+{}", second - first));
    let failing: Vec<&str> = failing.iter().map(String::as_str).collect();
    let out = s
        .run()
        .args(["--debug", "-l", "alice"])
        .stdin("Subject: hi\n\nhello\n")
        .wrapped_output(&failing);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("directory not synced"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(mark(&wal(&s)), None);
    let err = deliver(&s);
    assert!(err.contains(SYNCED) && !err.contains(TRUSTED), "{err}");
    assert_eq!(s.count(), 2);
}
