//! Large values written straight onto the connection's socket.
//!
//! The `postgres` crate builds a Bind message whole and then copies it into its write
//! buffer: two copies of a 20 MiB message in memory, and no API to send a value in pieces.
//! So for a statement with a value past `message::SPOOL_AT`, virt_mail writes that
//! statement's extended-query messages itself (Parse of the unnamed statement, Bind, Execute,
//! Sync) onto the crate's own socket, each value from the spool or the mapped message file
//! in `spool::PIECE`s that leave memory once written, and reads the answers itself up to
//! ReadyForQuery. This happens between two of the crate's calls, on the connection's thread,
//! once the crate has prepared the statement (which gave the parameter and column types):
//! the crate has nothing in flight then, and when it runs again the server is idle and in
//! the same transaction state as after one of its own statements.
//!
//! The crate does not expose its socket. `Socket::opened_since` finds it as the one socket
//! its connect opened (`/proc/self/fd` before and after), and `Socket::current` checks that
//! the descriptor is still that socket (same inode) before every use, so a descriptor
//! closed and reused for something else is never written to. When either is not certain,
//! the crate sends the statement itself.

use std::collections::HashSet;
use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, RawFd};

use bytes::BytesMut;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{Format, Type};
use postgres_protocol::message::backend::{DataRowBody, ErrorFields, Message};
use postgres_protocol::message::frontend;

use super::{Param, server_error, to_value};
use crate::backend::{Row, open_fds};
use crate::error::{DbError, DbStep, Retry};
use crate::spool::{self, PIECE};

/// The crate's connection socket, by descriptor and inode.
#[derive(Debug)]
pub struct Socket {
    fd: RawFd,
    inode: u64,
}

impl Socket {
    /// The one socket opened since `before` was taken; `None` unless there is exactly one.
    pub fn opened_since(before: &HashSet<RawFd>) -> Option<Socket> {
        Self::the_one(open_fds()?.into_iter().filter(|fd| !before.contains(fd)))
    }

    /// The one socket among `fds`, if there is exactly one.
    fn the_one(fds: impl IntoIterator<Item = RawFd>) -> Option<Socket> {
        let mut sockets = fds.into_iter().filter_map(|fd| {
            Some(Socket {
                fd,
                inode: socket_inode(fd)?,
            })
        });
        let socket = sockets.next()?;
        sockets.next().is_none().then_some(socket)
    }

    /// The descriptor, if it is still this socket.
    pub fn current(&self) -> Option<BorrowedFd<'_>> {
        (socket_inode(self.fd) == Some(self.inode))
            // SAFETY: `fd` is open and is the socket found at connect, which the crate's
            // client (alive for as long as this thread runs jobs) owns.
            .then(|| unsafe { BorrowedFd::borrow_raw(self.fd) })
    }
}

impl std::fmt::Display for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "descriptor {} (socket inode {})", self.fd, self.inode)
    }
}

fn socket_inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat only reads the descriptor's status; a closed descriptor is EBADF.
    let stat = nix::sys::stat::fstat(unsafe { BorrowedFd::borrow_raw(fd) }).ok()?;
    (stat.st_mode & nix::libc::S_IFMT == nix::libc::S_IFSOCK).then_some(stat.st_ino)
}

/// Runs `sql` with `params` (their types as prepared) and returns its first row, decoded by
/// `columns`' types. Every error is classified as the crate's would be.
pub fn run(
    socket: BorrowedFd<'_>,
    sql: &str,
    types: &[Type],
    columns: &[Type],
    params: &[Param<'_>],
) -> Result<Option<Row>, DbError> {
    let lost = |e: io::Error| {
        DbError::new(
            DbStep::Execute,
            Retry::Transient,
            format!("writing the statement to the server: {e}"),
        )
    };
    let head = bind_head(params)?;
    let mut out = Sender {
        socket,
        pending: BytesMut::with_capacity(sql.len() + 256),
    };
    frontend::parse("", sql, types.iter().map(Type::oid), &mut out.pending).map_err(lost)?;
    out.pending.extend_from_slice(&head);
    for param in params {
        // Length checked by bind_head.
        out.pending
            .extend_from_slice(&(param.bytes.len() as i32).to_be_bytes());
        out.value(param.bytes).map_err(lost)?;
    }
    // One result format for every column: binary, as the crate asks.
    out.pending.extend_from_slice(&[0, 1, 0, 1]);
    frontend::execute("", 0, &mut out.pending).map_err(lost)?;
    frontend::sync(&mut out.pending);
    out.write(&[]).map_err(lost)?;
    answers(socket, columns)
}

/// Bind's fields before the values: its length, the unnamed portal and statement, each
/// value's format, the number of values.
fn bind_head(params: &[Param<'_>]) -> Result<Vec<u8>, DbError> {
    let too_big = || {
        DbError::new(
            DbStep::Execute,
            Retry::Permanent,
            "the statement's values exceed PostgreSQL's message limit".into(),
        )
    };
    let count = u16::try_from(params.len()).map_err(|_| too_big())?;
    let mut len: usize = 4 + 2 + 2 + 2 * params.len() + 2 + 4;
    for param in params {
        i32::try_from(param.bytes.len()).map_err(|_| too_big())?;
        len += 4 + param.bytes.len();
    }
    let len = i32::try_from(len).map_err(|_| too_big())?;
    let mut head = Vec::with_capacity(11 + 2 * params.len());
    head.push(b'B');
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&[0, 0]);
    head.extend_from_slice(&count.to_be_bytes());
    for param in params {
        let code: u16 = match param.format {
            Format::Text => 0,
            Format::Binary => 1,
        };
        head.extend_from_slice(&code.to_be_bytes());
    }
    head.extend_from_slice(&count.to_be_bytes());
    Ok(head)
}

/// Writes to the (non-blocking) socket: small parts gathered, large values a piece at a time.
struct Sender<'s> {
    socket: BorrowedFd<'s>,
    pending: BytesMut,
}

impl Sender<'_> {
    fn value(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() <= PIECE {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        }
        for piece in bytes.chunks(PIECE) {
            self.write(piece)?;
            spool::release(piece);
        }
        Ok(())
    }

    /// Writes what is pending, then `piece`.
    fn write(&mut self, piece: &[u8]) -> io::Result<()> {
        let mut slices = [IoSlice::new(&self.pending), IoSlice::new(piece)];
        let mut left = &mut slices[..];
        while left.iter().any(|s| !s.is_empty()) {
            match nix::sys::uio::writev(self.socket, left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => wait(self.socket, PollFlags::POLLOUT)?,
                Err(e) => return Err(e.into()),
            }
        }
        self.pending.clear();
        Ok(())
    }
}

/// Blocks until the socket is ready for `flags` (the socket is the crate's, non-blocking).
/// No limit here: the call's own hard limit abandons the connection.
fn wait(socket: BorrowedFd<'_>, flags: PollFlags) -> io::Result<()> {
    let mut fds = [PollFd::new(socket, flags)];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads the answers up to ReadyForQuery: the first row, or the first error.
fn answers(socket: BorrowedFd<'_>, columns: &[Type]) -> Result<Option<Row>, DbError> {
    let broken = |what: String| DbError::new(DbStep::Execute, Retry::Transient, what);
    let mut buf = BytesMut::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let mut first = None;
    let mut failure = None;
    loop {
        while let Some(message) =
            Message::parse(&mut buf).map_err(|e| broken(format!("reading the answer: {e}")))?
        {
            match message {
                // Errors are kept until ReadyForQuery: the connection stays in step.
                Message::DataRow(row) if first.is_none() && failure.is_none() => {
                    match decode(&row, columns) {
                        Ok(values) => first = Some(values),
                        Err(e) => failure = Some(broken(e)),
                    }
                }
                Message::ErrorResponse(body) if failure.is_none() => {
                    failure = Some(from_fields(body.fields()));
                }
                Message::NoticeResponse(body) => {
                    let notice = from_fields(body.fields());
                    crate::debug!("postgres notice: {}", notice.message);
                }
                Message::ReadyForQuery(_) => return failure.map_or(Ok(first), Err),
                Message::ParseComplete
                | Message::BindComplete
                | Message::DataRow(_)
                | Message::ErrorResponse(_)
                | Message::CommandComplete(_)
                | Message::EmptyQueryResponse
                | Message::NoData
                | Message::PortalSuspended
                | Message::ParameterStatus(_)
                | Message::NotificationResponse(_) => {}
                _ => return Err(broken("unexpected message from the server".into())),
            }
        }
        match nix::unistd::read(socket, &mut chunk) {
            Ok(0) => {
                return Err(
                    failure.unwrap_or_else(|| broken("the server closed the connection".into()))
                );
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                wait(socket, PollFlags::POLLIN).map_err(|e| broken(format!("reading: {e}")))?
            }
            Err(e) => return Err(broken(format!("reading the answer: {e}"))),
        }
    }
}

fn decode(row: &DataRowBody, columns: &[Type]) -> Result<Row, String> {
    let ranges: Vec<_> = row
        .ranges()
        .collect()
        .map_err(|e| format!("reading a row: {e}"))?;
    if ranges.len() != columns.len() {
        return Err(format!(
            "a row of {} columns where {} were described",
            ranges.len(),
            columns.len()
        ));
    }
    Ok(ranges
        .into_iter()
        .zip(columns)
        .map(|(range, ty)| to_value(ty, range.map(|r| &row.buffer()[r])))
        .collect())
}

/// An ErrorResponse's (or NoticeResponse's) fields as the crate's errors are classified.
fn from_fields(mut fields: ErrorFields<'_>) -> DbError {
    let (mut code, mut message, mut detail, mut hint) = (None, None, None, None);
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            b'D' => detail = Some(value),
            b'H' => hint = Some(value),
            _ => {}
        }
    }
    let message = message.unwrap_or_else(|| "error without a message".into());
    match code {
        Some(code) => server_error(
            DbStep::Execute,
            &code,
            &message,
            detail.as_deref(),
            hint.as_deref(),
        ),
        None => DbError::new(DbStep::Execute, Retry::Transient, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_head_counts_every_field() {
        let params = [
            Param {
                bytes: b"abc",
                format: Format::Text,
            },
            Param {
                bytes: &[0; 300],
                format: Format::Binary,
            },
        ];
        let head = bind_head(&params).unwrap();
        // Length: itself, two empty names, 2 + 2×2 formats, count, 4 + 3 and 4 + 300 values,
        // 2 + 2 result format.
        let len: i32 = 4 + 2 + 2 + 4 + 2 + 7 + 304 + 4;
        let mut expected = vec![b'B'];
        expected.extend_from_slice(&len.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 2]);
        assert_eq!(head, expected);
    }

    #[test]
    fn no_values_is_an_empty_bind() {
        let head = bind_head(&[]).unwrap();
        assert_eq!(head, [b'B', 0, 0, 0, 14, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn only_one_socket_is_taken_and_only_while_it_is_open() {
        use std::os::fd::AsRawFd;
        let file = tempfile::tempfile().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(Socket::the_one([file.as_raw_fd()]).is_none(), "a file");
        assert!(
            Socket::the_one([a.as_raw_fd(), b.as_raw_fd()]).is_none(),
            "two"
        );
        let socket = Socket::the_one([file.as_raw_fd(), a.as_raw_fd()]).expect("one socket");
        assert_eq!(socket.fd, a.as_raw_fd());
        assert!(socket.current().is_some());
        drop(a);
        assert!(socket.current().is_none(), "closed");
    }

    #[test]
    fn errors_are_classified_by_sqlstate() {
        fn fields(raw: &[u8]) -> DbError {
            let mut buf = BytesMut::from(&b"E"[..]);
            buf.extend_from_slice(&(4 + raw.len() as u32).to_be_bytes());
            buf.extend_from_slice(raw);
            match Message::parse(&mut buf).unwrap() {
                Some(Message::ErrorResponse(body)) => from_fields(body.fields()),
                _ => panic!("not an ErrorResponse"),
            }
        }
        let e = fields(b"SERROR\0C23505\0Mduplicate key\0Dkey (id)=(1)\0\0");
        assert_eq!(e.retry, Retry::Permanent);
        assert_eq!(e.sqlstate.as_deref(), Some("23505"));
        assert!(e.message.contains("duplicate key DETAIL: key (id)=(1)"));
        let e = fields(b"SFATAL\0C57P01\0Mterminating connection\0\0");
        assert_eq!(e.retry, Retry::Transient);
    }
}
