//! Exit codes: the one place where a delivery result becomes the number the MTA reads.
//!
//! Internally every result is a sysexits code. Each mailer profile then maps it once, by the
//! table in the manual page (SPEC §7): the sysexits profiles turn every transient code into
//! `EX_TEMPFAIL` because MTAs disagree on 71 and 74, and qmail speaks 99/100/111.

use std::fmt;

pub use sysexits::ExitCode;

/// The MTA that runs us, chosen with `-m`; it decides how results are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mailer {
    #[default]
    Sendmail,
    Exim,
    Postfix,
    Qmail,
    Courier,
}

impl Mailer {
    /// Every accepted `-m` value, in the order the manual lists them.
    pub const ALL: [Mailer; 5] = [
        Mailer::Sendmail,
        Mailer::Exim,
        Mailer::Postfix,
        Mailer::Qmail,
        Mailer::Courier,
    ];

    /// Parses a `-m` value. Names are lower case only, as in the original.
    pub fn from_name(name: &str) -> Option<Mailer> {
        Mailer::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mailer::Sendmail => "sendmail",
            Mailer::Exim => "exim",
            Mailer::Postfix => "postfix",
            Mailer::Qmail => "qmail",
            Mailer::Courier => "courier",
        }
    }

    /// qmail and courier pass the envelope and the header lines in the environment.
    pub fn uses_qmail_environment(self) -> bool {
        matches!(self, Mailer::Qmail | Mailer::Courier)
    }

    /// Whether errors also go to syslog (the qmail family logs our stderr itself).
    pub fn logs_to_syslog(self) -> bool {
        matches!(self, Mailer::Sendmail | Mailer::Exim | Mailer::Postfix)
    }

    /// The process exit status for an internal result.
    pub fn exit_status(self, code: ExitCode) -> u8 {
        let transient = is_transient(code);
        match self {
            Mailer::Qmail => match code {
                ExitCode::Ok => 99,
                _ if transient => 111,
                _ => 100,
            },
            _ if transient => ExitCode::TempFail as u8,
            _ => code as u8,
        }
    }

    /// The status used when the run is cut short (panic, signal): always "try again".
    pub fn temporary_status(self) -> u8 {
        self.exit_status(ExitCode::TempFail)
    }
}

impl fmt::Display for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Codes that mean "try again later" to at least one MTA, so we report them as temporary.
pub fn is_transient(code: ExitCode) -> bool {
    matches!(code, ExitCode::TempFail | ExitCode::OsErr | ExitCode::IoErr)
}

/// Turns any raw exit status (e.g. a Fallback's) into a sysexits code; others are EX_SOFTWARE.
pub fn from_raw(status: i32) -> ExitCode {
    match status {
        0 => ExitCode::Ok,
        64 => ExitCode::Usage,
        65 => ExitCode::DataErr,
        66 => ExitCode::NoInput,
        67 => ExitCode::NoUser,
        68 => ExitCode::NoHost,
        69 => ExitCode::Unavailable,
        70 => ExitCode::Software,
        71 => ExitCode::OsErr,
        72 => ExitCode::OsFile,
        73 => ExitCode::CantCreat,
        74 => ExitCode::IoErr,
        75 => ExitCode::TempFail,
        76 => ExitCode::Protocol,
        77 => ExitCode::NoPerm,
        78 => ExitCode::Config,
        _ => ExitCode::Software,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of SPEC §7 and the manual page, row by row.
    #[test]
    fn every_code_under_every_mailer() {
        for raw in 0..=255 {
            let code = from_raw(raw);
            for mailer in Mailer::ALL {
                let got = mailer.exit_status(code);
                let want = match (mailer, raw) {
                    (Mailer::Qmail, 0) => 99,
                    (Mailer::Qmail, 71 | 74 | 75) => 111,
                    (Mailer::Qmail, _) => 100,
                    (_, 0) => 0,
                    (_, 71 | 74 | 75) => 75,
                    (_, 64..=78) => raw as u8,
                    (_, _) => 70,
                };
                assert_eq!(got, want, "raw {raw} under {mailer}");
            }
        }
    }

    #[test]
    fn mailer_names_are_lower_case_only() {
        assert_eq!(Mailer::from_name("qmail"), Some(Mailer::Qmail));
        assert_eq!(Mailer::from_name("postfix"), Some(Mailer::Postfix));
        assert_eq!(Mailer::from_name("QMAIL"), None);
        assert_eq!(Mailer::from_name(""), None);
    }

    #[test]
    fn temporary_status_defers_everywhere() {
        assert_eq!(Mailer::Qmail.temporary_status(), 111);
        for m in [
            Mailer::Sendmail,
            Mailer::Exim,
            Mailer::Postfix,
            Mailer::Courier,
        ] {
            assert_eq!(m.temporary_status(), 75);
        }
    }
}
