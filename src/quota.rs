//! Quotas: `Quota = <SQL>` returns the limit in bytes (column 1) and, optionally, what the
//! mailbox already holds (column 2); for a Maildir delivery the usage can also come from
//! Maildir++'s `maildirsize`. A message that does not fit is refused with the
//! `[Bounce] QuotaExceeded` text — permanently (EX_NOPERM, as dovecot-lda -e), or temporarily
//! with `QuotaFullTempfail = 1` so it waits for the owner to make room.

use std::path::Path;

use crate::backend::Row;
use crate::error::Error;
use crate::maildir;

/// Checks that a message of `size` bytes fits. `row` is what `Quota` returned; `maildir` the
/// Maildir being delivered to, if any.
pub fn check(
    row: Option<&Row>,
    size: usize,
    maildir: Option<&Path>,
    temporary: bool,
) -> Result<(), Error> {
    let number = |i: usize| -> Option<i64> {
        let text = row?.get(i)?.to_text().trim().to_string();
        text.parse::<i64>()
            .ok()
            .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
    };
    // No row, no number, zero or negative: no quota.
    let Some(limit) = number(0).filter(|&l| l > 0) else {
        return Ok(());
    };
    let usage = match (number(1), maildir) {
        (Some(used), _) => used.max(0) as u64,
        (None, Some(root)) => maildir::usage(root, limit as u64).map_err(|e| Error::Maildir {
            path: root.display().to_string(),
            step: "read maildirsize".into(),
            source: e,
        })?,
        (None, None) => {
            return Err(Error::MaildirConfig(
                "Quota returned a limit but no usage (column 2), and Deliver is not a maildir"
                    .into(),
            ));
        }
    };
    let after = usage.saturating_add(size as u64);
    if after > limit as u64 {
        return Err(Error::QuotaExceeded {
            detail: format!("{usage} bytes used + {size} bytes > {limit} bytes"),
            temporary,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::macros::Value;

    fn row(cells: &[&'static str]) -> Row {
        cells.iter().map(|c| Value::Text((*c).into())).collect()
    }

    #[test]
    fn limit_and_usage_from_sql() {
        assert!(
            check(Some(&row(&["1000", "900"])), 100, None, false).is_ok(),
            "exactly full fits"
        );
        let e = check(Some(&row(&["1000", "901"])), 100, None, false).unwrap_err();
        assert!(matches!(
            e,
            Error::QuotaExceeded {
                temporary: false,
                ..
            }
        ));
        assert_eq!(e.exit_code(), crate::exit::ExitCode::NoPerm);
        let e = check(Some(&row(&["1000", "1000"])), 1, None, true).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::ExitCode::TempFail);
    }

    #[test]
    fn no_quota_cases() {
        for cells in [&["0", "5"][..], &["-1", "5"], &["", "5"], &["unlimited"]] {
            assert!(
                check(Some(&row(cells)), 1 << 30, None, false).is_ok(),
                "{cells:?}"
            );
        }
        assert!(check(None, 1 << 30, None, false).is_ok());
    }

    #[test]
    fn usage_is_needed_from_somewhere() {
        assert!(matches!(
            check(Some(&row(&["10"])), 1, None, false),
            Err(Error::MaildirConfig(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(
            check(Some(&row(&["10"])), 10, Some(dir.path()), false).is_ok(),
            "no Maildir yet: empty"
        );
    }
}
