//! Virtuoso's wire format: every message is one serialized value ("box"), a tag byte and
//! its payload, integers big-endian. Requests are arrays `[1, id, 0, SERVICE, [args…]]`;
//! answers are arrays `[2 or 3, id, [result], …]`.
//!
//! The decoder reads what a server sends, so it is written for hostile input: every length
//! is checked against a cap before anything is allocated, arrays nest at most `MAX_DEPTH`
//! deep, and an unknown tag is an error rather than a guess (a guessed length would read
//! the rest of the stream out of step).

use std::io::{self, Read};

/// Tags of the values a client sends and a server answers with (Virtuoso's `Dkbox.h`).
pub mod tag {
    /// SQL NULL.
    pub const DB_NULL: u8 = 204;
    /// "No value": what an answer carries in its unused slots.
    pub const NULL: u8 = 180;
    pub const SHORT_STRING: u8 = 181;
    pub const LONG_STRING: u8 = 182;
    pub const C_STRING: u8 = 183;
    /// A long text in pieces: a flags byte, then strings until an empty one.
    pub const STRING_SESSION: u8 = 185;
    pub const SHORT_CONT_STRING: u8 = 186;
    pub const LONG_CONT_STRING: u8 = 187;
    pub const SHORT_INT: u8 = 188;
    pub const LONG_INT: u8 = 189;
    pub const SINGLE_FLOAT: u8 = 190;
    pub const DOUBLE_FLOAT: u8 = 191;
    pub const ARRAY: u8 = 193;
    /// Integers, each with its own tag (what the ODBC driver sends statement options as).
    pub const ARRAY_OF_LONG_PACKED: u8 = 194;
    /// Raw big-endian numbers without tags.
    pub const ARRAY_OF_DOUBLE: u8 = 195;
    pub const LIST: u8 = 196;
    pub const ARRAY_OF_FLOAT: u8 = 202;
    /// Flags (4 bytes) around another value (IRIs, UNAMEs).
    pub const BOX_FLAGS: u8 = 207;
    pub const ARRAY_OF_LONG: u8 = 209;
    /// Dates and times: 10 bytes each.
    pub const DATETIMES: [u8; 5] = [211, 128, 129, 208, 210];
    pub const NUMERIC: u8 = 219;
    pub const IRI_ID: u8 = 243;
    pub const IRI_ID_8: u8 = 244;
    /// A long column's handle, in a result row.
    pub const BLOB_WIDE_HANDLE: u8 = 133;
    pub const BIN: u8 = 222;
    pub const LONG_BIN: u8 = 223;
    pub const WIDE: u8 = 225;
    pub const LONG_WIDE: u8 = 226;
    pub const INT64: u8 = 247;
    /// A parameter whose value the client sends when the server asks (data at execution).
    pub const BLOB_HANDLE: u8 = 126;
}

/// The longest string, binary or array the decoder accepts: far above anything an answer
/// to this client holds (a first row, a procedure's return value), far below what would
/// let a server exhaust memory.
pub const MAX_LEN: usize = 64 << 20;
/// How deep arrays may nest in an answer.
pub const MAX_DEPTH: u32 = 16;

/// One decoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL, and the "no value" box.
    Null,
    Int(i64),
    Float(f64),
    /// A narrow string (bytes as stored; the server's default character set).
    Str(Vec<u8>),
    /// Binary data.
    Bin(Vec<u8>),
    /// A wide string, sent as UTF-8.
    Wide(String),
    Array(Vec<Value>),
    /// A value of a type this client does not read (dates, decimals, IRIs…), by tag.
    Unsupported(u8),
}

impl Value {
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// A string's text, lossily: for messages and SQLSTATEs.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) | Value::Bin(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Value::Wide(s) => Some(s.clone()),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------------------ encoding ---

pub fn put_int(out: &mut Vec<u8>, n: i64) {
    if let Ok(small) = i8::try_from(n) {
        out.extend([tag::SHORT_INT, small as u8]);
    } else if let Ok(int) = i32::try_from(n) {
        out.push(tag::LONG_INT);
        out.extend(int.to_be_bytes());
    } else {
        out.push(tag::INT64);
        out.extend(n.to_be_bytes());
    }
}

/// A narrow string. Its bytes go as they are: Virtuoso's strings are byte strings, and a
/// length prefix (not a terminator) delimits them, so NUL and 8-bit bytes survive.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    match u8::try_from(s.len()) {
        Ok(len) => out.extend([tag::SHORT_STRING, len]),
        Err(_) => {
            out.push(tag::LONG_STRING);
            out.extend((s.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s);
}

/// The header of an array of `len` values; the values follow.
pub fn put_array(out: &mut Vec<u8>, len: usize) {
    out.push(tag::ARRAY);
    put_int(out, len as i64);
}

/// An array of integers (statement options).
pub fn put_longs(out: &mut Vec<u8>, values: &[i64]) {
    out.push(tag::ARRAY_OF_LONG_PACKED);
    put_int(out, values.len() as i64);
    for &v in values {
        put_int(out, v);
    }
}

pub fn put_null(out: &mut Vec<u8>) {
    out.push(tag::NULL);
}

/// A parameter sent at execution: the server answers the statement with "need data" for
/// parameter `index` (1-based), and the client then streams it with `put_chunk` and
/// `put_end_of_data`. This is how the Virtuoso ODBC driver sends `SQLPutData` values, and
/// the only way past the server's 10,000,000-byte limit on a string.
pub fn put_data_at_execution(out: &mut Vec<u8>, index: usize) {
    out.push(tag::BLOB_HANDLE);
    put_int(out, 1); // asked from the client
    put_int(out, index as i64);
    for _ in 0..6 {
        put_int(out, 0);
    }
    put_null(out);
}

/// The header of one piece of a value sent at execution (`len` bytes follow).
pub fn chunk_header(len: usize) -> [u8; 5] {
    let mut header = [tag::LONG_STRING, 0, 0, 0, 0];
    header[1..].copy_from_slice(&(len as u32).to_be_bytes());
    header
}

/// The byte that ends a value sent at execution.
pub const END_OF_DATA: u8 = 0;

// ------------------------------------------------------------------------------ decoding ---

/// Reads one value.
pub fn read(r: &mut impl Read) -> io::Result<Value> {
    read_at(r, 0)
}

fn read_at(r: &mut impl Read, depth: u32) -> io::Result<Value> {
    let tag = byte(r)?;
    Ok(match tag {
        tag::NULL | tag::DB_NULL => Value::Null,
        tag::SHORT_INT => Value::Int(byte(r)? as i8 as i64),
        tag::LONG_INT => Value::Int(i32::from_be_bytes(fixed(r)?) as i64),
        tag::INT64 => Value::Int(i64::from_be_bytes(fixed(r)?)),
        tag::SINGLE_FLOAT => Value::Float(f32::from_be_bytes(fixed(r)?) as f64),
        tag::DOUBLE_FLOAT => Value::Float(f64::from_be_bytes(fixed(r)?)),
        tag::SHORT_STRING | tag::SHORT_CONT_STRING => Value::Str(short(r)?),
        tag::LONG_STRING | tag::C_STRING | tag::LONG_CONT_STRING => Value::Str(long(r)?),
        tag::BIN => Value::Bin(short(r)?),
        tag::LONG_BIN => Value::Bin(long(r)?),
        tag::WIDE | tag::LONG_WIDE => {
            let utf8 = if tag == tag::WIDE {
                short(r)?
            } else {
                long(r)?
            };
            Value::Wide(String::from_utf8(utf8).map_err(|_| invalid("a wide string not in UTF-8"))?)
        }
        tag::STRING_SESSION => {
            let _flags = byte(r)?;
            let mut text = Vec::new();
            loop {
                match nested(r, depth)? {
                    Value::Str(piece) if piece.is_empty() => break,
                    Value::Str(piece) if text.len() + piece.len() <= MAX_LEN => text.extend(piece),
                    _ => return Err(invalid("a string session out of shape")),
                }
            }
            Value::Str(text)
        }
        tag::BOX_FLAGS => {
            let _flags: [u8; 4] = fixed(r)?;
            nested(r, depth)?
        }
        tag::ARRAY | tag::LIST | tag::ARRAY_OF_LONG_PACKED => {
            let len = length(r, depth)?;
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(nested(r, depth)?);
            }
            Value::Array(items)
        }
        tag::ARRAY_OF_LONG | tag::ARRAY_OF_FLOAT | tag::ARRAY_OF_DOUBLE => {
            let len = length(r, depth)?;
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(match tag {
                    tag::ARRAY_OF_LONG => Value::Int(i32::from_be_bytes(fixed(r)?) as i64),
                    tag::ARRAY_OF_FLOAT => Value::Float(f32::from_be_bytes(fixed(r)?) as f64),
                    _ => Value::Float(f64::from_be_bytes(fixed(r)?)),
                });
            }
            Value::Array(items)
        }
        t if tag::DATETIMES.contains(&t) => Value::Str(datetime(&fixed(r)?).into_bytes()),
        tag::NUMERIC => {
            let len = byte(r)? as usize;
            Value::Str(decimal(&bytes(r, len)?).into_bytes())
        }
        tag::IRI_ID => {
            let _: [u8; 4] = fixed(r)?;
            Value::Unsupported(tag)
        }
        tag::IRI_ID_8 => {
            let _: [u8; 8] = fixed(r)?;
            Value::Unsupported(tag)
        }
        tag::BLOB_HANDLE | tag::BLOB_WIDE_HANDLE => {
            // Eight integers (where the value lives, its length…) and its page list, as
            // Virtuoso 7.2 sends them; the value itself would take more requests.
            for _ in 0..8 {
                nested(r, depth)?;
            }
            nested(r, depth)?;
            Value::Unsupported(tag)
        }
        other => return Err(invalid(&format!("a value of unknown type {other}"))),
    })
}

/// A date, time or timestamp as text, the way Virtuoso's ODBC driver writes it:
/// `2026-12-04 21:02:18.092597`, `2000-02-29`, `13:14:15`, and a zone suffix (`Z`,
/// `+02:00`) on values that carry one. The 10 bytes: a day number (3, signed; day 1 is
/// 0001-01-01, Julian calendar before 1582-10-15), then hour (5 bits; the top bit marks a
/// value without a zone), minute (6), second (6), microseconds (20), the kind (3 bits:
/// 1 datetime, 2 date, 3 time) and the zone's offset in minutes (11, signed). A value with a
/// zone is stored in GMT and shown at its offset.
fn datetime(b: &[u8; 10]) -> String {
    let day = i64::from(i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8);
    let zoneless = b[3] & 0x80 != 0;
    let hour = i64::from(b[3] & 0x1f);
    let minute = i64::from(b[4] >> 2);
    let second = (u32::from(b[4] & 3) << 4) | u32::from(b[5] >> 4);
    let micros = (u32::from(b[5] & 0xf) << 16) | (u32::from(b[6]) << 8) | u32::from(b[7]);
    let kind = b[8] >> 5;
    let raw_offset = (i64::from(b[8] & 7) << 8) | i64::from(b[9]);
    let offset = if raw_offset & 0x400 != 0 {
        raw_offset - 0x800
    } else {
        raw_offset
    };
    let mut minutes = day * 1440 + hour * 60 + minute;
    if !zoneless {
        minutes += offset;
    }
    let (year, month, mday) = civil(minutes.div_euclid(1440) + 1_721_423);
    let (hour, minute) = (minutes.rem_euclid(1440) / 60, minutes.rem_euclid(60));
    let fraction = match micros {
        0 => String::new(),
        m if m % 1000 == 0 => format!(".{:03}", m / 1000),
        m => format!(".{m:06}"),
    };
    let zone = match (zoneless, offset) {
        (true, _) => String::new(),
        (false, 0) => "Z".into(),
        (false, o) => format!(
            "{}{:02}:{:02}",
            if o < 0 { '-' } else { '+' },
            o.abs() / 60,
            o.abs() % 60
        ),
    };
    let date = format!("{year:04}-{month:02}-{mday:02}");
    let time = format!("{hour:02}:{minute:02}:{second:02}{fraction}");
    match kind {
        2 => format!("{date}{zone}"),
        3 => format!("{time}{zone}"),
        _ => format!("{date} {time}{zone}"),
    }
}

/// The calendar date of a Julian day number: Gregorian from 1582-10-15, Julian before.
fn civil(jdn: i64) -> (i64, i64, i64) {
    let (b, c) = if jdn >= 2_299_161 {
        let a = jdn + 32_044;
        let b = (4 * a + 3) / 146_097;
        (b, a - 146_097 * b / 4)
    } else {
        (0, jdn + 32_082)
    };
    let d = (4 * c + 3) / 1461;
    let e = c - 1461 * d / 4;
    let m = (5 * e + 2) / 153;
    let day = e - (153 * m + 2) / 5 + 1;
    let month = m + 3 - 12 * (m / 10);
    let year = 100 * b + d - 4800 + m / 10;
    (year, month, day)
}

/// A DECIMAL as text: flags (1 negative, 2 odd number of fraction digits, 4 odd number of
/// integer digits, 8 NaN, 16 infinite), the count of integer bytes, then packed BCD.
fn decimal(payload: &[u8]) -> String {
    let (flags, int_bytes, bcd) = match payload {
        [flags, int_bytes, bcd @ ..] => (*flags, *int_bytes as usize, bcd),
        _ => return "0".into(),
    };
    let sign = if flags & 1 != 0 { "-" } else { "" };
    if flags & 8 != 0 {
        return "NaN".into();
    }
    if flags & 16 != 0 {
        return format!("{sign}Infinity");
    }
    let digits: Vec<char> = bcd
        .iter()
        .flat_map(|b| [b >> 4, b & 15])
        .map(|d| char::from(b'0' + d.min(9)))
        .collect();
    let int_end = (int_bytes * 2).min(digits.len());
    let int_start = usize::from(flags & 4 != 0 && int_end > 0);
    let frac_end = digits.len() - usize::from(flags & 2 != 0 && digits.len() > int_end);
    let int: String = digits[int_start..int_end].iter().collect();
    let frac: String = digits[int_end..frac_end].iter().collect();
    let int = if int.is_empty() { "0".to_string() } else { int };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn nested(r: &mut impl Read, depth: u32) -> io::Result<Value> {
    if depth >= MAX_DEPTH {
        return Err(invalid("values nested too deep"));
    }
    read_at(r, depth + 1)
}

/// An array's length: a tagged integer, checked against the cap (each element takes at
/// least one byte, so a longer count is a lie).
fn length(r: &mut impl Read, depth: u32) -> io::Result<usize> {
    nested(r, depth)?
        .int()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= MAX_LEN)
        .ok_or_else(|| invalid("an array without a valid length"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the server sent {what}"),
    )
}

fn byte(r: &mut impl Read) -> io::Result<u8> {
    let [b] = fixed::<1>(r)?;
    Ok(b)
}

fn fixed<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Bytes after a one-byte length.
fn short(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = byte(r)? as usize;
    bytes(r, len)
}

/// Bytes after a four-byte big-endian length.
fn long(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = u32::from_be_bytes(fixed(r)?) as usize;
    bytes(r, len)
}

fn bytes(r: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    if len > MAX_LEN {
        return Err(invalid("a string longer than the limit"));
    }
    let mut buf = Vec::new();
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> io::Result<Value> {
        read(&mut &bytes[..])
    }

    #[test]
    fn integers_take_the_smallest_form_and_read_back() {
        for n in [
            0,
            1,
            -1,
            127,
            -128,
            128,
            -129,
            1 << 20,
            i32::MAX as i64,
            i32::MIN as i64,
            1 << 40,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_int(&mut out, n);
            let expected_len = if (-128..=127).contains(&n) {
                2
            } else if i32::try_from(n).is_ok() {
                5
            } else {
                9
            };
            assert_eq!(out.len(), expected_len, "{n}");
            assert_eq!(decode(&out).unwrap(), Value::Int(n));
        }
    }

    #[test]
    fn strings_keep_every_byte_and_switch_to_the_long_form_at_256() {
        for len in [0usize, 1, 255, 256, 70_000] {
            let s: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
            let mut out = Vec::new();
            put_str(&mut out, &s);
            assert_eq!(
                out[0],
                if len < 256 {
                    tag::SHORT_STRING
                } else {
                    tag::LONG_STRING
                }
            );
            assert_eq!(decode(&out).unwrap(), Value::Str(s));
        }
    }

    /// The bytes the Virtuoso ODBC driver (libvirtodbc0 7.2) sends for the same request,
    /// captured with strace: the encoder must produce exactly them.
    #[test]
    fn a_request_matches_the_odbc_drivers_bytes() {
        let mut out = Vec::new();
        put_array(&mut out, 5);
        put_int(&mut out, 1);
        put_int(&mut out, 8);
        put_int(&mut out, 0);
        put_str(&mut out, b"TRXC");
        put_array(&mut out, 2);
        put_int(&mut out, 0);
        put_int(&mut out, 0);
        assert_eq!(
            out,
            b"\xc1\xbc\x05\xbc\x01\xbc\x08\xbc\x00\xb5\x04TRXC\xc1\xbc\x02\xbc\x00\xbc\x00"
        );
        let mut blob = Vec::new();
        put_data_at_execution(&mut blob, 3);
        assert_eq!(
            blob,
            b"\x7e\xbc\x01\xbc\x03\xbc\x00\xbc\x00\xbc\x00\xbc\x00\xbc\x00\xbc\x00\xb4"
        );
        let mut options = Vec::new();
        put_longs(&mut options, &[1, 0, 100, 16000]);
        assert_eq!(
            options,
            b"\xc2\xbc\x04\xbc\x01\xbc\x00\xbc\x64\xbd\x00\x00\x3e\x80"
        );
    }

    /// An answer as Virtuoso 7.2 sent it: a row of a SELECT.
    #[test]
    fn an_answer_decodes() {
        let row = b"\xc1\xbc\x04\xbc\x03\xbc\x03\xc1\xbc\x01\xc1\xbc\x02\xbc\x01\xbc\x01\xb4";
        assert_eq!(
            decode(row).unwrap(),
            Value::Array(vec![
                Value::Int(3),
                Value::Int(3),
                Value::Array(vec![Value::Array(vec![Value::Int(1), Value::Int(1)])]),
                Value::Null,
            ])
        );
        let error = b"\xc1\xbc\x03\xbc\x03\xb5\x05S0002\xb5\x05SQ200";
        assert_eq!(
            decode(error).unwrap().array().unwrap()[1].text().as_deref(),
            Some("S0002")
        );
    }

    /// DECIMAL values as Virtuoso 7.2 sent `CAST(… AS DECIMAL)` of each.
    #[test]
    fn decimals_read_as_text() {
        for (payload, text) in [
            ("06010150", "1.5"),
            ("0502012345", "-123.45"),
            ("000005", "0.05"),
            ("04020100", "100"),
            ("020a123456789012345678901230", "12345678901234567890.123"),
            ("040107", "7"),
        ] {
            let mut bytes = vec![tag::NUMERIC, (payload.len() / 2) as u8];
            bytes.extend(
                (0..payload.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&payload[i..i + 2], 16).unwrap()),
            );
            assert_eq!(
                decode(&bytes).unwrap(),
                Value::Str(text.into()),
                "{payload}"
            );
        }
    }

    /// Dates and times as Virtuoso 7.2 sent them, and the text its ODBC driver made of each.
    #[test]
    fn datetimes_read_as_the_odbc_driver_writes_them() {
        for (bytes, text) in [
            ("0b4a7495092169b52000", "2026-12-04 21:02:18.092597"),
            ("0b22bb80000000002000", "1999-01-31 00:00:00"),
            ("0b244580000000004000", "2000-02-29"),
            ("0b22238d38f000006000", "13:14:15"),
            ("08d0ca8c000000002000", "1582-10-15 12:00:00"),
            ("08d0c98c000000002000", "1582-10-04 12:00:00"),
            ("00000180000000002000", "0001-01-01 00:00:00"),
            ("0b4a7413092000002078", "2026-12-04 21:02:18+02:00"),
            ("0b4a7401092000002000", "2026-12-04 01:02:18Z"),
            ("0b4a74010927a12026d4", "2026-12-03 20:02:18.500-05:00"),
            ("0b4a731278000000414a", "2026-12-04+05:30"),
        ] {
            let mut input = vec![tag::DATETIMES[0]];
            input.extend(
                (0..20)
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&bytes[i..i + 2], 16).unwrap()),
            );
            assert_eq!(decode(&input).unwrap(), Value::Str(text.into()), "{bytes}");
        }
    }

    #[test]
    fn hostile_answers_fail_cleanly() {
        let deep: Vec<u8> = std::iter::repeat_n([tag::ARRAY, tag::SHORT_INT, 1], 100)
            .flatten()
            .collect();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("unknown tag", vec![7]),
            ("truncated int", vec![tag::LONG_INT, 0, 0]),
            (
                "huge string",
                vec![tag::LONG_STRING, 0xff, 0xff, 0xff, 0xff, b'a'],
            ),
            ("short string cut", vec![tag::SHORT_STRING, 10, b'a']),
            ("negative array", vec![tag::ARRAY, tag::SHORT_INT, 0xff]),
            (
                "huge array",
                vec![tag::ARRAY, tag::LONG_INT, 0x7f, 0xff, 0xff, 0xff, tag::NULL],
            ),
            ("array without length", vec![tag::ARRAY, tag::NULL]),
            ("bad wide", vec![tag::WIDE, 2, 0xff, 0xfe]),
            ("blob handle cut", vec![tag::BLOB_HANDLE, tag::SHORT_INT, 0]),
            ("too deep", deep),
        ];
        for (name, bytes) in cases {
            assert!(decode(&bytes).is_err(), "{name}: {:?}", decode(&bytes));
        }
    }
}
