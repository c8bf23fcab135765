//! The configuration file: checked (type, parse, permissions) in the original's order, then
//! turned into a typed `Config` whose SQL and Fallback are already scanned, so a broken
//! statement is reported with its file and line before any mail is touched.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Bounce, Error};
use crate::fallback::FallbackCommand;
use crate::ini::{self, Ini};
use crate::macros::Template;
use crate::maildir::MaildirTarget;

/// A configured statement and, when set, the return value that means success.
#[derive(Clone, Debug)]
pub struct Statement {
    pub template: Template,
    /// `VerifyCheckReturn` / `DeliverCheckReturn`: the statement is a procedure call.
    pub check_return: Option<i64>,
}

/// Where a message is stored.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// An SQL statement (the original's only kind).
    Sql(Statement),
    /// `maildir:PATH`.
    Maildir(MaildirTarget),
}

/// What happens to a recipient Verify does not find.
#[derive(Clone, Debug)]
pub enum FallbackAction {
    /// A program, run with the message on its standard input.
    Command(FallbackCommand),
    /// `maildir:PATH`: stored there (a catch-all mailbox).
    Maildir(MaildirTarget),
}

/// The tool's own time limits. Each defers the mail when it fires; the defaults leave a wide
/// margin below the MTAs' limits (Postfix pipe: 1000 s, Exim: 1 h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub statement: Duration,
    pub read: Duration,
    pub fallback: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            statement: Duration::from_secs(60),
            read: Duration::from_secs(300),
            fallback: Duration::from_secs(300),
        }
    }
}

/// Everything the delivery needs from the file, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    /// Where the mail goes: a native URL or an ODBC connect string (may hold a password).
    pub dsn: String,
    /// Where Verify runs, when not on `dsn` (e.g. a read replica).
    pub verify_dsn: Option<String>,
    pub max_message_size: Option<u64>,
    pub remove_prefix: Option<String>,
    pub unix_from_line: bool,
    pub mail_debug: Option<PathBuf>,
    pub verify: Option<Statement>,
    pub deliver: Delivery,
    pub fallback: Option<FallbackAction>,
    /// SQL returning the quota in bytes (column 1) and optionally the usage (column 2).
    pub quota: Option<Statement>,
    /// Over quota defers (75) instead of bouncing (Dovecot's `quota_full_tempfail`).
    pub quota_full_tempfail: bool,
    /// SQL that finds a copy already stored (a row means "do not store again").
    pub duplicate: Option<Statement>,
    pub timeouts: Timeouts,
    /// `[Environment]`, first occurrence of each name, not macro-expanded.
    pub environment: Vec<(String, String)>,
    /// Things an administrator should know but that do not stop delivery (warned on stderr).
    pub warnings: Vec<String>,
    bounce: Vec<(String, String)>,
}

/// Keys of `[Options]`; anything else is reported as a warning, since a misspelt `Verify`
/// would otherwise silently accept every recipient.
const OPTION_KEYS: &[&str] = &[
    "DSN",
    "VerifyDSN",
    "HOST",
    "PORT",
    "UID",
    "PWD",
    "MaxMessageSize",
    "RemovePrefix",
    "UnixFromLine",
    "MailDebug",
    "Verify",
    "VerifyCheckReturn",
    "Deliver",
    "DeliverCheckReturn",
    "Fallback",
    "Folder",
    "Quota",
    "QuotaFullTempfail",
    "Duplicate",
    "ConnectTimeout",
    "StatementTimeout",
    "ReadTimeout",
    "FallbackTimeout",
];

impl Config {
    /// Reads and checks the file: missing or unreadable → EX_OSFILE, not a regular file or
    /// unparsable → EX_CONFIG, group/world-writable → EX_TEMPFAIL.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let open_error = |source| Error::ConfigOpen {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |reason: String| Error::ConfigInvalid {
            path: path.to_path_buf(),
            reason,
        };
        // stat before open: opening a FIFO or a device could block or have side effects.
        let meta = fs::metadata(path).map_err(open_error)?;
        if !meta.is_file() {
            return Err(invalid("not a regular file".into()));
        }
        let mut file = File::open(path).map_err(open_error)?;
        let mode = file.metadata().map_err(open_error)?.permissions().mode();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(open_error)?;
        // The original read bytes, so a file written for it may hold Latin-1 (a comment, a
        // bounce text). Such a file is read as Latin-1: each byte is the character its
        // author typed, and no file is refused for its encoding.
        let text = String::from_utf8(bytes).unwrap_or_else(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            crate::debug!("configuration line {line} is not UTF-8: the file is read as Latin-1");
            e.into_bytes().into_iter().map(char::from).collect()
        });
        let ini =
            ini::parse(&text).map_err(|e| invalid(format!("line {}: {}", e.line, e.reason)))?;
        if mode & 0o022 != 0 {
            return Err(Error::ConfigPermissions {
                path: path.to_path_buf(),
            });
        }
        Config::from_ini(path, &ini)
    }

    /// Builds the typed configuration from a parsed file.
    pub fn from_ini(path: &Path, ini: &Ini) -> Result<Config, Error> {
        let invalid = |line: usize, reason: String| Error::ConfigInvalid {
            path: path.to_path_buf(),
            reason: format!("line {line}: {reason}"),
        };
        let option = |key: &str| {
            ini.get("Options", key)
                .filter(|e| !e.value.is_empty())
                .map(|e| (e.value.as_str(), e.line))
        };
        let text = |key: &str| option(key).map(|(v, _)| v.to_string());
        let number = |key: &str| option(key).map(|(v, _)| ini::parse_number(v));
        let seconds = |key: &str, default: Duration| match number(key) {
            Some(n) if n > 0 => Duration::from_secs(n as u64),
            _ => default,
        };
        let statement = |key: &str, check_key: &str| -> Result<Option<Statement>, Error> {
            let Some((sql, line)) = option(key) else {
                return Ok(None);
            };
            let template =
                Template::parse(sql).map_err(|reason| invalid(line, format!("{key}: {reason}")))?;
            Ok(Some(Statement {
                template,
                check_return: number(check_key),
            }))
        };

        let folder = text("Folder");
        let maildir =
            |key: &str, value: &str, line: usize| -> Result<Option<MaildirTarget>, Error> {
                let Some(rest) = strip_prefix_ignore_case(value, "maildir:") else {
                    return Ok(None);
                };
                MaildirTarget::parse(rest, folder.as_deref())
                    .map(Some)
                    .map_err(|reason| invalid(line, format!("{key}: {reason}")))
            };
        let deliver = match option("Deliver") {
            Some((value, line)) => match maildir("Deliver", value, line)? {
                Some(target) => Delivery::Maildir(target),
                None => Delivery::Sql(statement("Deliver", "DeliverCheckReturn")?.ok_or(
                    Error::MissingDeliver {
                        path: path.to_path_buf(),
                    },
                )?),
            },
            None => {
                return Err(Error::MissingDeliver {
                    path: path.to_path_buf(),
                });
            }
        };
        let fallback = match option("Fallback") {
            Some((value, line)) => Some(match maildir("Fallback", value, line)? {
                Some(target) => FallbackAction::Maildir(target),
                None => FallbackAction::Command(
                    FallbackCommand::parse(value)
                        .map_err(|reason| invalid(line, format!("Fallback: {reason}")))?,
                ),
            }),
            None => None,
        };
        let remove_prefix = ini
            .get("Options", "RemovePrefix")
            .or_else(|| ini.get("Translate", "RemovePrefix"))
            .map(|e| e.value.clone())
            .filter(|v| !v.is_empty());
        let defaults = Timeouts::default();

        let mut warnings = Vec::new();
        if let Some(options) = ini.section("Options") {
            for entry in options.unique_entries() {
                if !OPTION_KEYS
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&entry.key))
                {
                    warnings.push(format!(
                        "{}:{}: unknown key {} in [Options] (ignored)",
                        path.display(),
                        entry.line,
                        entry.key
                    ));
                }
            }
        }
        let pairs = |section: &str| -> Vec<(String, String)> {
            ini.section(section)
                .map(|s| {
                    s.unique_entries()
                        .map(|e| (e.key.clone(), e.value.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };

        Ok(Config {
            path: path.to_path_buf(),
            dsn: text("DSN").unwrap_or_else(|| composed_dsn(&text)),
            verify_dsn: text("VerifyDSN"),
            max_message_size: number("MaxMessageSize")
                .filter(|&n| n > 0)
                .map(|n| n as u64),
            remove_prefix,
            unix_from_line: number("UnixFromLine").unwrap_or(0) != 0,
            mail_debug: text("MailDebug").map(PathBuf::from),
            verify: statement("Verify", "VerifyCheckReturn")?,
            deliver,
            fallback,
            quota: statement("Quota", "")?,
            quota_full_tempfail: number("QuotaFullTempfail").unwrap_or(0) != 0,
            duplicate: statement("Duplicate", "")?,
            timeouts: Timeouts {
                connect: seconds("ConnectTimeout", defaults.connect),
                statement: seconds("StatementTimeout", defaults.statement),
                read: seconds("ReadTimeout", defaults.read),
                fallback: seconds("FallbackTimeout", defaults.fallback),
            },
            environment: pairs("Environment"),
            warnings,
            bounce: pairs("Bounce"),
        })
    }

    /// The `[Bounce]` entry for a failure, as written (macros not yet expanded).
    pub fn bounce_text(&self, kind: Bounce) -> Option<&str> {
        self.bounce
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(kind.key()))
            .map(|(_, v)| v.as_str())
    }

    /// Whether an SQL statement runs after Verify (Deliver, Quota, Duplicate), so the
    /// connection must stay open.
    pub fn sql_after_verify(&self) -> bool {
        matches!(self.deliver, Delivery::Sql(_)) || self.quota.is_some() || self.duplicate.is_some()
    }

    /// Whether anything uses a header macro (`$subject` …), so the headers must be parsed.
    pub fn uses_header_macros(&self) -> bool {
        let sql = [self.quota.as_ref(), self.duplicate.as_ref()]
            .into_iter()
            .flatten()
            .chain(match &self.deliver {
                Delivery::Sql(s) => Some(s),
                Delivery::Maildir(_) => None,
            })
            .any(|s| uses_headers(|n| s.template.uses(n)));
        let maildir = match &self.deliver {
            Delivery::Maildir(t) => uses_headers(|n| t.uses(n)),
            Delivery::Sql(_) => false,
        };
        sql || maildir || self.needs_message_before_verify()
    }

    /// Whether Verify or the Fallback use a header macro: then the message is read before
    /// Verify instead of after it.
    pub fn needs_message_before_verify(&self) -> bool {
        let verify = self
            .verify
            .as_ref()
            .is_some_and(|s| uses_headers(|n| s.template.uses(n)));
        let fallback = match &self.fallback {
            Some(FallbackAction::Command(c)) => uses_headers(|n| c.uses(n)),
            Some(FallbackAction::Maildir(t)) => uses_headers(|n| t.uses(n)),
            None => false,
        };
        verify || fallback
    }

    /// The passwords this configuration holds, so that no output can ever show them.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = crate::report::dsn_secrets(&self.dsn);
        if let Some(dsn) = &self.verify_dsn {
            secrets.extend(crate::report::dsn_secrets(dsn));
        }
        secrets
    }
}

fn uses_headers(uses: impl Fn(&str) -> bool) -> bool {
    crate::headers::NAMES.iter().any(|name| uses(name))
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The original's connect string when no `DSN` is given: Virtuoso on HOST:PORT.
fn composed_dsn(text: &dyn Fn(&str) -> Option<String>) -> String {
    let host = text("HOST").unwrap_or_else(|| "localhost".into());
    let port = text("PORT")
        .map(|p| ini::parse_number(&p))
        .filter(|p| (1..=65534).contains(p))
        .unwrap_or(1111);
    let uid = text("UID").unwrap_or_else(|| "dba".into());
    let pwd = text("PWD").unwrap_or_else(|| "dba".into());
    format!("DSN=noname;HOST={host}:{port};UID={uid};PWD={pwd}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Config, Error> {
        Config::from_ini(Path::new("t.ini"), &ini::parse(text).unwrap())
    }

    #[test]
    fn dsn_is_composed_from_host_port_uid_pwd_with_defaults() {
        let c = config("[Options]\nDeliver = x\n").unwrap();
        assert_eq!(c.dsn, "DSN=noname;HOST=localhost:1111;UID=dba;PWD=dba");
        let c = config("[Options]\nHOST=db\nPORT=1112\nUID=u\nPWD=p\nDeliver = x\n").unwrap();
        assert_eq!(c.dsn, "DSN=noname;HOST=db:1112;UID=u;PWD=p");
        for bad in ["0", "65535", "-1", "x"] {
            let c = config(&format!("[Options]\nPORT={bad}\nDeliver = x\n")).unwrap();
            assert!(c.dsn.contains(":1111;"), "{bad}");
        }
    }

    #[test]
    fn missing_deliver_is_a_config_error() {
        let e = config("[Options]\nVerify = select 1\n").unwrap_err();
        assert!(matches!(e, Error::MissingDeliver { .. }));
        assert!(matches!(
            config("[Bounce]\nTooLong = x\n").unwrap_err(),
            Error::MissingDeliver { .. }
        ));
    }

    #[test]
    fn max_message_size_zero_negative_or_text_is_unlimited() {
        for v in ["0", "-5", "lots", ""] {
            let c = config(&format!("[Options]\nMaxMessageSize = {v}\nDeliver = x\n")).unwrap();
            assert_eq!(c.max_message_size, None, "{v}");
        }
        let c = config("[Options]\nMaxMessageSize = 0x100\nDeliver = x\n").unwrap();
        assert_eq!(c.max_message_size, Some(256));
    }

    #[test]
    fn remove_prefix_from_options_or_translate() {
        let c = config("[Options]\nDeliver = x\n[Translate]\nRemovePrefix = db-\n").unwrap();
        assert_eq!(c.remove_prefix.as_deref(), Some("db-"));
        let c =
            config("[Options]\nRemovePrefix = a-\nDeliver = x\n[Translate]\nRemovePrefix = b-\n")
                .unwrap();
        assert_eq!(c.remove_prefix.as_deref(), Some("a-"));
    }

    #[test]
    fn bad_sql_is_reported_with_its_line() {
        let e = config("[Options]\n\nDeliver = insert into m values ('$local)\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("line 3") && text.contains("Deliver"),
            "{text}"
        );
    }

    #[test]
    fn timeouts_default_and_override() {
        let c = config("[Options]\nDeliver = x\nStatementTimeout = 5\nReadTimeout = 0\n").unwrap();
        assert_eq!(c.timeouts.statement, Duration::from_secs(5));
        assert_eq!(c.timeouts.read, Timeouts::default().read);
    }

    #[test]
    fn maildir_targets_quota_and_duplicate() {
        let c = config(
            "[Options]\nDeliver = Maildir:$1/Maildir\nFolder = $2\nFallback = maildir:/var/mail/catchall\n\
             Quota = SELECT quota FROM u WHERE n = '$local'\nQuotaFullTempfail = 1\n\
             Duplicate = SELECT 1 FROM m WHERE id = '$message_id'\n",
        )
        .unwrap();
        assert!(
            matches!(&c.deliver, Delivery::Maildir(t) if t.describe() == "maildir:$1/Maildir (folder $2)")
        );
        assert!(matches!(&c.fallback, Some(FallbackAction::Maildir(_))));
        assert!(c.quota.is_some() && c.quota_full_tempfail && c.duplicate.is_some());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let e = config("[Options]\nDeliver = maildir:   \n").unwrap_err();
        assert!(e.to_string().contains("maildir: needs a path"), "{e}");
    }

    #[test]
    fn unknown_keys_warn() {
        let c = config("[Options]\nDeliver = x\nVerfy = select 1\n").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("Verfy"));
    }

    #[test]
    fn check_return_and_bounce_texts() {
        let c = config(
            "[Options]\nDeliver = x\nDeliverCheckReturn = 1\n[Bounce]\nuserunknown = no $local\n",
        )
        .unwrap();
        assert!(matches!(&c.deliver, Delivery::Sql(s) if s.check_return == Some(1)));
        assert_eq!(c.bounce_text(Bounce::UserUnknown), Some("no $local"));
        assert_eq!(c.bounce_text(Bounce::TooLong), None);
    }
}
