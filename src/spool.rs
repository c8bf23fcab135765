//! A large message kept in an unnamed file instead of the heap, for the backends that stream
//! it to the database in pieces (Virtuoso's protocol, ODBC data-at-execution): the file is
//! mapped read-only, and each piece's pages are handed back once sent, so the process stays
//! the same size whatever the message's size.
//!
//! The file lives in `$TMPDIR` (else `/tmp`), is created without a name (`O_TMPFILE`, or
//! unlinked at once), mode 0600, and disappears with the process. It is only a copy: the MTA
//! keeps the message until we exit 0, so a spool that cannot be written costs nothing but
//! memory (the caller keeps the message on the heap instead).

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;

use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap, munmap};

/// Mappings alive in this process, as (address, length): `release` touches nothing else.
static MAPPED: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// The spool directory: `$TMPDIR` as every Unix tool reads it, else `/tmp`.
fn directory() -> PathBuf {
    std::env::var_os("TMPDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// An unnamed spool file being written.
pub struct Writer {
    file: File,
    len: u64,
}

impl Writer {
    /// Creates the unnamed file in the spool directory.
    pub fn create() -> io::Result<Writer> {
        Writer::create_in(&directory())
    }

    /// Creates the unnamed file in `dir`.
    fn create_in(dir: &Path) -> io::Result<Writer> {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_TMPFILE)
            .open(dir)
        {
            Ok(file) => file,
            // Filesystems without O_TMPFILE: a named file, unlinked before anything is written.
            Err(_) => {
                let (fd, path) = nix::unistd::mkstemp(&dir.join("virt_mail.XXXXXX"))?;
                let file = File::from(fd);
                std::fs::remove_file(path)?;
                file
            }
        };
        Ok(Writer { file, len: 0 })
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Everything written, read back onto the heap (when the spool fails half-way).
    pub fn read_back(&self, into: &mut Vec<u8>) -> io::Result<()> {
        let start = into.len();
        into.resize(start + self.len as usize, 0);
        self.file.read_exact_at(&mut into[start..], 0)
    }

    /// Maps the finished file read-only. An empty file cannot be mapped: `None`.
    pub fn map(&self) -> io::Result<Option<Mapped>> {
        let Some(len) = NonZeroUsize::new(self.len as usize) else {
            return Ok(None);
        };
        // SAFETY: a fresh read-only shared mapping of a file only we hold (it has no name,
        // so nothing else can truncate it under the mapping).
        let addr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                &self.file,
                0,
            )
        }?;
        // SAFETY: the range was just mapped; the advice only sets read-ahead.
        let _ = unsafe { madvise(addr, len.get(), MmapAdvise::MADV_SEQUENTIAL) };
        lock().push((addr.as_ptr() as usize, len.get()));
        Ok(Some(Mapped {
            addr,
            len: len.get(),
        }))
    }

    /// A spool over any file (tests: one that cannot be read back).
    #[cfg(test)]
    pub fn over(file: File, len: u64) -> Writer {
        Writer { file, len }
    }

    /// Copies the rest of a reader into the file, `chunk` bytes at a time (for tests).
    #[cfg(test)]
    pub fn copy_from(&mut self, mut input: impl io::Read) -> io::Result<()> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match input.read(&mut buf)? {
                0 => return Ok(()),
                n => self.write(&buf[..n])?,
            }
        }
    }
}

/// The spooled message, mapped read-only until dropped.
pub struct Mapped {
    addr: NonNull<c_void>,
    len: usize,
}

impl Mapped {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped readable at `addr` for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} bytes)", self.len)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let key = (self.addr.as_ptr() as usize, self.len);
        lock().retain(|&m| m != key);
        // SAFETY: the range was mapped by `map` and no slice of it outlives `self`.
        let _ = unsafe { munmap(self.addr, self.len) };
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(usize, usize)>> {
    MAPPED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Says that `sent` (a piece of a value just handed to the database) is no longer needed in
/// memory. For a piece of a spooled message its pages leave the process (they come back from
/// the file if read again); for anything else this does nothing.
pub fn release(sent: &[u8]) {
    let (start, end) = (sent.as_ptr() as usize, sent.as_ptr() as usize + sent.len());
    let page = page_size();
    let mapped = lock();
    let Some(&(base, len)) = mapped
        .iter()
        .find(|&&(base, len)| start >= base && end <= base + len && start < end)
    else {
        return;
    };
    // Whole pages only, except the mapping's last (partial) page once the end is reached.
    let from = start & !(page - 1);
    let to = if end == base + len {
        (end + page - 1) & !(page - 1)
    } else {
        end & !(page - 1)
    };
    if let Some(addr) = NonNull::new(from as *mut c_void).filter(|_| to > from) {
        // SAFETY: [from, to) lies inside a live read-only shared file mapping (checked under
        // the lock that `Mapped::drop` takes); dropping its pages loses nothing, since later
        // reads fault them in from the file again.
        let _ = unsafe { madvise(addr, to - from, MmapAdvise::MADV_DONTNEED) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spooled(data: &[u8]) -> Mapped {
        let mut w = Writer::create().unwrap();
        w.copy_from(data).unwrap();
        assert_eq!(w.written(), data.len() as u64);
        w.map().unwrap().unwrap()
    }

    #[test]
    fn a_spooled_message_reads_back_exactly() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8).collect();
        let m = spooled(&data);
        assert_eq!(m.bytes(), &data[..]);
    }

    #[test]
    fn released_pages_read_the_same_again() {
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 256) as u8).collect();
        let m = spooled(&data);
        for piece in m.bytes().chunks(65_536) {
            release(piece);
        }
        release(m.bytes());
        assert_eq!(m.bytes(), &data[..]);
    }

    #[test]
    fn release_leaves_other_memory_alone() {
        let heap = vec![7u8; 1 << 20];
        release(&heap);
        assert!(heap.iter().all(|&b| b == 7));
        let m = spooled(b"x");
        let key = (m.bytes().as_ptr() as usize, 1);
        assert!(lock().contains(&key));
        drop(m);
        assert!(!lock().contains(&key));
    }

    #[test]
    fn an_empty_spool_maps_to_nothing() {
        assert!(Writer::create().unwrap().map().unwrap().is_none());
    }

    #[test]
    fn the_spool_file_has_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let before = std::fs::read_dir(dir.path()).unwrap().count();
        let w = {
            let mut w = Writer::create_in(dir.path()).unwrap();
            w.write(b"secret mail").unwrap();
            w
        };
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
        let mut back = Vec::new();
        w.read_back(&mut back).unwrap();
        assert_eq!(back, b"secret mail");
    }
}
