//! `--check`: a dry run for administrators. It loads and validates the configuration,
//! connects, runs Verify for the recipient given on the command line, and prints the macros,
//! every statement with its bound values (passwords masked) and the exit status each mailer
//! would receive. It reads no message and writes nothing (Deliver, Quota, Duplicate and the
//! Fallback are shown, not run; a Verify with side effects would still have them).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::app;
use crate::args::Args;
use crate::backend::Limits;
use crate::config::{Config, Delivery, FallbackAction, Statement};
use crate::envelope;
use crate::error::{Bounce, Error};
use crate::exit::{ExitCode, Mailer};
use crate::macros::{Macros, Placeholder, Value, expand_text};
use crate::report;

/// Runs the check and prints the report on stdout. Returns what a delivery would return.
pub fn run(args: &Args, config_path: &Path) -> ExitCode {
    let mut out = String::new();
    let code = check(args, config_path, &mut out);
    let _ = std::io::stdout().write_all(report::redact(&out).as_bytes());
    code
}

fn line(out: &mut String, label: &str, text: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<13}{text}");
}

fn check(args: &Args, config_path: &Path, out: &mut String) -> ExitCode {
    let _ = writeln!(
        out,
        "virt_mail --check: what a delivery would do (nothing is read or written)"
    );
    line(out, "config", config_path.display());
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => return verdict(out, None, &Err(e)),
    };
    report::add_secrets(config.secrets());
    for warning in &config.warnings {
        line(out, "  warning", warning);
    }
    line(out, "DSN", report::mask_dsn(&config.dsn));
    if let Some(dsn) = &config.verify_dsn {
        line(out, "VerifyDSN", report::mask_dsn(dsn));
    }
    line(out, "mailer", args.mailer);
    let result = simulate(args, &config, out);
    verdict(out, Some(&config), &result)
}

/// What would happen, up to the first step that would fail.
fn simulate(args: &Args, config: &Config, out: &mut String) -> Result<Outcome, Error> {
    app::apply_environment(&config.environment)?;
    app::export_flags(args);
    let mut slot = None;
    let envelope = app::resolve_envelope(args, config, &mut slot)?;
    let ext = envelope::printable(std::env::var_os("EXT").as_deref());
    let macros = Macros {
        local: &envelope.local,
        domain: &envelope.domain,
        sender: &envelope.sender,
        recipient: &envelope.recipient,
        ext: &ext,
        ..Macros::default()
    };
    line(
        out,
        "recipient",
        format!(
            "{} (local {:?}, domain {:?})",
            envelope.recipient, envelope.local, envelope.domain
        ),
    );
    line(out, "sender", format!("{:?}", envelope.sender));
    line(
        out,
        "macros",
        "$local $domain $sender $recipient $ext as above; $message_id $subject $from $to $date $size come from the message (empty here)",
    );
    if envelope.local.is_empty() {
        line(
            out,
            "Verify",
            "not run: the local part is empty once RemovePrefix is removed",
        );
        return Ok(unknown(config, &macros, out));
    }
    if let Some(statement) = &config.verify {
        show(out, "Verify", statement, &macros);
    }
    let limits = Limits {
        connect: config.timeouts.connect,
        statement: config.timeouts.statement,
    };
    let Some((_db, columns)) = app::connect_and_verify(config, &macros, limits)? else {
        line(out, "  →", "not found");
        return Ok(unknown(config, &macros, out));
    };
    if config.verify.is_some() {
        let shown: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, v)| format!("${} = {}", i + 1, value(v)))
            .collect();
        line(
            out,
            "  →",
            format!(
                "found: {}",
                if shown.is_empty() {
                    "(no columns)".into()
                } else {
                    shown.join("  ")
                }
            ),
        );
    } else {
        line(out, "Verify", "none: every recipient is accepted");
    }
    let macros = Macros {
        columns: &columns,
        ..macros
    };
    for (name, statement) in [("Duplicate", &config.duplicate), ("Quota", &config.quota)] {
        if let Some(statement) = statement {
            show(out, name, statement, &macros);
            line(out, "", "(runs after the message is read; not run here)");
        }
    }
    match &config.deliver {
        Delivery::Sql(statement) => {
            let with_message = Macros {
                message: Some(b"<the message>"),
                ..macros
            };
            show(out, "Deliver", statement, &with_message);
        }
        Delivery::Maildir(target) => {
            let resolved = target.resolve(&macros)?;
            line(
                out,
                "Deliver",
                format!("{} → {}", target.describe(), resolved.dir.display()),
            );
        }
    }
    line(out, "", "(not run)");
    Ok(Outcome::Delivered)
}

/// What a delivery would do with an unknown recipient.
fn unknown(config: &Config, macros: &Macros<'_>, out: &mut String) -> Outcome {
    match &config.fallback {
        Some(FallbackAction::Command(command)) => {
            let prepared = command.prepare(macros);
            line(out, "Fallback", crate::fallback::describe(&prepared));
            for (name, value) in &prepared.env {
                line(out, "", format!("{name}={:?}", value.to_string_lossy()));
            }
            line(out, "", "(not run; its exit status would decide)");
            Outcome::Fallback
        }
        Some(FallbackAction::Maildir(target)) => {
            match target.resolve(macros) {
                Ok(resolved) => line(
                    out,
                    "Fallback",
                    format!("{} → {}", target.describe(), resolved.dir.display()),
                ),
                Err(e) => line(out, "Fallback", e),
            }
            Outcome::Delivered
        }
        None => Outcome::Unknown(
            config
                .bounce_text(Bounce::UserUnknown)
                .map_or_else(|| "Failure: UserUnknown".into(), |t| expand_text(t, macros)),
        ),
    }
}

enum Outcome {
    Delivered,
    Fallback,
    Unknown(String),
}

fn show(out: &mut String, name: &str, statement: &Statement, macros: &Macros<'_>) {
    let bound = statement.template.bind(macros, Placeholder::Question);
    line(out, name, bound.sql.replace('\n', " "));
    for (i, v) in bound.params.iter().enumerate() {
        line(out, "", format!("?{} = {}", i + 1, value(v)));
    }
    if let Some(n) = statement.check_return {
        line(
            out,
            "",
            format!("(a procedure call; success when it returns {n})"),
        );
    }
}

fn value(v: &Value<'_>) -> String {
    match v {
        Value::Text(t) if t.len() <= 200 => format!("{t:?}"),
        Value::Bytes(b) if b.as_ref() == b"<the message>" => "<the message>".into(),
        _ => format!("<{} bytes>", v.as_bytes().len()),
    }
}

/// The outcome, and the status each mailer would receive.
fn verdict(out: &mut String, config: Option<&Config>, result: &Result<Outcome, Error>) -> ExitCode {
    let code = match result {
        Ok(Outcome::Delivered) => {
            line(out, "result", "would be delivered");
            ExitCode::Ok
        }
        Ok(Outcome::Fallback) => {
            line(
                out,
                "result",
                "unknown recipient: the Fallback's exit status would be the result",
            );
            return ExitCode::Ok;
        }
        Ok(Outcome::Unknown(text)) => {
            line(
                out,
                "result",
                format!("unknown recipient, bounced: {:?}", text.replace('\n', " ")),
            );
            ExitCode::NoUser
        }
        Err(e) => {
            let bounce = e.bounce().map(|kind| {
                config.and_then(|c| c.bounce_text(kind)).map_or_else(
                    || format!("Failure: {}", kind.key()),
                    |t| t.replace('\n', " "),
                )
            });
            line(out, "result", e);
            if let Some(bounce) = bounce {
                line(out, "bounce text", format!("{bounce:?}"));
            }
            e.exit_code()
        }
    };
    let statuses: Vec<String> = Mailer::ALL
        .iter()
        .map(|m| format!("{m} {}", m.exit_status(code)))
        .collect();
    line(out, "exit status", statuses.join(", "));
    code
}
