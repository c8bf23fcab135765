//! The one error type of a delivery. Each variant knows its sysexits code and which `[Bounce]`
//! text goes with it, so classification happens where the error is made and the numbers are
//! decided in one place (`exit.rs`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::exit::ExitCode;

/// Which `[Bounce]` entry explains a failure to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounce {
    UserUnknown,
    DatabaseError,
    InternalError,
    TooLong,
    QuotaExceeded,
    InvalidSender,
}

impl Bounce {
    /// The key in `[Bounce]`.
    pub fn key(self) -> &'static str {
        match self {
            Bounce::UserUnknown => "UserUnknown",
            Bounce::DatabaseError => "DatabaseError",
            Bounce::InternalError => "InternalError",
            Bounce::TooLong => "TooLong",
            Bounce::QuotaExceeded => "QuotaExceeded",
            Bounce::InvalidSender => "InvalidSender",
        }
    }
}

/// What a database error says about retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The same delivery may well work later (lock, lost connection, full disk…).
    Transient,
    /// Retrying cannot help: the statement or the data is wrong.
    Permanent,
}

/// The step of the database conversation that failed, named as the original named them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbStep {
    Connect,
    Prepare,
    Execute,
    Commit,
}

impl DbStep {
    fn name(self) -> &'static str {
        match self {
            DbStep::Connect => "DB_Connect",
            DbStep::Prepare => "SQLPrepare",
            DbStep::Execute => "SQLExecute",
            DbStep::Commit => "SQLTransact",
        }
    }
}

/// A driver error reduced to what a mail system needs: the step, retry or not, SQLSTATE.
#[derive(Debug)]
pub struct DbError {
    pub step: DbStep,
    pub retry: Retry,
    /// The SQLSTATE, where the backend has one.
    pub sqlstate: Option<String>,
    /// The backend's own error code (SQLite result code, MySQL error number…).
    pub native: Option<String>,
    /// The driver's message. Shown on stderr and syslog only, never in a bounce.
    pub message: String,
    /// `Verify` or `Deliver`, once known.
    pub statement: Option<&'static str>,
}

impl DbError {
    pub fn new(step: DbStep, retry: Retry, message: String) -> DbError {
        DbError {
            step,
            retry,
            sqlstate: None,
            native: None,
            message,
            statement: None,
        }
    }

    pub fn with_sqlstate(mut self, sqlstate: impl Into<String>) -> DbError {
        self.sqlstate = Some(sqlstate.into());
        self
    }

    pub fn with_native(mut self, code: impl Into<String>) -> DbError {
        self.native = Some(code.into());
        self
    }

    /// Names the configured statement that failed.
    pub fn in_statement(mut self, name: &'static str) -> DbError {
        self.statement = Some(name);
        self
    }

    pub fn exit_code(&self) -> ExitCode {
        match (self.step, self.retry) {
            (DbStep::Connect, _) | (_, Retry::Transient) => ExitCode::TempFail,
            (DbStep::Prepare, Retry::Permanent) => ExitCode::Config,
            (_, Retry::Permanent) => ExitCode::Software,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(statement) = self.statement {
            write!(f, "{statement}: ")?;
        }
        write!(f, "{}: {}", self.step.name(), one_line(&self.message))?;
        if let Some(native) = &self.native {
            write!(f, " [{native}]")?;
        }
        if let Some(sqlstate) = &self.sqlstate {
            write!(f, " SQLSTATE={sqlstate}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

/// Everything that can end a delivery other than success.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("Cannot open configuration file {}: {source}", path.display())]
    ConfigOpen { path: PathBuf, source: io::Error },
    #[error("Invalid configuration file {}: {reason}", path.display())]
    ConfigInvalid { path: PathBuf, reason: String },
    #[error("Bad permissions on {}: it must not be group- or world-writable", path.display())]
    ConfigPermissions { path: PathBuf },
    #[error("Missing Deliver statement in [Options] of {}", path.display())]
    MissingDeliver { path: PathBuf },
    #[error("Bad environment: {0}")]
    BadEnvironment(String),
    #[error("Recipient not specified (no -l and no LOCAL in the environment)")]
    NoRecipient,
    #[error("Invalid recipient: {0}")]
    InvalidRecipient(String),
    #[error("Invalid sender: {0}")]
    InvalidSender(String),
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("User unknown: {0}")]
    UserUnknown(String),
    #[error("{name} is missing from the environment (required in {mailer} mode)")]
    MissingHeaderLine {
        name: &'static str,
        mailer: &'static str,
    },
    #[error("Cannot read the message: {0}")]
    ReadMessage(io::Error),
    #[error("Cannot keep the message: its spool file failed and could not be read back: {0}")]
    Spool(io::Error),
    #[error("Timed out after {0} s reading the message")]
    ReadTimeout(u64),
    #[error("Message too long: more than MaxMessageSize = {0} bytes")]
    TooLong(u64),
    #[error("The process that started this delivery has gone; not storing (the MTA will retry)")]
    Abandoned,
    #[error("Maildir: {0}")]
    MaildirConfig(String),
    #[error("Maildir {path}: {step}: {source}")]
    Maildir {
        path: String,
        step: String,
        source: io::Error,
    },
    #[error("Quota exceeded: {detail}")]
    QuotaExceeded { detail: String, temporary: bool },
    #[error("Fallback {program}: cannot be started: {source}")]
    FallbackStart { program: String, source: io::Error },
    #[error("Fallback {program}: {reason}")]
    FallbackFailed { program: String, reason: String },
}

impl Error {
    /// The internal (sysexits) result; `exit.rs` maps it per mailer.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::ConfigOpen { .. } => ExitCode::OsFile,
            Error::ConfigInvalid { .. } | Error::MissingDeliver { .. } => ExitCode::Config,
            Error::BadEnvironment(_) | Error::NoRecipient => ExitCode::Config,
            Error::ConfigPermissions { .. } => ExitCode::TempFail,
            Error::InvalidRecipient(_) | Error::UserUnknown(_) => ExitCode::NoUser,
            Error::InvalidSender(_) => ExitCode::DataErr,
            Error::Database(e) => e.exit_code(),
            Error::MissingHeaderLine { .. } => ExitCode::Software,
            Error::ReadMessage(_) => ExitCode::IoErr,
            Error::ReadTimeout(_) | Error::Abandoned | Error::Spool(_) => ExitCode::TempFail,
            Error::TooLong(_) => ExitCode::NoPerm,
            Error::MaildirConfig(_) => ExitCode::Config,
            Error::Maildir { .. } => ExitCode::TempFail,
            Error::QuotaExceeded {
                temporary: true, ..
            } => ExitCode::TempFail,
            Error::QuotaExceeded { .. } => ExitCode::NoPerm,
            Error::FallbackStart { .. } => ExitCode::IoErr,
            Error::FallbackFailed { .. } => ExitCode::TempFail,
        }
    }

    /// The `[Bounce]` text printed on stdout, if any (usage errors print usage instead).
    pub fn bounce(&self) -> Option<Bounce> {
        match self {
            Error::Usage(_) => None,
            Error::InvalidRecipient(_) | Error::UserUnknown(_) => Some(Bounce::UserUnknown),
            Error::Database(_) => Some(Bounce::DatabaseError),
            Error::TooLong(_) => Some(Bounce::TooLong),
            Error::QuotaExceeded { .. } => Some(Bounce::QuotaExceeded),
            // The sender's fault, not the configuration's: not InternalError's text.
            Error::InvalidSender(_) => Some(Bounce::InvalidSender),
            _ => Some(Bounce::InternalError),
        }
    }
}

/// Driver messages sometimes span lines; a log line must not.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(step: DbStep, retry: Retry) -> Error {
        Error::Database(DbError::new(step, retry, "x".into()).with_sqlstate("HY000"))
    }

    #[test]
    fn database_errors_are_classified_by_step_and_retry() {
        assert_eq!(
            db(DbStep::Connect, Retry::Permanent).exit_code(),
            ExitCode::TempFail
        );
        assert_eq!(
            db(DbStep::Prepare, Retry::Permanent).exit_code(),
            ExitCode::Config
        );
        assert_eq!(
            db(DbStep::Prepare, Retry::Transient).exit_code(),
            ExitCode::TempFail
        );
        assert_eq!(
            db(DbStep::Execute, Retry::Permanent).exit_code(),
            ExitCode::Software
        );
        assert_eq!(
            db(DbStep::Execute, Retry::Transient).exit_code(),
            ExitCode::TempFail
        );
        assert_eq!(
            db(DbStep::Commit, Retry::Transient).exit_code(),
            ExitCode::TempFail
        );
    }

    #[test]
    fn database_error_line_names_step_and_sqlstate_on_one_line() {
        let e = DbError::new(
            DbStep::Execute,
            Retry::Permanent,
            "no column\n  alice".into(),
        )
        .with_sqlstate("42S22")
        .in_statement("Deliver");
        assert_eq!(
            e.to_string(),
            "Deliver: SQLExecute: no column alice SQLSTATE=42S22"
        );
    }
}
