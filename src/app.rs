//! One delivery, start to finish, in the order the original used (SPEC §5): configuration,
//! environment, recipient, connect, Verify (or Fallback), header lines, message, MailDebug,
//! Deliver, commit. Every step returns a classified `Error`; this is the only place that turns
//! an error into output (one stderr line, one bounce text) and a sysexits code.

use std::ffi::OsString;
use std::path::Path;

use crate::args::Args;
use crate::backend::{self, Backend, Limits, Row};
use crate::config::{Config, Delivery, FallbackAction, Statement};
use crate::envelope::{self, Envelope};
use crate::error::{Bounce, Error};
use crate::exit::ExitCode;
use crate::fallback::{self, Input, Outcome};
use crate::headers::Headers;
use crate::macros::{Macros, Placeholder, Value, expand_text};
use crate::message::{self, Keep, Message};
use crate::{debug, maildir, quota, report, signals};

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
    let envelope = resolve_envelope(args, config, envelope_slot)?;
    let ext = envelope::printable(std::env::var_os("EXT").as_deref());
    debug!(
        "recipient local={:?} domain={:?} sender={:?}",
        envelope.local, envelope.domain, envelope.sender
    );

    // Header macros in Verify or the Fallback: the message is needed before Verify.
    let early = config.needs_message_before_verify();
    let mut message = if early {
        Some(read_message(args, config)?)
    } else {
        None
    };
    let early_headers = message.as_ref().map(|m| Headers::parse(m.bytes()));
    let before = Macros {
        local: &envelope.local,
        domain: &envelope.domain,
        sender: &envelope.sender,
        recipient: &envelope.recipient,
        ext: &ext,
        headers: early_headers.as_ref(),
        ..Macros::default()
    };

    if envelope.local.is_empty() {
        debug!("the local part is empty once RemovePrefix is removed");
        return unknown_recipient(args, config, envelope, &before, message);
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
    let Some((mut db, columns)) = connect_and_verify(config, &before, limits)? else {
        return unknown_recipient(args, config, envelope, &before, message);
    };

    let message = match message.take() {
        Some(message) => message,
        None => read_message(args, config)?,
    };
    let late_headers = (early_headers.is_none() && config.uses_header_macros())
        .then(|| Headers::parse(message.bytes()));
    let macros = Macros {
        columns: &columns,
        headers: early_headers.as_ref().or(late_headers.as_ref()),
        ..before
    };

    if let Some(statement) = &config.duplicate {
        let row = run_named(connected(&mut db)?, "Duplicate", statement, &macros)?;
        if row.is_some() {
            report::warn(&format!(
                "{}: already stored (Duplicate found it); not stored again",
                envelope.recipient
            ));
            return Ok(ExitCode::Ok);
        }
    }
    let maildir = match &config.deliver {
        Delivery::Maildir(target) => Some(target.resolve(&macros)?),
        Delivery::Sql(_) => None,
    };
    if let Some(statement) = &config.quota {
        let row = run_named(connected(&mut db)?, "Quota", statement, &macros)?;
        quota::check(
            row.as_ref(),
            message.bytes().len(),
            maildir.as_ref().map(|m| m.root.as_path()),
            config.quota_full_tempfail,
        )?;
    }
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

    match (&config.deliver, maildir) {
        (Delivery::Sql(statement), _) => {
            let deliver_macros = Macros {
                message: Some(message.leak()),
                ..macros
            };
            store(
                connected(&mut db)?,
                statement,
                &deliver_macros,
                &envelope.recipient,
            )?;
        }
        (Delivery::Maildir(_), Some(target)) => store_in_maildir(&target, &message)?,
        (Delivery::Maildir(target), None) => {
            return Err(Error::MaildirConfig(format!(
                "{} not resolved",
                target.describe()
            )));
        }
    }
    signals::test_kill_point("committed");
    debug!("delivered to {}", envelope.recipient);
    Ok(ExitCode::Ok)
}

/// The envelope from flags and environment, kept in `slot`; when it is refused, `slot` gets
/// a printable stand-in for the bounce text.
pub(crate) fn resolve_envelope<'s>(
    args: &Args,
    config: &Config,
    slot: &'s mut Option<Envelope>,
) -> Result<&'s Envelope, Error> {
    let var = std::env::var_os;
    let (local, host, sender) = (var("LOCAL"), var("HOST"), var("SENDER"));
    // `-l user@domain` names the domain when `-h` does not (SPEC §1). A `LOCAL` from the
    // MTA beside its own `HOST` is a local part as it stands, `@` and all (a quoted local
    // part such as "carol@elsewhere"@example.com): splitting it would let the sender pick
    // the domain, and so a mailbox of another hosted domain.
    let split = args.host.is_none() && (args.local.is_some() || host.is_none());
    let found = Envelope::new(
        local.as_deref(),
        host.as_deref(),
        sender.as_deref(),
        split,
        config.remove_prefix.as_deref(),
    );
    match found {
        Ok(envelope) => Ok(slot.insert(envelope)),
        Err(error) => {
            let named_host = if split { None } else { host.as_deref() };
            *slot = Some(Envelope::printable(
                local.as_deref(),
                named_host,
                sender.as_deref(),
            ));
            Err(error)
        }
    }
}

/// Header lines (qmail/courier) and standard input, within the limits.
fn read_message(args: &Args, config: &Config) -> Result<Message, Error> {
    let header = message::header_lines(args.mailer, config.unix_from_line, |name: &str| {
        std::env::var_os(name)
    })?;
    // Every SQL backend takes a large message a piece at a time, so it never needs to be in
    // memory whole: Virtuoso, ODBC and MariaDB send it in pieces, virt_mail writes
    // PostgreSQL's statement onto its socket in pieces, and SQLite writes it into its row in
    // pieces (`backend::sqlite`). A Maildir delivery copies it from memory.
    let keep = match &config.deliver {
        Delivery::Sql(_) => Keep::Spool,
        _ => Keep::Memory,
    };
    let message = message::read(
        &mut std::io::stdin(),
        header,
        config.max_message_size,
        config.timeouts.read,
        keep,
    )?;
    debug!(
        "message: {} bytes ({} from standard input){}",
        message.bytes().len(),
        message.input_len(),
        if message.is_spooled() {
            ", spooled"
        } else {
            ""
        }
    );
    Ok(message)
}

/// The database connection, which every SQL step needs.
fn connected(db: &mut Option<Box<dyn Backend>>) -> Result<&mut dyn Backend, Error> {
    match db {
        Some(db) => Ok(db.as_mut()),
        None => Err(Error::MaildirConfig(
            "an SQL statement runs but no database is connected".into(),
        )),
    }
}

/// Stores the message in a Maildir and counts it in `maildirsize`.
fn store_in_maildir(target: &maildir::Resolved, message: &Message) -> Result<(), Error> {
    debug!("Deliver: maildir {}", target.dir.display());
    let file = maildir::deliver(target, message.bytes())?;
    debug!("stored as {}", file.display());
    if let Err(e) = maildir::record(&target.root, message.bytes().len()) {
        report::warn(&format!("maildirsize in {}: {e}", target.root.display()));
    }
    Ok(())
}

/// `[Environment]` goes into our environment before connecting (ODBC reads `ODBCINI`
/// from it) and is inherited by the Fallback.
pub(crate) fn apply_environment(pairs: &[(String, String)]) -> Result<(), Error> {
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
pub(crate) fn export_flags(args: &Args) {
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

/// A recipient that Verify found: the connection the later statements use (none when
/// nothing after Verify is SQL, e.g. a Maildir Deliver), and the columns.
type Verified = (Option<Box<dyn Backend>>, Row);

/// Connects and runs Verify. `None`: no such recipient (and no connection kept open while a
/// Fallback runs). Verify may run on its own data source (`VerifyDSN`, e.g. a read
/// replica); Deliver, Quota and Duplicate always go to `DSN`.
pub(crate) fn connect_and_verify(
    config: &Config,
    macros: &Macros<'_>,
    limits: Limits,
) -> Result<Option<Verified>, Error> {
    let later = config.sql_after_verify();
    if config.verify.is_none() && !later {
        debug!("no Verify and no SQL: every recipient is accepted, no database needed");
        return Ok(Some((None, Row::new())));
    }
    let Some(verify_dsn) = &config.verify_dsn else {
        let mut db = backend::connect(&config.dsn, limits)?;
        let found = verify(db.as_mut(), config.verify.as_ref(), macros)?;
        return Ok(found.map(|columns| (later.then_some(db), columns)));
    };
    let columns = match &config.verify {
        Some(_) => {
            debug!("VerifyDSN {}", report::mask_dsn(verify_dsn));
            let mut replica = backend::connect(verify_dsn, limits)?;
            let Some(columns) = verify(replica.as_mut(), config.verify.as_ref(), macros)? else {
                return Ok(None);
            };
            columns
        }
        None => Row::new(),
    };
    let db = if later {
        Some(backend::connect(&config.dsn, limits)?)
    } else {
        None
    };
    Ok(Some((db, columns)))
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
    let row = run_named(db, "Verify", statement, macros)?;
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
    args: &Args,
    config: &Config,
    envelope: &Envelope,
    macros: &Macros<'_>,
    message: Option<Message>,
) -> Result<ExitCode, Error> {
    let command = match &config.fallback {
        None => return Err(Error::UserUnknown(envelope.recipient.clone())),
        Some(FallbackAction::Maildir(target)) => {
            // A catch-all mailbox: stored like a Deliver into it.
            let target = target.resolve(macros)?;
            let message = match message {
                Some(message) => message,
                None => read_message(args, config)?,
            };
            store_in_maildir(&target, &message)?;
            return Ok(ExitCode::Ok);
        }
        Some(FallbackAction::Command(command)) => command,
    };
    let prepared = command.prepare(macros);
    debug!("Fallback: {}", fallback::describe(&prepared));
    // The Fallback reads the message as the MTA gave it: our own standard input, or (when
    // it was already read for header macros) the same bytes without our header lines.
    let input = match message {
        Some(message) => Input::Bytes(message.leak_input()),
        None => Input::Inherit,
    };
    match fallback::run(
        &prepared,
        &envelope.recipient,
        input,
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

/// Runs Verify, Duplicate or Quota (outside the Deliver transaction), traced under
/// `--debug`, its errors named after it.
fn run_named(
    db: &mut dyn Backend,
    name: &'static str,
    statement: &Statement,
    macros: &Macros<'_>,
) -> Result<Option<Row>, Error> {
    trace(name, statement, macros);
    Ok(db
        .run(statement, macros)
        .map_err(|e| e.in_statement(name))?)
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
