//! Result columns as the `mysql` client prints them: integers and decimals as digits,
//! FLOAT with 6 significant digits and DOUBLE shortest-exact in the server's own layout,
//! dates and times with the column's fractional digits, binary strings, BLOBs, BIT and
//! GEOMETRY as bytes.

use mysql::Column;
use mysql::consts::ColumnType;

use crate::backend::Row;
use crate::macros::Value;

/// The `binary` character set: the column holds bytes, not text.
const BINARY_CHARSET: u16 = 63;

pub(super) fn to_row(row: mysql::Row) -> Row {
    let columns = row.columns();
    row.unwrap()
        .into_iter()
        .zip(columns.iter())
        .map(|(value, column)| to_value(value, column))
        .collect()
}

/// A column as the `mysql` client would print it.
fn to_value(value: mysql::Value, column: &Column) -> Value<'static> {
    use mysql::Value as V;
    let text = |s: String| Value::Text(s.into());
    match value {
        V::NULL => Value::empty(),
        V::Int(i) => text(i.to_string()),
        V::UInt(u) => text(u.to_string()),
        // FLOAT with the 6 significant digits the server prints, DOUBLE shortest-exact.
        V::Float(f) => text(float_text(&format!("{:.5e}", f64::from(f)))),
        V::Double(f) => text(float_text(&format!("{f:e}"))),
        V::Date(y, mo, d, h, mi, s, us) => {
            let date = format!("{y:04}-{mo:02}-{d:02}");
            if matches!(
                column.column_type(),
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
            ) {
                text(date)
            } else {
                text(format!(
                    "{date} {h:02}:{mi:02}:{s:02}{}",
                    fraction(us, column.decimals())
                ))
            }
        }
        V::Time(negative, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            text(format!(
                "{}{hours:02}:{mi:02}:{s:02}{}",
                if negative { "-" } else { "" },
                fraction(us, column.decimals())
            ))
        }
        V::Bytes(bytes) => {
            if is_binary(column) {
                return Value::Bytes(bytes.into());
            }
            match String::from_utf8(bytes) {
                Ok(s) => text(s),
                Err(e) => Value::Bytes(e.into_bytes().into()),
            }
        }
    }
}

/// Bytes, not text: binary strings and BLOBs (charset 63), BIT, GEOMETRY. DECIMAL, ENUM,
/// SET and JSON are text even where the server labels them with charset 63.
fn is_binary(column: &Column) -> bool {
    match column.column_type() {
        ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => column.character_set() == BINARY_CHARSET,
        ColumnType::MYSQL_TYPE_BIT
        | ColumnType::MYSQL_TYPE_GEOMETRY
        | ColumnType::MYSQL_TYPE_VECTOR => true,
        _ => false,
    }
}

/// `.ffffff` cut to the column's declared fractional digits (none for 0; 31 = unspecified).
fn fraction(micros: u32, decimals: u8) -> String {
    let digits = match decimals {
        0 => return String::new(),
        1..=6 => usize::from(decimals),
        _ if micros == 0 => return String::new(),
        _ => 6,
    };
    let full = format!("{micros:06}");
    format!(".{}", &full[..digits])
}

/// A float laid out as the server's `my_gcvt` does, from Rust's `{:e}` form (`-1.25e-7`):
/// plain decimals while the decimal point is within 15 digits (`100000000000000`,
/// `0.00000000025`), otherwise exponent form (`1e15`, `1.5e-16`).
fn float_text(scientific: &str) -> String {
    let (sign, unsigned) = match scientific.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", scientific),
    };
    let Some((mantissa, exponent)) = unsigned.split_once('e') else {
        return scientific.to_string(); // inf, NaN: not storable in MySQL anyway
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return scientific.to_string();
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0",
        d => d,
    };
    let len = digits.len() as i32;
    // Position of the decimal point relative to the first digit, as dtoa reports it.
    let point = exponent + 1;
    const MAX_POINT_FOR_F: i32 = 15; // DBL_DIG
    if point > -MAX_POINT_FOR_F && (point <= MAX_POINT_FOR_F || len > point) {
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point < len {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        } else {
            format!("{digits}{}", "0".repeat((point - len) as usize))
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        format!("{sign}{first}{fraction}e{exponent}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_the_client_prints_them() {
        let col = |t: ColumnType, decimals: u8, charset: u16| {
            Column::new(t)
                .with_decimals(decimals)
                .with_character_set(charset)
        };
        let text = |v: Value<'static>| match v {
            Value::Text(t) => t.into_owned(),
            Value::Bytes(b) => panic!("bytes {b:?}"),
        };
        use mysql::Value as V;
        let int = col(ColumnType::MYSQL_TYPE_LONGLONG, 0, 63);
        assert_eq!(text(to_value(V::Int(-42), &int)), "-42");
        assert_eq!(
            text(to_value(V::UInt(u64::MAX), &int)),
            "18446744073709551615"
        );
        assert_eq!(text(to_value(V::NULL, &int)), "");
        let dec = col(ColumnType::MYSQL_TYPE_NEWDECIMAL, 2, 63);
        assert_eq!(text(to_value(V::Bytes(b"12.50".to_vec()), &dec)), "12.50");
        let date = col(ColumnType::MYSQL_TYPE_DATE, 0, 63);
        assert_eq!(
            text(to_value(V::Date(2024, 2, 29, 0, 0, 0, 0), &date)),
            "2024-02-29"
        );
        let dt = col(ColumnType::MYSQL_TYPE_DATETIME, 0, 63);
        assert_eq!(
            text(to_value(V::Date(2024, 2, 29, 13, 5, 9, 0), &dt)),
            "2024-02-29 13:05:09"
        );
        let dt3 = col(ColumnType::MYSQL_TYPE_DATETIME, 3, 63);
        assert_eq!(
            text(to_value(V::Date(2024, 2, 29, 13, 5, 9, 120_000), &dt3)),
            "2024-02-29 13:05:09.120"
        );
        let time = col(ColumnType::MYSQL_TYPE_TIME, 0, 63);
        assert_eq!(
            text(to_value(V::Time(true, 1, 2, 3, 4, 0), &time)),
            "-26:03:04"
        );
        let dbl = col(ColumnType::MYSQL_TYPE_DOUBLE, 31, 63);
        // As MariaDB 10.11 prints them (SELECT …, mariadb client).
        for (value, printed) in [
            (2.5, "2.5"),
            (1e20, "1e20"),
            (1e15, "1e15"),
            (1e14, "100000000000000"),
            (1e-5, "0.00001"),
            (1.5e-7, "0.00000015"),
            (-2.5e-10, "-0.00000000025"),
            (1e-15, "0.000000000000001"),
            (1e-16, "1e-16"),
            (1.5e300, "1.5e300"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123456789012345.0, "123456789012345"),
            (1234567890123456.8, "1234567890123456.8"),
            (1.2345678901234568e17, "1.2345678901234568e17"),
            (0.0, "0"),
            (-7.0, "-7"),
        ] {
            assert_eq!(text(to_value(V::Double(value), &dbl)), printed, "{value:e}");
        }
        let flt = col(ColumnType::MYSQL_TYPE_FLOAT, 31, 63);
        for (value, printed) in [
            (1.1f32, "1.1"),
            (2.718_281_7, "2.71828"),
            (16777217.0, "16777200"),
            (1e20, "1e20"),
            (0.000001, "0.000001"),
            (-0.5, "-0.5"),
        ] {
            assert_eq!(text(to_value(V::Float(value), &flt)), printed, "{value:e}");
        }
        let varchar = col(ColumnType::MYSQL_TYPE_VAR_STRING, 0, 45);
        assert_eq!(text(to_value(V::Bytes("zoë".into()), &varchar)), "zoë");
        assert_eq!(
            to_value(V::Bytes(vec![0xff]), &varchar),
            Value::Bytes(vec![0xff].into())
        );
        let blob = col(ColumnType::MYSQL_TYPE_BLOB, 0, 63);
        assert_eq!(
            to_value(V::Bytes(b"ab".to_vec()), &blob),
            Value::Bytes(b"ab".to_vec().into())
        );
    }
}
