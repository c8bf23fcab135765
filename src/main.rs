//! Entry point: parse the command line, run one delivery, exit with the mailer's status.
//! This is the only place that exits; a panic becomes the mailer's "try again" status.

use std::ffi::OsString;
use std::io::Write;
use std::panic;

use virt_mail::arena::{Arena, REGION};
use virt_mail::args::{self, Stop};
use virt_mail::exit::ExitCode;
use virt_mail::{app, check, report, signals};

/// One short process per message: small blocks are bumped from a fixed region, never reused
/// (`arena`), instead of musl's allocator doing the work of reuse.
#[global_allocator]
static ALLOCATOR: Arena<REGION> = Arena::new();

fn main() {
    signals::install();
    panic::set_hook(Box::new(|info| {
        report::error(&format!("internal error: {info}"));
    }));
    let status = panic::catch_unwind(run).unwrap_or_else(|_| signals::cut_short_status());
    virt_mail::debug!(
        "memory: {} KiB of the {} KiB small-block region in use at most",
        ALLOCATOR.peak().div_ceil(1024),
        REGION / 1024
    );
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(status));
}

fn run() -> u8 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let argv0 = argv.first().cloned().unwrap_or_else(|| "virt_mail".into());
    let args = match args::parse(argv) {
        Ok(args) => args,
        Err(Stop::Info(text)) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            return 0;
        }
        Err(Stop::Usage { message, mailer }) => {
            let _ = std::io::stderr().write_all(message.as_bytes());
            return mailer.exit_status(ExitCode::Usage);
        }
    };
    let mailer = args.mailer;
    signals::set_statuses(mailer.temporary_status(), mailer.exit_status(ExitCode::Ok));
    report::init(
        &args::program_name(&argv0),
        args.debug,
        mailer.logs_to_syslog(),
    );
    if !args.extra.is_empty() {
        report::warn(&format!("extra arguments ignored: {:?}", args.extra));
    }
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| args::default_config_path(&argv0));
    if args.check {
        // The dry run answers for every mailer itself; its status is the plain sysexits code.
        return check::run(&args, &config_path) as u8;
    }
    mailer.exit_status(app::run(&args, &config_path))
}
