//! The command line, parsed into plain values before anything is opened.
//!
//! clap does the parsing; this module adds what the original accepted beyond it: the `+long`
//! spelling of long options, `-h` meaning the recipient's host (so help is `--help` only), and
//! usage errors that exit 64 mapped by the mailer named *before* the error, never clap's own
//! exit code.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Parser};

use crate::exit::Mailer;

/// Options as given. Values stay `OsString` until the envelope checks them.
#[derive(Debug, Parser)]
#[command(
    name = "virt_mail",
    version,
    about = "Deliver one mail message into an SQL database (MDA for sendmail, Postfix, Exim, qmail, courier, procmail).",
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true,
    override_usage = "virt_mail [-c FILE] [-l LOCAL] [-h HOST] [-s SENDER] [-m MAILER] [--debug] [--check]",
    after_help = "Exit codes follow sysexits(3) (qmail: 99/100/111). See virt_mail(8)."
)]
pub struct Args {
    /// Configuration file [default: this program's path with the extension .ini]
    #[arg(
        short = 'c',
        long = "config-file",
        value_name = "FILE",
        allow_hyphen_values = true
    )]
    pub config: Option<PathBuf>,

    /// Local recipient (default: $LOCAL); user@domain is split when -h is not given
    #[arg(
        short = 'l',
        long = "local",
        value_name = "LOCAL",
        allow_hyphen_values = true
    )]
    pub local: Option<OsString>,

    /// Recipient domain (default: $HOST)
    #[arg(
        short = 'h',
        long = "host",
        value_name = "HOST",
        allow_hyphen_values = true
    )]
    pub host: Option<OsString>,

    /// Envelope sender (default: $SENDER)
    #[arg(
        short = 's',
        long = "sender",
        value_name = "SENDER",
        allow_hyphen_values = true
    )]
    pub sender: Option<OsString>,

    /// MTA profile: sendmail, exim, postfix, qmail or courier
    #[arg(short = 'm', long = "mailer", value_name = "MAILER", default_value = "sendmail",
          value_parser = parse_mailer)]
    pub mailer: Mailer,

    /// Trace each step on stderr (passwords are masked)
    #[arg(long)]
    pub debug: bool,

    /// Dry run: check the configuration, connect, run Verify for the recipient and show what
    /// a delivery would do; reads no message, writes nothing
    #[arg(long)]
    pub check: bool,

    /// Print help and exit
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,

    /// Print version and exit
    #[arg(long, action = ArgAction::Version)]
    version: Option<bool>,

    /// Ignored (with a warning): words after the options
    #[arg(hide = true)]
    pub extra: Vec<OsString>,
}

fn parse_mailer(name: &str) -> Result<Mailer, String> {
    Mailer::from_name(name).ok_or_else(|| {
        format!("unknown mailer {name:?} (expected sendmail, exim, postfix, qmail or courier)")
    })
}

/// Why parsing stopped without options to run with.
#[derive(Debug)]
pub enum Stop {
    /// `--help` or `--version`: print this on stdout, exit 0.
    Info(String),
    /// A bad command line: print this on stderr, exit EX_USAGE mapped for `mailer`.
    Usage { message: String, mailer: Mailer },
}

/// Long options, for the `+long` spelling and the usage-error scan.
const LONG_WITH_VALUE: &[&str] = &["config-file", "local", "host", "sender", "mailer"];
const LONG_FLAGS: &[&str] = &["debug", "check", "help", "version"];
const SHORT_WITH_VALUE: &[u8] = b"clhsm";

/// Parses `argv` (program name first).
pub fn parse(argv: Vec<OsString>) -> Result<Args, Stop> {
    let argv = plus_to_dashes(argv);
    Args::try_parse_from(&argv).map_err(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp => Stop::Info(e.render().to_string()),
        // Which databases this build reaches: builds differ (cargo features), and a DSN for
        // one left out defers with a message that names the feature.
        clap::error::ErrorKind::DisplayVersion => Stop::Info(format!(
            "{}databases: {}\n",
            e.render(),
            crate::backend::BUILT.join(" ")
        )),
        _ => {
            let mut message = e.render().to_string();
            if !message.contains("Usage:") {
                use clap::CommandFactory;
                message = format!("{message}\n{}\n", Args::command().render_usage());
            }
            Stop::Usage {
                message,
                mailer: mailer_before_error(&argv),
            }
        }
    })
}

/// Rewrites `+name` to `--name` for our long options, leaving option values alone.
fn plus_to_dashes(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    let mut takes_value = false;
    let mut options_ended = false;
    for (i, arg) in argv.into_iter().enumerate() {
        if i == 0 || takes_value || options_ended {
            takes_value = false;
            out.push(arg);
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--" {
            options_ended = true;
            out.push(arg);
            continue;
        }
        let rewritten = text.strip_prefix('+').and_then(|rest| {
            let name = rest.split('=').next().unwrap_or(rest);
            let known = LONG_WITH_VALUE.contains(&name) || LONG_FLAGS.contains(&name);
            known.then(|| OsString::from(format!("--{rest}")))
        });
        let arg = rewritten.unwrap_or(arg);
        takes_value = option_takes_next(&arg.to_string_lossy());
        out.push(arg);
    }
    out
}

/// Whether this option word consumes the following word as its value.
fn option_takes_next(word: &str) -> bool {
    if let Some(long) = word.strip_prefix("--") {
        return LONG_WITH_VALUE.contains(&long);
    }
    match word.as_bytes() {
        [b'-', c] => SHORT_WITH_VALUE.contains(c),
        _ => false,
    }
}

/// The mailer in force where parsing failed: the last valid `-m` before the first bad word,
/// as the original's getopt loop would have seen it (`-m qmail -m foo` → qmail).
fn mailer_before_error(argv: &[OsString]) -> Mailer {
    let mut mailer = Mailer::default();
    let mut words = argv.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let value = if let Some(v) = word.strip_prefix("--mailer=") {
            Some(v.to_string())
        } else if word == "--mailer" || word == "-m" {
            words.next().map(|v| v.into_owned())
        } else if let Some(v) = word.strip_prefix("-m") {
            Some(v.strip_prefix('=').unwrap_or(v).to_string())
        } else {
            if option_takes_next(&word) {
                words.next();
            }
            None
        };
        match value.as_deref().map(Mailer::from_name) {
            Some(Some(m)) => mailer = m,
            Some(None) => break,
            None => {}
        }
    }
    mailer
}

/// The name messages are signed with: the program's file name as invoked.
pub fn program_name(argv0: &OsStr) -> String {
    Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "virt_mail".into())
}

/// The original's default: the invoked path with its extension set to `.ini`, so a link
/// named `odbc_mail` reads `odbc_mail.ini`. A bare name is looked up in `PATH` first, the way
/// the shell found it.
pub fn default_config_path(argv0: &OsStr) -> PathBuf {
    let invoked = Path::new(argv0);
    let located = if invoked.components().count() == 1 {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(invoked))
                    .find(|candidate| candidate.is_file())
            })
            .unwrap_or_else(|| invoked.to_path_buf())
    } else {
        invoked.to_path_buf()
    };
    located.with_extension("ini")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Result<Args, Stop> {
        let argv = std::iter::once("virt_mail")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect();
        parse(argv)
    }

    fn usage_mailer(words: &[&str]) -> Mailer {
        match args(words) {
            Err(Stop::Usage { mailer, .. }) => mailer,
            other => panic!("expected a usage error for {words:?}, got {other:?}"),
        }
    }

    #[test]
    fn short_long_attached_and_plus_forms() {
        let a = args(&[
            "-c", "x.ini", "-l", "alice", "-h", "ex.com", "-s", "bob", "-mqmail",
        ])
        .unwrap();
        assert_eq!(a.config.as_deref(), Some(Path::new("x.ini")));
        assert_eq!(a.local.as_deref(), Some(OsStr::new("alice")));
        assert_eq!(a.host.as_deref(), Some(OsStr::new("ex.com")));
        assert_eq!(a.sender.as_deref(), Some(OsStr::new("bob")));
        assert_eq!(a.mailer, Mailer::Qmail);
        let a = args(&[
            "+config-file",
            "y.ini",
            "+local=carol",
            "--mailer=courier",
            "+debug",
        ])
        .unwrap();
        assert_eq!(a.config.as_deref(), Some(Path::new("y.ini")));
        assert_eq!(a.local.as_deref(), Some(OsStr::new("carol")));
        assert_eq!(a.mailer, Mailer::Courier);
        assert!(a.debug);
    }

    #[test]
    fn values_may_start_with_dash_or_plus_and_be_empty() {
        let a = args(&["-s", "-odd", "-l", "+local", "-h", ""]).unwrap();
        assert_eq!(a.sender.as_deref(), Some(OsStr::new("-odd")));
        assert_eq!(a.local.as_deref(), Some(OsStr::new("+local")));
        assert_eq!(a.host.as_deref(), Some(OsStr::new("")));
    }

    #[test]
    fn last_repetition_wins() {
        let a = args(&["-l", "a", "-l", "b"]).unwrap();
        assert_eq!(a.local.as_deref(), Some(OsStr::new("b")));
    }

    #[test]
    fn double_dash_ends_options() {
        let a = args(&["--", "-l", "alice"]).unwrap();
        assert_eq!(a.local, None);
        assert_eq!(a.extra, ["-l", "alice"]);
    }

    #[test]
    fn usage_errors_use_the_mailer_named_before_them() {
        assert_eq!(usage_mailer(&["-m", "foo"]), Mailer::Sendmail);
        assert_eq!(usage_mailer(&["-m", "qmail", "-m", "foo"]), Mailer::Qmail);
        assert_eq!(usage_mailer(&["-mqmail", "-x"]), Mailer::Qmail);
        assert_eq!(usage_mailer(&["-m", "QMAIL"]), Mailer::Sendmail);
        assert_eq!(usage_mailer(&["--mailer=qmail", "--bogus"]), Mailer::Qmail);
        assert_eq!(usage_mailer(&["-m", "qmail", "-l"]), Mailer::Qmail);
    }

    #[test]
    fn help_and_version_are_information() {
        assert!(matches!(args(&["--help"]), Err(Stop::Info(t)) if t.contains("--config-file")));
        assert!(
            matches!(args(&["--version"]), Err(Stop::Info(t)) if t.contains(env!("CARGO_PKG_VERSION")))
        );
        let Err(Stop::Info(version)) = args(&["--version"]) else {
            panic!("--version is information");
        };
        let databases = version
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("databases: "));
        assert_eq!(
            databases,
            Some(crate::backend::BUILT.join(" ").as_str()),
            "{version}"
        );
        assert_eq!(
            databases.unwrap().contains("sqlite"),
            cfg!(feature = "sqlite")
        );
        assert!(
            matches!(args(&["-h"]), Err(Stop::Usage { .. })),
            "-h needs a host"
        );
    }

    #[test]
    fn default_config_follows_the_invoked_name() {
        assert_eq!(
            default_config_path(OsStr::new("/usr/bin/odbc_mail")),
            Path::new("/usr/bin/odbc_mail.ini")
        );
        assert_eq!(
            default_config_path(OsStr::new("./bin/virt_mail.exe")),
            Path::new("./bin/virt_mail.ini")
        );
        assert_eq!(program_name(OsStr::new("/usr/bin/odbc_mail")), "odbc_mail");
    }
}
