//! One delivery, start to finish, in the order the original used (SPEC §5): configuration,
//! environment, recipient, connect, Verify (or Fallback), header lines, message, MailDebug,
//! Deliver, commit. Every step returns a classified `Error`; this is the only place that turns
//! an error into output (one stderr line, one bounce text) and a sysexits code.

use std::ffi::OsString;
use std::path::Path;

use crate::args::Args;
use crate::backend::{self, Backend, Limits, Row};
use crate::config::{Config, Statement};
use crate::envelope::Envelope;
use crate::error::{Bounce, Error};
use crate::exit::ExitCode;
use crate::fallback::{self, Input, Outcome};
use crate::macros::{Macros, Placeholder, Value, expand_text};
use crate::message;
use crate::{debug, report, signals};

/// Runs the delivery and reports its failure, if any. Returns the internal (sysexits) code.
pub fn run(args: &Args, config_path: &Path) -> ExitCode {
    debug!("configuration file {}", config_path.display());
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => return fail(&error, None, None),
    };
    let mut envelope = None;
    match deliver(args, &config, &mut envelope) {
        Ok(code) => code,
        Err(error) => fail(&error, Some(&config), envelope.as_ref()),
    }
}

/// Prints the error line and the bounce text; returns the error's code.
fn fail(error: &Error, config: Option<&Config>, envelope: Option<&Envelope>) -> ExitCode {
    report::error(&error.to_string());
    if let Some(kind) = error.bounce() {
        report::bounce(&bounce_text(kind, config, envelope));
    }
    error.exit_code()
}

/// The `[Bounce]` entry with macros expanded, or `Failure: <Name>` when there is none.
fn bounce_text(kind: Bounce, config: Option<&Config>, envelope: Option<&Envelope>) -> String {
    let Some(template) = config.and_then(|c| c.bounce_text(kind)) else {
        return format!("Failure: {}", kind.key());
    };
    let macros = envelope.map(envelope_macros).unwrap_or_default();
    expand_text(template, &macros)
}

fn envelope_macros(envelope: &Envelope) -> Macros<'_> {
    Macros {
        local: &envelope.local,
        domain: &envelope.domain,
        sender: &envelope.sender,
        ..Macros::default()
    }
}

fn deliver(
    args: &Args,
    config: &Config,
    envelope_slot: &mut Option<Envelope>,
) -> Result<ExitCode, Error> {
    let parent = nix::unistd::getppid();
    report::add_secrets(config.secrets());
    debug!("DSN {}", report::mask_dsn(&config.dsn));
    for warning in &config.warnings {
        report::warn(warning);
    }

    apply_environment(&config.environment)?;
    export_flags(args);
    let var = std::env::var_os;
    let (local, host, sender) = (var("LOCAL"), var("HOST"), var("SENDER"));
    let found = Envelope::new(
        local.as_deref(),
        host.as_deref(),
        sender.as_deref(),
        args.host.is_none(),
        config.remove_prefix.as_deref(),
    );
    let envelope = match found {
        Ok(envelope) => envelope_slot.insert(envelope),
        Err(error) => {
            // The bounce text may still name the recipient, made printable.
            let split_host = args.host.is_some().then_some(host.as_deref()).flatten();
            *envelope_slot = Some(Envelope::printable(
                local.as_deref(),
                split_host,
                sender.as_deref(),
            ));
            return Err(error);
        }
    };
    debug!(
        "recipient local={:?} domain={:?} sender={:?}",
        envelope.local, envelope.domain, envelope.sender
    );
    let envelope = &*envelope;
    let mut macros = envelope_macros(envelope);

    if envelope.local.is_empty() {
        debug!("the local part is empty once RemovePrefix is removed");
        return unknown_recipient(config, envelope, &macros);
    }
    // Test hook (debug builds only): proves a panic defers instead of exiting 101.
    #[cfg(debug_assertions)]
    if std::env::var_os("VIRT_MAIL_TEST_PANIC").is_some() {
        panic!("VIRT_MAIL_TEST_PANIC is set");
    }
    let limits = Limits {
        connect: config.timeouts.connect,
        statement: config.timeouts.statement,
    };
    let Some((mut db, columns)) = connect_and_verify(config, &macros, limits)? else {
        return unknown_recipient(config, envelope, &macros);
    };
    macros.columns = &columns;

    let header = message::header_lines(args.mailer, config.unix_from_line, |name: &str| {
        std::env::var_os(name)
    })?;
    let message = message::read(
        &mut std::io::stdin(),
        header,
        config.max_message_size,
        config.timeouts.read,
    )?;
    debug!(
        "message: {} bytes ({} from standard input)",
        message.bytes().len(),
        message.input_len()
    );
    if let Some(path) = &config.mail_debug {
        if let Err(e) = message::append_debug_copy(path, message.bytes()) {
            report::warn(&format!("MailDebug {}: {e}", path.display()));
        }
    }
    if nix::unistd::getppid() != parent {
        // Whoever handed us the message is gone and will not see our status: storing now
        // could keep a truncated copy, and the MTA would deliver again anyway.
        return Err(Error::Abandoned);
    }

    macros.message = Some(message.bytes());
    store(db.as_mut(), &config.deliver, &macros, &envelope.recipient)?;
    debug!("delivered to {}", envelope.recipient);
    Ok(ExitCode::Ok)
}

/// `[Environment]` goes into our environment before connecting (ODBC reads `ODBCINI`
/// from it) and is inherited by the Fallback.
fn apply_environment(pairs: &[(String, String)]) -> Result<(), Error> {
    for (name, value) in pairs {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(Error::BadEnvironment(format!(
                "[Environment] {name:?} cannot be set"
            )));
        }
        // SAFETY: still single-threaded; no other thread reads the environment yet.
        unsafe { std::env::set_var(name, value) };
    }
    Ok(())
}

/// Flags override `LOCAL`/`HOST`/`SENDER` and are exported, so a Fallback sees them too.
fn export_flags(args: &Args) {
    let flags: [(&str, &Option<OsString>); 3] = [
        ("LOCAL", &args.local),
        ("HOST", &args.host),
        ("SENDER", &args.sender),
    ];
    for (name, value) in flags {
        if let Some(value) = value {
            // SAFETY: still single-threaded (see apply_environment).
            unsafe { std::env::set_var(name, value) };
        }
    }
}

/// A recipient that Verify found: the connection Deliver will use, and the columns.
type Verified = (Box<dyn Backend>, Row);

/// Connects and runs Verify. `None`: no such recipient (and no connection kept open while a
/// Fallback runs). Verify may run on its own data source (`VerifyDSN`, e.g. a read
/// replica); Deliver always goes to `DSN`.
fn connect_and_verify(
    config: &Config,
    macros: &Macros<'_>,
    limits: Limits,
) -> Result<Option<Verified>, Error> {
    let Some(verify_dsn) = &config.verify_dsn else {
        let mut db = backend::connect(&config.dsn, limits)?;
        let found = verify(db.as_mut(), config.verify.as_ref(), macros)?;
        return Ok(found.map(|columns| (db, columns)));
    };
    debug!("VerifyDSN {}", report::mask_dsn(verify_dsn));
    let mut replica = backend::connect(verify_dsn, limits)?;
    let Some(columns) = verify(replica.as_mut(), config.verify.as_ref(), macros)? else {
        return Ok(None);
    };
    drop(replica);
    Ok(Some((backend::connect(&config.dsn, limits)?, columns)))
}

/// Runs Verify. `Some(columns)` when the recipient exists; without Verify everyone does.
fn verify(
    db: &mut dyn Backend,
    statement: Option<&Statement>,
    macros: &Macros<'_>,
) -> Result<Option<Row>, Error> {
    let Some(statement) = statement else {
        debug!("no Verify: every recipient is accepted");
        return Ok(Some(Row::new()));
    };
    trace("Verify", statement, macros);
    let row = db
        .run(statement, macros)
        .map_err(|e| e.in_statement("Verify"))?;
    let found = match statement.check_return {
        Some(expected) => backend::returned(row.as_ref(), expected),
        None => row.is_some(),
    };
    debug!("Verify: {}", if found { "found" } else { "not found" });
    Ok(found.then(|| row.unwrap_or_default()))
}

/// Runs Deliver in a transaction and commits only when it succeeded (and returned the
/// expected value); otherwise rolls back, so nothing half-delivered stays behind.
fn store(
    db: &mut dyn Backend,
    statement: &Statement,
    macros: &Macros<'_>,
    recipient: &str,
) -> Result<(), Error> {
    trace("Deliver", statement, macros);
    db.begin().map_err(|e| e.in_statement("Deliver"))?;
    let row = match db.run(statement, macros) {
        Ok(row) => row,
        Err(e) => {
            let _ = db.rollback();
            return Err(e.in_statement("Deliver").into());
        }
    };
    if let Some(expected) = statement.check_return {
        if !backend::returned(row.as_ref(), expected) {
            db.rollback().map_err(|e| e.in_statement("Deliver"))?;
            return Err(Error::UserUnknown(format!(
                "{recipient}: Deliver returned {} instead of DeliverCheckReturn = {expected} (rolled back)",
                row.as_ref()
                    .and_then(|r| r.first())
                    .map_or("no row".into(), |v| v.to_text().into_owned())
            )));
        }
    }
    signals::commit_guarded(|| db.commit()).map_err(|e| e.in_statement("Deliver"))?;
    db.after_commit();
    Ok(())
}

/// Step 6: no such recipient. The Fallback decides if there is one; otherwise bounce.
fn unknown_recipient(
    config: &Config,
    envelope: &Envelope,
    macros: &Macros<'_>,
) -> Result<ExitCode, Error> {
    let Some(command) = &config.fallback else {
        return Err(Error::UserUnknown(envelope.recipient.clone()));
    };
    let prepared = command.prepare(macros);
    debug!("Fallback: {}", fallback::describe(&prepared));
    match fallback::run(
        &prepared,
        &envelope.recipient,
        Input::Inherit,
        config.timeouts.fallback,
    )? {
        Outcome::Exited { code, status } => {
            if code != ExitCode::Ok {
                report::error(&format!(
                    "Fallback {} exited with status {status} (taken as {})",
                    command.program(),
                    code as u8
                ));
            }
            Ok(code)
        }
        Outcome::CannotRun(e) => {
            report::warn(&format!(
                "Fallback {} cannot be run ({e}); the recipient is treated as unknown",
                command.program()
            ));
            Err(Error::UserUnknown(envelope.recipient.clone()))
        }
    }
}

/// `--debug`: the statement as it will be sent, with its bound values (message abridged).
fn trace(name: &str, statement: &Statement, macros: &Macros<'_>) {
    if !report::debugging() {
        return;
    }
    let bound = statement.template.bind(macros, Placeholder::Question);
    debug!("{name}: {}", bound.sql);
    for (i, value) in bound.params.iter().enumerate() {
        match value {
            Value::Text(text) if text.len() <= 200 => debug!("  ?{} = {:?}", i + 1, text),
            _ => debug!("  ?{} = <{} bytes>", i + 1, value.as_bytes().len()),
        }
    }
}
