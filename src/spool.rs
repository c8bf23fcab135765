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
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;

use nix::sys::mman::{
    MapFlags, MmapAdvise, ProtFlags, madvise, mmap, mmap_anonymous, mprotect, munmap,
};

/// Where a file is mapped: on a 2 MiB boundary, as the kernel itself places large file
/// mappings. Measured (kernel 6.18, ext4): mapped elsewhere, pages that `release` dropped
/// stayed counted, and a 9 MB message ended with 13 MiB resident instead of 4.8.
const FILE_ALIGN: usize = 2 << 20;

/// The file parts of the mappings alive in this process, as (address, length): `release`
/// touches nothing else.
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

    /// Everything written, read back onto the heap (when the spool fails half-way); the
    /// caller makes room for it first (`written`), so that a failed allocation is an error,
    /// not an abort.
    pub fn read_back(&self, into: &mut Vec<u8>) -> io::Result<()> {
        let start = into.len();
        into.resize(start + self.len as usize, 0);
        self.file.read_exact_at(&mut into[start..], 0)
    }

    /// Maps the finished file read-only. An empty file cannot be mapped: `None`.
    pub fn map(&self) -> io::Result<Option<Mapped>> {
        map_after(&[], &self.file, 0, self.len as usize)
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

/// Maps `len` bytes of `file` from `offset` (a multiple of the page size) read-only, right
/// after `head`: `head` is written at the end of anonymous pages placed just before the
/// file's, so the two read as one slice and the file is never copied. `None` if `len` is 0.
///
/// The file must not shrink while mapped (reading past its new end would raise SIGBUS):
/// the spool has no name, and a queue file is not truncated while it is being delivered.
pub fn map_after(
    head: &[u8],
    file: impl AsFd,
    offset: u64,
    len: usize,
) -> io::Result<Option<Mapped>> {
    let Some(file_len) = NonZeroUsize::new(len) else {
        return Ok(None);
    };
    let page = page_size();
    let head_room = head.len().div_ceil(page) * page;
    let offset = nix::libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    // Room for the head pages, the file, and the slack that puts the file on a 2 MiB boundary.
    let total = file_len.saturating_add(head_room + FILE_ALIGN);
    // SAFETY: a fresh reservation (no access, no memory), which nothing else refers to.
    let base = unsafe {
        mmap_anonymous(
            None,
            total,
            ProtFlags::PROT_NONE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
        )
    }?;
    let unmap = |e: nix::Error| {
        // SAFETY: the reservation made above, not yet handed out.
        let _ = unsafe { munmap(base, total.get()) };
        io::Error::from(e)
    };
    let file_at = (base.as_ptr() as usize + head_room).next_multiple_of(FILE_ALIGN);
    // SAFETY: MAP_FIXED replaces only part of the reservation just made (ours alone) with a
    // read-only shared mapping of the file: [file_at, file_at + len) ends before
    // base + total, as file_at - base <= head_room + FILE_ALIGN.
    unsafe {
        mmap(
            NonZeroUsize::new(file_at),
            file_len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED | MapFlags::MAP_FIXED,
            file,
            offset,
        )
    }
    .map_err(unmap)?;
    let start = file_at - head.len();
    let head_pages = NonZeroUsize::new(head_room)
        .and_then(|room| Some((NonNull::new((file_at - head_room) as *mut c_void)?, room)));
    if let Some((head_pages, room)) = head_pages {
        // SAFETY: the head pages of the reservation, just before the file's, given memory
        // and made writable for the copy, then read-only like the rest; [start, file_at)
        // lies within them.
        unsafe {
            mmap_anonymous(
                Some(head_pages.addr()),
                room,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
            )
            .map_err(unmap)?;
            std::ptr::copy_nonoverlapping(head.as_ptr(), start as *mut u8, head.len());
            mprotect(head_pages, head_room, ProtFlags::PROT_READ).map_err(unmap)?;
        }
    }
    // SAFETY: the file's range was just mapped; advice changes no contents. Read-ahead; and
    // 4 KiB mappings only: a file written in one piece sits in the page cache in 2 MiB
    // folios, which would otherwise be mapped 2 MiB at a time (measured: 4 MiB more).
    if let Some(at) = NonNull::new(file_at as *mut c_void) {
        unsafe {
            let _ = madvise(at, len, MmapAdvise::MADV_SEQUENTIAL);
            let _ = madvise(at, len, MmapAdvise::MADV_NOHUGEPAGE);
        }
    }
    lock().push((file_at, len));
    Ok(Some(Mapped {
        base,
        total: total.get(),
        start: start as *const u8,
        len: head.len() + len,
        file: (file_at, len),
    }))
}

/// A message mapped read-only until dropped: optional head bytes, then a file's pages.
pub struct Mapped {
    /// The whole reservation (head pages and file pages).
    base: NonNull<c_void>,
    total: usize,
    /// The message: `len` bytes from `start`.
    start: *const u8,
    len: usize,
    /// The file's part (address, length): the only pages `release` may drop.
    file: (usize, usize),
}

impl Mapped {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped readable at `start` for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }

    /// The bytes, mapped until the process exits (`release` still drops sent pages).
    pub fn leak(self) -> &'static [u8] {
        let mapped = std::mem::ManuallyDrop::new(self);
        // SAFETY: never unmapped now, so the pages stay readable for the process's life.
        unsafe { std::slice::from_raw_parts(mapped.start, mapped.len) }
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} bytes)", self.len)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        lock().retain(|&m| m != self.file);
        // SAFETY: the reservation was made by `map_after` and no slice of it outlives `self`.
        let _ = unsafe { munmap(self.base, self.total) };
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
    // The part of `sent` that lies in a file mapping (a message's head is not a file's).
    let Some((base, len, start, end)) = mapped
        .iter()
        .map(|&(base, len)| (base, len, start.max(base), end.min(base + len)))
        .find(|&(_, _, start, end)| start < end)
    else {
        return;
    };
    // Whole pages only (the file part starts on a page boundary), and the last, partial
    // page once the file's end is reached.
    let from = start & !(page - 1);
    let to = if end == base + len {
        end.next_multiple_of(page)
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

/// How much of a spooled message a backend passes on at a time before `release`-ing it: the
/// pieces Virtuoso measured best (8 and 64 KiB alike, 1 MiB slower), kept for the others.
pub const PIECE: usize = 64 << 10;

pub fn page_size() -> usize {
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
    fn a_head_and_a_file_read_as_one_slice() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&body).unwrap();
        for head in [&b""[..], b"Delivered-To: a@b\n", &[b'h'; 5000]] {
            let m = map_after(head, &file, 0, body.len()).unwrap().unwrap();
            assert_eq!(&m.bytes()[..head.len()], head);
            assert_eq!(&m.bytes()[head.len()..], &body[..]);
            // Releasing everything drops only file pages: the head reads the same after.
            release(m.bytes());
            assert_eq!(&m.bytes()[..head.len()], head);
            assert_eq!(&m.bytes()[head.len()..], &body[..]);
        }
        let page = page_size();
        let m = map_after(b"x", &file, page as u64, body.len() - page)
            .unwrap()
            .unwrap();
        assert_eq!(m.bytes()[0], b'x');
        assert_eq!(&m.bytes()[1..], &body[page..]);
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
