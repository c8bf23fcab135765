//! Values across the wire: each parameter in the format its inferred type calls for (text
//! through the server's input function, as libpq does; `bytea` as bytes), and each result
//! column printed as PostgreSQL itself prints it (numerics from base 10000, floats with its
//! thresholds, dates and times in ISO form), binary columns kept as bytes.

use std::error::Error as StdError;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, Kind, ToSql, Type};

use crate::error::{DbError, DbStep, Retry};
use crate::macros::Value;

type BoxError = Box<dyn StdError + Sync + Send>;

fn is_bytea(ty: &Type) -> bool {
    *ty == Type::BYTEA || matches!(ty.kind(), Kind::Domain(base) if is_bytea(base))
}

/// One parameter value, sent in the format its inferred type calls for. Accepts every type:
/// in text format the server's input function decides, exactly as with libpq.
pub(super) struct Param<'v> {
    pub(super) bytes: &'v [u8],
    pub(super) format: postgres::types::Format,
}

impl<'v> Param<'v> {
    /// `n` is the parameter's number (`$n`) for messages.
    pub(super) fn new(n: usize, value: &'v Value<'_>, ty: &Type) -> Result<Param<'v>, DbError> {
        let bytes = value.as_bytes();
        if is_bytea(ty) {
            return Ok(Param {
                bytes,
                format: postgres::types::Format::Binary,
            });
        }
        let problem = match std::str::from_utf8(bytes) {
            Err(e) => Some(format!(
                "is not valid UTF-8 (byte offset {})",
                e.valid_up_to()
            )),
            Ok(_) => bytes
                .iter()
                .position(|&b| b == 0)
                .map(|at| format!("contains a NUL byte (offset {at})")),
        };
        if let Some(problem) = problem {
            return Err(DbError::new(
                DbStep::Execute,
                Retry::Permanent,
                format!(
                    "parameter ${n} has type {} but its value ({} bytes) {problem}, which a \
                     PostgreSQL text value cannot hold; nothing was stored: use a bytea column \
                     for the message",
                    ty.name(),
                    bytes.len()
                ),
            ));
        }
        Ok(Param {
            bytes,
            format: postgres::types::Format::Text,
        })
    }
}

impl std::fmt::Debug for Param<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes, {:?}>", self.bytes.len(), self.format)
    }
}

impl ToSql for Param<'_> {
    /// Copies the value into the Bind message a piece at a time, dropping each piece of a
    /// spooled message from memory once copied. A large value comes here only when `direct`
    /// cannot send it (its socket was not identified): the Bind message and the connection's
    /// write buffer then hold it, but not a third copy of our own.
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.reserve(self.bytes.len());
        for piece in self.bytes.chunks(crate::spool::PIECE) {
            out.extend_from_slice(piece);
            crate::spool::release(piece);
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.to_sql(ty, out)
    }

    fn encode_format(&self, _: &Type) -> postgres::types::Format {
        self.format
    }
}

/// A result cell as the server sent it (binary format), or `None` for NULL.
pub(super) struct Raw<'a>(pub(super) Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw<'a>, BoxError> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Raw<'a>, BoxError> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A result cell as a macro value: the text PostgreSQL prints for the common types, bytes
/// for `bytea`, empty for NULL; other types as their UTF-8 text when valid, else bytes.
pub(super) fn to_value(ty: &Type, raw: Option<&[u8]>) -> Value<'static> {
    let Some(raw) = raw else {
        return Value::empty();
    };
    if *ty == Type::BYTEA {
        return Value::Bytes(raw.to_vec().into());
    }
    match decode(ty, raw) {
        Some(text) => Value::Text(text.into()),
        None => match std::str::from_utf8(raw) {
            Ok(text) => Value::Text(text.to_string().into()),
            Err(_) => Value::Bytes(raw.to_vec().into()),
        },
    }
}

/// The text form of a binary value of a type we know; `None` to fall back to the raw bytes.
fn decode(ty: &Type, raw: &[u8]) -> Option<String> {
    if let Kind::Domain(base) = ty.kind() {
        return decode(base, raw);
    }
    let text = match *ty {
        Type::BOOL => match raw {
            [0] => "f".to_string(),
            [_] => "t".to_string(),
            _ => return None,
        },
        Type::INT2 => i16::from_be_bytes(raw.try_into().ok()?).to_string(),
        Type::INT4 => i32::from_be_bytes(raw.try_into().ok()?).to_string(),
        Type::INT8 => i64::from_be_bytes(raw.try_into().ok()?).to_string(),
        Type::OID | Type::XID | Type::CID => u32::from_be_bytes(raw.try_into().ok()?).to_string(),
        Type::FLOAT4 => float_text(f32::from_be_bytes(raw.try_into().ok()?), 6),
        Type::FLOAT8 => float_text(f64::from_be_bytes(raw.try_into().ok()?), 15),
        Type::NUMERIC => numeric_text(raw)?,
        Type::JSONB => std::str::from_utf8(raw.strip_prefix(&[1])?)
            .ok()?
            .to_string(),
        Type::UUID => uuid_text(raw)?,
        Type::DATE => date_text(i32::from_be_bytes(raw.try_into().ok()?)),
        Type::TIME => time_text(i64::from_be_bytes(raw.try_into().ok()?)),
        Type::TIMESTAMP => timestamp_text(i64::from_be_bytes(raw.try_into().ok()?), ""),
        Type::TIMESTAMPTZ => timestamp_text(i64::from_be_bytes(raw.try_into().ok()?), "+00"),
        // text, varchar, bpchar, name, unknown, "char", json, xml, enums, citext…: the binary
        // form is the text itself.
        _ => return None,
    };
    Some(text)
}

/// A float as PostgreSQL prints it (shortest exact digits; exponent form below 1e-4 or
/// from 10^`precision`, which is 15 for float8 and 6 for float4).
fn float_text<F: std::fmt::LowerExp + Into<f64> + Copy>(v: F, precision: i32) -> String {
    let f: f64 = v.into();
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest round-trip digits of the original width: "-1.25e-7".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(sign);
    if (-4..precision).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exp_sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{exp_sign}{:02}", exp.unsigned_abs()));
    }
    out
}

/// The binary NUMERIC format (base-10000 digits, weight, sign, display scale) as text.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        let b = raw.get(i * 2..i * 2 + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    };
    let ndigits = word(0)? as i16;
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    }
    let ndigits = usize::try_from(ndigits).ok()?;
    let digits = (0..ndigits)
        .map(|i| word(4 + i).filter(|&d| d < 10_000))
        .collect::<Option<Vec<u16>>>()?;
    let digit = |i: i32| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(0).to_string());
        for i in 1..=weight {
            out.push_str(&format!("{:04}", digit(i)));
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut fraction = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(dscale);
        out.push_str(&fraction);
    }
    Some(out)
}

fn uuid_text(raw: &[u8]) -> Option<String> {
    if raw.len() != 16 {
        return None;
    }
    let mut out = String::with_capacity(36);
    for (i, b) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{b:02x}"));
    }
    Some(out)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// PostgreSQL's epoch (2000-01-01) in days after 1970-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// `YYYY-MM-DD`, and whether the year is BC (PostgreSQL prints year 0 as 1 BC).
fn ymd(days_since_pg_epoch: i64) -> (String, bool) {
    let (year, month, day) = civil_from_days(days_since_pg_epoch + PG_EPOCH_DAYS);
    let (year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    (format!("{year:04}-{month:02}-{day:02}"), bc)
}

fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => {
            let (date, bc) = ymd(i64::from(days));
            if bc { format!("{date} BC") } else { date }
        }
    }
}

/// `HH:MM:SS` with the fraction's trailing zeros dropped, as PostgreSQL prints it.
fn time_text(usecs: i64) -> String {
    let secs = usecs.div_euclid(1_000_000);
    let frac = usecs.rem_euclid(1_000_000);
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

fn timestamp_text(usecs: i64, zone: &str) -> String {
    match usecs {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => {
            let (date, bc) = ymd(usecs.div_euclid(USECS_PER_DAY));
            let time = time_text(usecs.rem_euclid(USECS_PER_DAY));
            let era = if bc { " BC" } else { "" };
            format!("{date} {time}{zone}{era}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parameters_refuse_bytes_text_cannot_hold() {
        let body = Value::Bytes(b"a\0b".as_slice().into());
        let e = Param::new(2, &body, &Type::TEXT).unwrap_err();
        assert_eq!((e.step, e.retry), (DbStep::Execute, Retry::Permanent));
        assert!(
            e.message.contains("$2") && e.message.contains("NUL") && e.message.contains("bytea")
        );
        let latin1 = Value::Bytes(b"caf\xe9".as_slice().into());
        let e = Param::new(1, &latin1, &Type::VARCHAR).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        // bytea takes every byte, in binary format; valid text goes as text.
        let p = Param::new(1, &body, &Type::BYTEA).unwrap();
        assert!(matches!(p.format, postgres::types::Format::Binary));
        assert_eq!(p.bytes, b"a\0b");
        let ok = Value::Bytes("café".as_bytes().into());
        assert!(matches!(
            Param::new(1, &ok, &Type::TEXT).unwrap().format,
            postgres::types::Format::Text
        ));
    }

    fn text(ty: &Type, raw: &[u8]) -> String {
        match to_value(ty, Some(raw)) {
            Value::Text(t) => t.into_owned(),
            Value::Bytes(b) => panic!("bytes {b:?}"),
        }
    }

    #[test]
    fn scalars_print_as_postgres_prints_them() {
        assert_eq!(text(&Type::BOOL, &[1]), "t");
        assert_eq!(text(&Type::BOOL, &[0]), "f");
        assert_eq!(text(&Type::INT2, &(-5i16).to_be_bytes()), "-5");
        assert_eq!(text(&Type::INT4, &42i32.to_be_bytes()), "42");
        assert_eq!(
            text(&Type::INT8, &i64::MIN.to_be_bytes()),
            "-9223372036854775808"
        );
        assert_eq!(
            text(&Type::OID, &4_000_000_000u32.to_be_bytes()),
            "4000000000"
        );
        assert_eq!(text(&Type::TEXT, "héllo".as_bytes()), "héllo");
        assert_eq!(text(&Type::JSONB, b"\x01{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(
            text(
                &Type::UUID,
                &[
                    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd,
                    0x38, 0x0a, 0x11
                ]
            ),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert!(
            matches!(to_value(&Type::BYTEA, Some(b"\xff\0")), Value::Bytes(b) if *b == *b"\xff\0")
        );
        assert_eq!(to_value(&Type::INT4, None), Value::empty());
    }

    #[test]
    fn floats_use_postgres_thresholds() {
        let f8 = |v: f64| float_text(v, 15);
        let f4 = |v: f32| float_text(v, 6);
        assert_eq!(f8(0.1), "0.1");
        assert_eq!(f8(1.5), "1.5");
        assert_eq!(f8(100.0), "100");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(0.00001), "1e-05");
        assert_eq!(f8(123_456_789_012_345.0), "123456789012345");
        assert_eq!(f8(1e15), "1e+15");
        assert_eq!(f8(1.25e300), "1.25e+300");
        assert_eq!(f8(-0.0), "-0");
        assert_eq!(f8(0.0), "0");
        assert_eq!(f8(f64::NAN), "NaN");
        assert_eq!(f8(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f4(0.1), "0.1");
        assert_eq!(f4(123_456.0), "123456");
        assert_eq!(f4(1e6), "1e+06");
        assert_eq!(f4(3.4028235e38), "3.4028235e+38");
    }

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> String {
        let mut raw = Vec::new();
        for w in [ndigits as u16, weight as u16, sign, dscale]
            .iter()
            .chain(digits)
        {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        text(&Type::NUMERIC, &raw)
    }

    #[test]
    fn numerics_decode_from_base_10000() {
        assert_eq!(numeric(0, 0, 0, 0, &[]), "0");
        assert_eq!(numeric(0, 0, 0, 2, &[]), "0.00");
        assert_eq!(numeric(1, 0, 0, 0, &[42]), "42");
        assert_eq!(numeric(2, 0, 0x4000, 2, &[12, 3400]), "-12.34");
        assert_eq!(numeric(2, 1, 0, 0, &[1, 0]), "10000");
        assert_eq!(numeric(1, 1, 0, 0, &[1]), "10000");
        assert_eq!(numeric(1, -1, 0, 5, &[12]), "0.00120");
        assert_eq!(numeric(1, -2, 0, 6, &[500]), "0.000005");
        assert_eq!(numeric(3, 2, 0, 3, &[1, 2345, 6789]), "123456789.000");
        assert_eq!(numeric(0, 0, 0xC000, 0, &[]), "NaN");
        assert_eq!(numeric(0, 0, 0xF000, 0, &[]), "-Infinity");
        // Malformed input falls back instead of panicking.
        assert!(numeric_text(&[0, 5, 0, 0]).is_none());
        assert!(numeric_text(&[0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).is_none());
    }

    #[test]
    fn dates_and_times_print_in_iso_form() {
        assert_eq!(date_text(0), "2000-01-01");
        assert_eq!(date_text(-10_957), "1970-01-01");
        assert_eq!(date_text(8_766), "2024-01-01");
        assert_eq!(date_text(-730_119), "0001-01-01");
        assert_eq!(date_text(-730_120), "0001-12-31 BC");
        assert_eq!(date_text(-730_485), "0001-01-01 BC");
        assert_eq!(date_text(i32::MAX), "infinity");
        assert_eq!(time_text(3_723_500_000), "01:02:03.5");
        assert_eq!(time_text(0), "00:00:00");
        let ts = (8_766 * USECS_PER_DAY) + 45_296_000_001;
        assert_eq!(timestamp_text(ts, ""), "2024-01-01 12:34:56.000001");
        assert_eq!(timestamp_text(-1, "+00"), "1999-12-31 23:59:59.999999+00");
        assert_eq!(timestamp_text(i64::MIN, "+00"), "-infinity");
    }
}
