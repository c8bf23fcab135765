//! `maildir:PATH` as a delivery target (in `Deliver` or `Fallback`), with qmail's reliable
//! algorithm: a unique name in `tmp/`, write, fsync, hard-link into `new/`, unlink the `tmp/`
//! name, fsync `new/`. A crash at any point leaves at most a stray file in `tmp/`, never a
//! partial one in `new/`; the link is the commit and runs with signals held.
//!
//! PATH may hold macros. Values the database gave (`$1`, `$2` …, e.g. vpopmail's `pw_dir`)
//! are trusted; every other value comes from the sender and must be a plain path component
//! (no `/`, not `.` or `..`), so an address can never point a delivery elsewhere. A missing
//! Maildir is created (mode 0700, with `cur/ new/ tmp/`), as vpopmail does; `Folder` names a
//! Maildir++ subfolder (`.Name/`). `maildirsize` (Maildir++ quota) is read for usage and kept
//! up to date after each delivery.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::macros::{Macros, Token, tokens};
use crate::signals;

/// The Maildir++ quota file is recomputed once it grows past this (the Maildir++ rule).
const MAILDIRSIZE_LIMIT: u64 = 5120;

/// A configured Maildir target: path and folder templates, expanded per delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildirTarget {
    path: String,
    folder: Option<String>,
}

impl MaildirTarget {
    /// `value` is what follows `maildir:`; `folder` the `Folder` key.
    pub fn parse(value: &str, folder: Option<&str>) -> Result<MaildirTarget, String> {
        let path = value.trim();
        if path.is_empty() {
            return Err("maildir: needs a path".into());
        }
        Ok(MaildirTarget {
            path: path.to_string(),
            folder: folder
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        })
    }

    /// Whether a macro appears in the path or the folder.
    pub fn uses(&self, name: &str) -> bool {
        std::iter::once(&self.path)
            .chain(&self.folder)
            .any(|t| tokens(t).any(|x| matches!(x, Token::Macro { name: n, .. } if n == name)))
    }

    /// The template as configured (for messages).
    pub fn describe(&self) -> String {
        match &self.folder {
            Some(folder) => format!("maildir:{} (folder {folder})", self.path),
            None => format!("maildir:{}", self.path),
        }
    }

    /// The directory this delivery goes to: the Maildir, or its `.Folder` subdirectory.
    pub fn resolve(&self, macros: &Macros<'_>) -> Result<Resolved, Error> {
        let root = PathBuf::from(expand(&self.path, macros, true)?);
        if !root.is_absolute() {
            return Err(Error::MaildirConfig(format!(
                "{} is not an absolute path once expanded ({})",
                self.path,
                root.display()
            )));
        }
        let folder = match &self.folder {
            Some(template) => folder_dir(&expand(template, macros, false)?)?,
            None => None,
        };
        let dir = match &folder {
            Some(sub) => root.join(sub),
            None => root.clone(),
        };
        Ok(Resolved {
            root,
            dir,
            subfolder: folder.is_some(),
        })
    }
}

/// A Maildir for one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The Maildir itself (where `maildirsize` lives).
    pub root: PathBuf,
    /// Where the message goes (the root or a `.Folder`).
    pub dir: PathBuf,
    subfolder: bool,
}

/// Expands macros in a path template. Database values go in as they are; sender-chosen values
/// must be single path components. An undefined macro is a configuration error (a path with
/// a piece missing would deliver somewhere unintended).
fn expand(template: &str, macros: &Macros<'_>, database_may_span: bool) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len());
    for token in tokens(template) {
        match token {
            Token::Text(t) => out.push_str(t),
            Token::Macro { name, raw } => {
                let Some(value) = macros.get(name) else {
                    return Err(Error::MaildirConfig(format!("{raw} is not defined here")));
                };
                let value = value.to_text();
                // `$1`, `$2` … come from the database; everything else from the sender.
                let trusted = database_may_span && name.bytes().all(|b| b.is_ascii_digit());
                if !trusted && !plain_component(&value) {
                    return Err(Error::InvalidRecipient(format!(
                        "${name} = {value:?} cannot name a mailbox directory"
                    )));
                }
                out.push_str(&value);
            }
        }
    }
    Ok(out)
}

fn plain_component(value: &str) -> bool {
    !value.is_empty() && value != "." && value != ".." && !value.contains(['/', '\0'])
}

/// Maildir++: `INBOX` (or empty) is the Maildir itself; `Work/Reports` is `.Work.Reports`.
fn folder_dir(name: &str) -> Result<Option<String>, Error> {
    let name = name.trim();
    if name.is_empty() || name.eq_ignore_ascii_case("INBOX") {
        return Ok(None);
    }
    let parts: Vec<&str> = name.split(['/', '.']).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::MaildirConfig(format!(
            "folder {name:?} has an empty part"
        )));
    }
    Ok(Some(format!(".{}", parts.join("."))))
}

/// Creates a missing Maildir (and folder) the way vpopmail and Dovecot do.
fn ensure(target: &Resolved) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for dir in [&target.root, &target.dir] {
        for sub in ["cur", "new", "tmp"] {
            let path = dir.join(sub);
            if !path.is_dir() {
                builder.create(&path)?;
            }
        }
    }
    if target.subfolder {
        let marker = target.dir.join("maildirfolder");
        if !marker.exists() {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(marker)?;
        }
    }
    Ok(())
}

/// A name no other delivery can have: time, microseconds, pid, a per-process counter and the
/// host (`/` and `:` escaped as the Maildir convention says), plus Maildir++'s `,S=size`.
fn unique_name(size: usize) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
        .replace('/', "\\057")
        .replace(':', "\\072");
    format!(
        "{}.M{}P{}Q{}.{host},S={size}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn io_error(target: &Resolved, step: &str, source: io::Error) -> Error {
    Error::Maildir {
        path: target.dir.display().to_string(),
        step: step.to_string(),
        source,
    }
}

/// Stores `message` in the Maildir. Returns the file's path in `new/`.
pub fn deliver(target: &Resolved, message: &[u8]) -> Result<PathBuf, Error> {
    ensure(target).map_err(|e| io_error(target, "create", e))?;
    let (name, tmp) = write_tmp(target, message)?;
    signals::test_kill_point("maildir-synced");
    let result = signals::commit_guarded(|| link_into_new(target, message.len(), &name, &tmp));
    let new = match result {
        Ok(new) => new,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    signals::test_kill_point("maildir-linked");
    let _ = fs::remove_file(&tmp);
    Ok(new)
}

/// Writes the message under a fresh name in `tmp/` and makes it durable.
fn write_tmp(target: &Resolved, message: &[u8]) -> Result<(String, PathBuf), Error> {
    for _ in 0..10 {
        let name = unique_name(message.len());
        let tmp = target.dir.join("tmp").join(&name);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(target, "create tmp file", e)),
        };
        let written = file.write_all(message).and_then(|()| {
            signals::test_kill_point("maildir-written");
            file.sync_all()
        });
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(&tmp);
            return Err(io_error(target, "write", e));
        }
        return Ok((name, tmp));
    }
    Err(io_error(
        target,
        "name",
        io::Error::new(io::ErrorKind::AlreadyExists, "no unique name in 10 tries"),
    ))
}

/// The commit: a hard link never replaces an existing message; a filesystem without hard
/// links gets a rename of a name that is unique anyway. Then `new/` is synced.
fn link_into_new(target: &Resolved, size: usize, name: &str, tmp: &Path) -> Result<PathBuf, Error> {
    let new_dir = target.dir.join("new");
    let mut new = new_dir.join(name);
    let mut tries = 0;
    loop {
        match fs::hard_link(tmp, &new) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 10 => {
                tries += 1;
                new = new_dir.join(unique_name(size));
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(
                        nix::libc::EPERM
                            | nix::libc::EXDEV
                            | nix::libc::ENOSYS
                            | nix::libc::EOPNOTSUPP
                    )
                ) =>
            {
                fs::rename(tmp, &new).map_err(|e| io_error(target, "rename into new/", e))?;
                break;
            }
            Err(e) => return Err(io_error(target, "link into new/", e)),
        }
    }
    // Deferred, the message is delivered again: so it must not stay in new/ (unless a
    // reader took it already, which leaves the rare duplicate rather than a loss).
    if let Err(e) = File::open(&new_dir).and_then(|d| d.sync_all()) {
        let _ = fs::remove_file(&new);
        return Err(io_error(target, "sync new/", e));
    }
    Ok(new)
}

/// Bytes in the Maildir (all folders) by Maildir++ `maildirsize`, recomputed from the files
/// when missing or grown past its limit.
pub fn usage(root: &Path, limit: u64) -> io::Result<u64> {
    if !root.join("tmp").is_dir() {
        return Ok(0); // not created yet: empty
    }
    let file = root.join("maildirsize");
    match fs::metadata(&file) {
        Ok(meta) if meta.len() <= MAILDIRSIZE_LIMIT => {
            let mut text = String::new();
            File::open(&file)?.read_to_string(&mut text)?;
            Ok(text
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next()?.parse::<i64>().ok())
                .sum::<i64>()
                .max(0) as u64)
        }
        Ok(_) | Err(_) => recompute(root, limit),
    }
}

/// Counts every message of the Maildir and its folders and writes a fresh `maildirsize`.
fn recompute(root: &Path, limit: u64) -> io::Result<u64> {
    let mut bytes = 0u64;
    let mut count = 0u64;
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name != "." && name != ".." && entry.path().is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    for dir in dirs {
        for sub in ["cur", "new"] {
            let Ok(entries) = fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let size = name
                    .split(',')
                    .find_map(|f| f.strip_prefix("S="))
                    .and_then(|s| s.split(':').next()?.parse().ok())
                    .or_else(|| entry.metadata().ok().map(|m| m.len()));
                if let Some(size) = size {
                    bytes += size;
                    count += 1;
                }
            }
        }
    }
    let tmp = root.join(format!("tmp/maildirsize.{}", std::process::id()));
    fs::write(&tmp, format!("{limit}S\n{bytes} {count}\n"))?;
    fs::rename(&tmp, root.join("maildirsize"))?;
    Ok(bytes)
}

/// Adds a delivered message to `maildirsize` (one short append, atomic under O_APPEND).
pub fn record(root: &Path, size: usize) -> io::Result<()> {
    let file = root.join("maildirsize");
    if !file.exists() {
        return Ok(()); // created by the next usage() with a full count
    }
    OpenOptions::new()
        .append(true)
        .open(file)?
        .write_all(format!("{size} 1\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::macros::Value;
    use crate::macros::tests::macros;

    #[test]
    fn paths_expand_with_safe_values_only() {
        let cols = [Value::Text(
            "/home/vpopmail/domains/example.com/alice".into(),
        )];
        let m = macros(&cols);
        let t = MaildirTarget::parse("$1/Maildir", None).unwrap();
        assert_eq!(
            t.resolve(&m).unwrap().dir,
            Path::new("/home/vpopmail/domains/example.com/alice/Maildir")
        );
        let t = MaildirTarget::parse("/srv/vmail/$domain/$local/Maildir", Some("Junk")).unwrap();
        let r = t.resolve(&m).unwrap();
        assert_eq!(r.root, Path::new("/srv/vmail/example.com/alice/Maildir"));
        assert_eq!(
            r.dir,
            Path::new("/srv/vmail/example.com/alice/Maildir/.Junk")
        );
        for bad in ["../../etc", "a/b", ".", ".."] {
            let m = Macros {
                local: bad,
                ..macros(&cols)
            };
            let t = MaildirTarget::parse("/srv/vmail/$local/Maildir", None).unwrap();
            assert!(
                matches!(t.resolve(&m), Err(Error::InvalidRecipient(_))),
                "{bad}"
            );
        }
        let t = MaildirTarget::parse("/srv/$2/Maildir", None).unwrap();
        assert!(
            matches!(t.resolve(&m), Err(Error::MaildirConfig(_))),
            "undefined macro"
        );
        let t = MaildirTarget::parse("relative/$local", None).unwrap();
        assert!(matches!(t.resolve(&m), Err(Error::MaildirConfig(_))));
    }

    #[test]
    fn folders_follow_maildir_plus_plus() {
        assert_eq!(folder_dir("INBOX").unwrap(), None);
        assert_eq!(folder_dir("").unwrap(), None);
        assert_eq!(folder_dir("Junk").unwrap().as_deref(), Some(".Junk"));
        assert_eq!(
            folder_dir("Work/Reports").unwrap().as_deref(),
            Some(".Work.Reports")
        );
        assert!(folder_dir("a//b").is_err());
        assert!(folder_dir(".hidden").is_err());
    }

    #[test]
    fn delivery_creates_the_maildir_and_leaves_nothing_in_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let t = MaildirTarget::parse(&format!("{}/u/Maildir", dir.path().display()), Some("Work"))
            .unwrap();
        let r = t.resolve(&macros(&[])).unwrap();
        let file = deliver(&r, b"Subject: x\n\nbody\0").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"Subject: x\n\nbody\0");
        assert!(file.starts_with(r.dir.join("new")));
        assert!(file.to_string_lossy().ends_with(",S=17"));
        assert!(r.dir.join("maildirfolder").exists());
        for d in [&r.root, &r.dir] {
            for sub in ["cur", "new", "tmp"] {
                assert!(d.join(sub).is_dir());
            }
        }
        assert_eq!(fs::read_dir(r.dir.join("tmp")).unwrap().count(), 0);
        let a = unique_name(1);
        assert_ne!(a, unique_name(1));
    }

    #[test]
    fn maildirsize_is_counted_and_appended() {
        let dir = tempfile::tempdir().unwrap();
        let t = MaildirTarget::parse(&format!("{}/Maildir", dir.path().display()), None).unwrap();
        let r = t.resolve(&macros(&[])).unwrap();
        deliver(&r, &[b'x'; 100]).unwrap();
        deliver(&r, &[b'y'; 50]).unwrap();
        assert_eq!(
            usage(&r.root, 1000).unwrap(),
            150,
            "recomputed from ,S= names"
        );
        record(&r.root, 25).unwrap();
        assert_eq!(
            usage(&r.root, 1000).unwrap(),
            175,
            "read back from maildirsize"
        );
        let text = fs::read_to_string(r.root.join("maildirsize")).unwrap();
        assert!(text.starts_with("1000S\n150 2\n"), "{text}");
    }
}
