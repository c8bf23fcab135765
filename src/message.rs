//! The message: standard input read once, under a size cap and a time limit, into the buffer
//! that is later bound to `Deliver`. Bytes are kept exactly (NUL, CR, 8-bit); in qmail and
//! courier mode the envelope header lines from the environment go in front of them.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::Error;
use crate::exit::Mailer;
use crate::{debug, spool};

/// Bytes asked for per read from a pipe (its usual capacity).
const PIPE_CHUNK: usize = 64 * 1024;

/// A read from a pipe fills the buffer's spare room, without growing it, while that room is
/// at least this large: the read that finds the end of a small message then needs no larger
/// buffer (growing one copies it into pages that fault in anew; measured: 20–30 page faults
/// fewer per small delivery).
const MIN_ROOM: usize = 16 * 1024;

/// Above this size a message for a streaming backend goes to the spool (`spool.rs`): the
/// heap then holds at most this much of it, whatever the message's size.
pub const SPOOL_AT: usize = 256 * 1024;

/// The message as it will be stored: header lines (qmail/courier) followed by standard input.
#[derive(Debug, Default)]
pub struct Message {
    body: Body,
    header_len: usize,
}

/// Where the bytes are: on the heap, or mapped from the spool file.
#[derive(Debug)]
enum Body {
    Memory(Vec<u8>),
    Spooled(spool::Mapped),
}

impl Default for Body {
    fn default() -> Body {
        Body::Memory(Vec::new())
    }
}

impl Message {
    /// Everything that is stored.
    pub fn bytes(&self) -> &[u8] {
        match &self.body {
            Body::Memory(bytes) => bytes,
            Body::Spooled(mapped) => mapped.bytes(),
        }
    }

    /// Bytes that came from standard input (what `MaxMessageSize` limits).
    pub fn input_len(&self) -> usize {
        self.bytes().len() - self.header_len
    }

    /// Standard input as it came, without the header lines we put in front.
    pub fn input(&self) -> &[u8] {
        &self.bytes()[self.header_len..]
    }

    /// Whether the message was spooled to a file rather than kept on the heap.
    pub fn is_spooled(&self) -> bool {
        matches!(self.body, Body::Spooled(_))
    }

    /// Everything that is stored, kept until the process exits. One process delivers one
    /// message, so nothing is lost by never freeing it, and a backend that hands the message
    /// to another thread (PostgreSQL's connection) can lend it instead of copying it.
    pub fn leak(self) -> &'static [u8] {
        match self.body {
            Body::Memory(bytes) => bytes.leak(),
            Body::Spooled(mapped) => mapped.leak(),
        }
    }

    /// `input`, kept until the process exits (`leak`): for a thread that writes it to a
    /// Fallback, without a copy of the message.
    pub fn leak_input(self) -> &'static [u8] {
        let header_len = self.header_len;
        &self.leak()[header_len..]
    }
}

/// The lines qmail-local and courier pass in the environment, in the original's order:
/// `UFLINE` (only with `UnixFromLine = 1`), `DTLINE`, `RPLINE`, each exactly as given.
pub fn header_lines(
    mailer: Mailer,
    unix_from_line: bool,
    var: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    if !mailer.uses_qmail_environment() {
        return Ok(out);
    }
    let names: &[&'static str] = if unix_from_line {
        &["UFLINE", "DTLINE", "RPLINE"]
    } else {
        &["DTLINE", "RPLINE"]
    };
    for &name in names {
        let value = var(name).ok_or(Error::MissingHeaderLine {
            name,
            mailer: mailer.name(),
        })?;
        out.extend_from_slice(value.as_bytes());
    }
    Ok(out)
}

/// How `read` keeps the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// On the heap (the backend copies it whole anyway).
    Memory,
    /// Past `SPOOL_AT` bytes, in the spool (the backend streams it in pieces).
    Spool,
}

/// Reads `input` to its end after `header`. More than `limit` bytes of input → `TooLong`
/// (exactly `limit` is accepted); no end within `timeout` → `ReadTimeout` (the mail is
/// deferred long before the MTA's own limit would bounce it).
pub fn read<R: Read + AsFd>(
    input: &mut R,
    header: Vec<u8>,
    limit: Option<u64>,
    timeout: Duration,
    keep: Keep,
) -> Result<Message, Error> {
    let deadline = Instant::now() + timeout;
    let header_len = header.len();
    let stat = nix::sys::stat::fstat(input.as_fd()).ok();
    let regular_file = stat.is_some_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG);
    let allowance = limit.map_or(u64::MAX, |l| l.saturating_add(1));
    if let (Keep::Spool, Some(st)) = (keep, stat.filter(|_| regular_file)) {
        if let Some(message) = map_input(input, &header, st.st_size, limit)? {
            return Ok(message);
        }
    }
    let mut sink = Sink {
        bytes: header,
        spool: None,
        spool_at: (keep == Keep::Spool).then_some(SPOOL_AT),
    };
    let small = |st: &nix::sys::stat::FileStat| st.st_size <= SPOOL_AT as i64;
    if let Some(st) = stat.filter(|st| regular_file && (keep == Keep::Memory || small(st))) {
        // A qmail message file to keep on the heap: size the buffer once and read it in one
        // go, without polling (and without growing the buffer, which costs page faults).
        room(
            &mut sink.bytes,
            (st.st_size.max(0) as u64).min(allowance) as usize,
        )?;
        let total = read_file(input, &mut sink.bytes, allowance)?;
        return finish(sink, total, limit, header_len);
    }
    let mut total: u64 = 0;
    while total < allowance {
        if !regular_file {
            // Files never block; pipes and sockets wait at most until the deadline.
            wait_readable(input, deadline, timeout)?;
        }
        // Zero only what one read can fill (a pipe holds 64 KiB), not the whole capacity.
        let room_left = sink.bytes.capacity() - sink.bytes.len();
        let chunk = if room_left >= MIN_ROOM {
            room_left.min(PIPE_CHUNK)
        } else {
            PIPE_CHUNK
        };
        let want = (chunk as u64).min(allowance - total) as usize;
        let start = sink.bytes.len();
        room(&mut sink.bytes, want)?;
        sink.bytes.resize(start + want, 0);
        let result = input.read(&mut sink.bytes[start..]);
        sink.bytes.truncate(start + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::ReadMessage(e)),
        }
        sink.spill()?;
    }
    finish(sink, total, limit, header_len)
}

/// The message read, once `total` bytes of input are in: refused past the limit.
fn finish(sink: Sink, total: u64, limit: Option<u64>, header_len: usize) -> Result<Message, Error> {
    if let Some(limit) = limit {
        if total > limit {
            return Err(Error::TooLong(limit));
        }
    }
    Ok(Message {
        body: sink.finish()?,
        header_len,
    })
}

/// Room for `more` bytes: a message larger than the memory this process may have (a
/// ulimit, a cgroup) is deferred, to be retried, instead of aborting the process, which an
/// MTA would see as a crash.
fn room(bytes: &mut Vec<u8>, more: usize) -> Result<(), Error> {
    bytes.try_reserve(more).map_err(|_| {
        Error::ReadMessage(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("out of memory ({} bytes wanted)", bytes.len() + more),
        ))
    })
}

/// Reads a regular file to its end (or `allowance` bytes); files never block. (read_to_end
/// reports a failed allocation as `OutOfMemory`, it does not abort.)
fn read_file<R: Read>(input: &mut R, bytes: &mut Vec<u8>, allowance: u64) -> Result<u64, Error> {
    // read_to_end retries EINTR itself and reads into spare capacity without zeroing it.
    let n = input
        .take(allowance)
        .read_to_end(bytes)
        .map_err(Error::ReadMessage)?;
    Ok(n as u64)
}

/// A message file (qmail and courier hand one over) too large for the heap is mapped where
/// it is, after the header lines: the file is already a spool, and copying it would cost a
/// read and a write of the whole message. `None` when it is small, or its read position is
/// not on a page boundary (then it is read as a pipe would be).
fn map_input<R: AsFd>(
    input: &R,
    header: &[u8],
    size: i64,
    limit: Option<u64>,
) -> Result<Option<Message>, Error> {
    use nix::unistd::{Whence, lseek};
    let fd = input.as_fd();
    let Ok(offset) = lseek(fd, 0, Whence::SeekCur) else {
        return Ok(None);
    };
    let (Ok(offset), Ok(left)) = (u64::try_from(offset), u64::try_from(size - offset)) else {
        return Ok(None);
    };
    if left <= SPOOL_AT as u64 || offset % spool::page_size() as u64 != 0 {
        return Ok(None);
    }
    if let Some(limit) = limit.filter(|&limit| left > limit) {
        return Err(Error::TooLong(limit));
    }
    let Ok(left) = usize::try_from(left) else {
        return Ok(None);
    };
    match spool::map_after(header, fd, offset, left) {
        Ok(Some(mapped)) => {
            // Where reading to the end would have left it.
            let _ = lseek(fd, size, Whence::SeekSet);
            Ok(Some(Message {
                body: Body::Spooled(mapped),
                header_len: header.len(),
            }))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            debug!("mapping the message file: {e}; reading it instead");
            Ok(None)
        }
    }
}

/// The message being read: on the heap until it passes `spool_at`, then in the spool, with
/// `bytes` only a buffer for the last read.
struct Sink {
    bytes: Vec<u8>,
    spool: Option<spool::Writer>,
    spool_at: Option<usize>,
}

impl Sink {
    /// Moves what was read to the spool once the message is large enough for it.
    fn spill(&mut self) -> Result<(), Error> {
        if self.spool.is_none() {
            if self.spool_at.is_none_or(|at| self.bytes.len() <= at) {
                return Ok(());
            }
            match spool::Writer::create() {
                Ok(writer) => self.spool = Some(writer),
                Err(e) => return self.keep_in_memory(&e),
            }
        }
        let Some(writer) = &mut self.spool else {
            return Ok(());
        };
        if let Err(e) = writer.write(&self.bytes) {
            return self.keep_in_memory(&e);
        }
        self.bytes.clear();
        self.bytes.shrink_to(PIPE_CHUNK);
        Ok(())
    }

    /// Keeps the message on the heap after all (a full or unwritable spool directory): what
    /// the spool holds is read back. Only if that fails too is the delivery deferred.
    fn keep_in_memory(&mut self, error: &io::Error) -> Result<(), Error> {
        debug!("spool: {error}; the message stays in memory");
        self.spool_at = None;
        if let Some(writer) = self.spool.take() {
            // A message the spool could not map (a ulimit on address space) may not fit on
            // the heap either: that defers, like any message too large for memory.
            let spooled = usize::try_from(writer.written()).unwrap_or(usize::MAX);
            let mut bytes = Vec::new();
            room(&mut bytes, spooled.saturating_add(self.bytes.len()))?;
            writer.read_back(&mut bytes).map_err(Error::Spool)?;
            bytes.append(&mut self.bytes);
            self.bytes = bytes;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Body, Error> {
        if let Some(writer) = &self.spool {
            match writer.map() {
                Ok(Some(mapped)) => return Ok(Body::Spooled(mapped)),
                Ok(None) => {}
                Err(e) => self.keep_in_memory(&e)?,
            }
        }
        Ok(Body::Memory(self.bytes))
    }
}

/// Waits until `input` has data or end-of-file, or the deadline passes.
fn wait_readable<R: AsFd>(input: &R, deadline: Instant, timeout: Duration) -> Result<(), Error> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::ReadTimeout(timeout.as_secs()));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::ReadMessage(io::Error::from(e))),
        }
    }
}

/// Appends the stored bytes to the `MailDebug` file (created 0600: it holds people's mail).
pub fn append_debug_copy(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn from_pipe(data: Vec<u8>, header: &[u8], limit: Option<u64>) -> Result<Message, Error> {
        from_pipe_keeping(data, header, limit, Keep::Memory)
    }

    fn from_pipe_keeping(
        data: Vec<u8>,
        header: &[u8],
        limit: Option<u64>,
        keep: Keep,
    ) -> Result<Message, Error> {
        let (mut reader, mut writer) = io::pipe().unwrap();
        let writer_thread = thread::spawn(move || {
            let _ = writer.write_all(&data);
        });
        let result = read(
            &mut reader,
            header.to_vec(),
            limit,
            Duration::from_secs(10),
            keep,
        );
        drop(reader);
        writer_thread.join().unwrap();
        result
    }

    #[test]
    fn bytes_are_kept_exactly() {
        let data = b"a\0b\r\n\r\xff\xfe\n\n".to_vec();
        let m = from_pipe(data.clone(), b"", None).unwrap();
        assert_eq!(m.bytes(), &data[..]);
        let m = from_pipe(Vec::new(), b"", None).unwrap();
        assert_eq!(m.bytes(), b"");
    }

    #[test]
    fn header_goes_first_and_does_not_count() {
        let m = from_pipe(b"12345".to_vec(), b"Delivered-To: x\n", Some(5)).unwrap();
        assert_eq!(m.bytes(), b"Delivered-To: x\n12345");
        assert_eq!(m.input_len(), 5);
    }

    #[test]
    fn limit_is_inclusive() {
        assert!(from_pipe(vec![b'x'; 1000], b"", Some(1000)).is_ok());
        assert!(matches!(
            from_pipe(vec![b'x'; 1001], b"", Some(1000)),
            Err(Error::TooLong(1000))
        ));
    }

    #[test]
    fn large_input_across_many_reads() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let m = from_pipe(data.clone(), b"", None).unwrap();
        assert_eq!(m.bytes(), &data[..]);
    }

    #[test]
    fn a_large_message_for_a_streaming_backend_is_spooled_exactly() {
        let data: Vec<u8> = (0..(SPOOL_AT as u32 * 3 + 17))
            .map(|i| (i % 241) as u8)
            .collect();
        let m = from_pipe_keeping(data.clone(), b"Delivered-To: x\n", None, Keep::Spool).unwrap();
        assert!(m.is_spooled());
        assert_eq!(m.input(), &data[..]);
        assert_eq!(&m.bytes()[..16], b"Delivered-To: x\n");
        assert_eq!(m.input_len(), data.len());
    }

    #[test]
    fn only_messages_past_the_threshold_are_spooled() {
        let at = vec![b'a'; SPOOL_AT];
        let m = from_pipe_keeping(at.clone(), b"", None, Keep::Spool).unwrap();
        assert!(!m.is_spooled());
        assert_eq!(m.bytes(), &at[..]);
        let past = vec![b'b'; SPOOL_AT + 1];
        assert!(
            from_pipe_keeping(past.clone(), b"", None, Keep::Spool)
                .unwrap()
                .is_spooled()
        );
        assert!(
            !from_pipe_keeping(past, b"", None, Keep::Memory)
                .unwrap()
                .is_spooled()
        );
    }

    #[test]
    fn the_limit_holds_for_a_spooled_message() {
        let limit = SPOOL_AT as u64 * 2;
        let exact = from_pipe_keeping(vec![b'x'; limit as usize], b"", Some(limit), Keep::Spool);
        assert_eq!(exact.unwrap().input_len() as u64, limit);
        assert!(matches!(
            from_pipe_keeping(vec![b'x'; limit as usize + 1], b"", Some(limit), Keep::Spool),
            Err(Error::TooLong(l)) if l == limit
        ));
    }

    #[test]
    fn a_spool_that_cannot_be_read_back_defers() {
        let dir = tempfile::tempdir().unwrap();
        let write_only = std::fs::File::create(dir.path().join("spool")).unwrap();
        let mut sink = Sink {
            bytes: b"tail".to_vec(),
            spool: Some(spool::Writer::over(write_only, 300_000)),
            spool_at: Some(SPOOL_AT),
        };
        let full = io::Error::from_raw_os_error(nix::libc::ENOSPC);
        let error = sink.keep_in_memory(&full).unwrap_err();
        assert!(matches!(error, Error::Spool(_)), "{error:?}");
        assert_eq!(error.exit_code(), crate::exit::ExitCode::TempFail);
    }

    /// Reads a regular file (as qmail hands the message over) from its current position.
    fn from_file(
        file: &mut std::fs::File,
        header: &[u8],
        limit: Option<u64>,
        keep: Keep,
    ) -> Result<Message, Error> {
        read(file, header.to_vec(), limit, Duration::from_secs(1), keep)
    }

    #[test]
    fn a_spooled_regular_file() {
        use std::io::{Seek, SeekFrom};
        let data: Vec<u8> = (0..(SPOOL_AT as u32 + 4096))
            .map(|i| (i % 7) as u8)
            .collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        file.rewind().unwrap();
        let m = from_file(&mut file, b"", None, Keep::Spool).unwrap();
        assert!(m.is_spooled());
        assert_eq!(m.bytes(), &data[..]);
        // Mapped in place after the qmail lines; the read position ends at the end.
        file.rewind().unwrap();
        let head = b"Delivered-To: x\nReturn-Path: <>\n";
        let m = from_file(&mut file, head, None, Keep::Spool).unwrap();
        assert!(m.is_spooled());
        assert_eq!(&m.bytes()[..head.len()], head);
        assert_eq!(m.input(), &data[..]);
        assert_eq!(file.stream_position().unwrap(), data.len() as u64);
        // From a position off a page boundary: read (and spooled) instead of mapped.
        file.seek(SeekFrom::Start(10)).unwrap();
        let m = from_file(&mut file, head, None, Keep::Spool).unwrap();
        assert!(m.is_spooled());
        assert_eq!(m.input(), &data[10..]);
        // The limit, known before anything is read: exact size passes, one less refuses.
        file.rewind().unwrap();
        let exact = Some(data.len() as u64);
        assert!(from_file(&mut file, b"", exact, Keep::Spool).is_ok());
        file.rewind().unwrap();
        let short = Some(data.len() as u64 - 1);
        assert!(matches!(
            from_file(&mut file, b"", short, Keep::Spool),
            Err(Error::TooLong(_))
        ));
    }

    #[test]
    fn regular_file_input() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"from a file\0").unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        let m = from_file(&mut file, b"", None, Keep::Memory).unwrap();
        assert_eq!(m.bytes(), b"from a file\0");
        // A small file for a spooling backend is read the same way, after the qmail lines,
        // from its read position, within the limit.
        use std::io::SeekFrom;
        file.seek(SeekFrom::Start(5)).unwrap();
        let m = from_file(&mut file, b"Delivered-To: x\n", Some(7), Keep::Spool).unwrap();
        assert!(!m.is_spooled());
        assert_eq!(m.bytes(), b"Delivered-To: x\na file\0");
        file.seek(SeekFrom::Start(4)).unwrap();
        assert!(matches!(
            from_file(&mut file, b"", Some(7), Keep::Spool),
            Err(Error::TooLong(7))
        ));
    }

    #[test]
    fn a_silent_writer_times_out() {
        let (mut reader, writer) = io::pipe().unwrap();
        let r = read(
            &mut reader,
            Vec::new(),
            None,
            Duration::from_millis(200),
            Keep::Spool,
        );
        assert!(matches!(r, Err(Error::ReadTimeout(_))));
        drop(writer);
    }

    #[test]
    fn qmail_lines_in_the_original_order() {
        let env = |name: &str| match name {
            "UFLINE" => Some(OsString::from("From bob Thu Jan  1 00:00:00 1970\n")),
            "DTLINE" => Some(OsString::from("Delivered-To: alice@example.com\n")),
            "RPLINE" => Some(OsString::from("Return-Path: <bob@example.org>\n")),
            _ => None,
        };
        let lines = header_lines(Mailer::Qmail, true, env).unwrap();
        assert_eq!(
            lines,
            b"From bob Thu Jan  1 00:00:00 1970\nDelivered-To: alice@example.com\nReturn-Path: <bob@example.org>\n"
        );
        let lines = header_lines(Mailer::Courier, false, env).unwrap();
        assert!(lines.starts_with(b"Delivered-To"));
        assert!(
            header_lines(Mailer::Sendmail, true, env)
                .unwrap()
                .is_empty()
        );
        let missing = header_lines(Mailer::Qmail, false, |n: &str| {
            (n != "RPLINE").then(|| env(n)).flatten()
        });
        assert!(matches!(
            missing,
            Err(Error::MissingHeaderLine { name: "RPLINE", .. })
        ));
    }
}
