//! Process-level safety nets, so the MTA always reads a deliberate status: a terminating
//! signal (SIGTERM from an MTA timeout, SIGALRM, SIGHUP…) or a panic ends the run with the
//! mailer's "try again" code, never a signal death or Rust's 101, which several MTAs bounce.
//! The commit is the one point of no return: signals are held while it runs, and once it has
//! succeeded every way out reports success, so a message is never stored and then retried.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

static TEMPORARY: AtomicU8 = AtomicU8::new(75);
static SUCCESS: AtomicU8 = AtomicU8::new(0);
static COMMITTED: AtomicBool = AtomicBool::new(false);
static CHILD_GROUP: AtomicI32 = AtomicI32::new(0);

/// Signals that would otherwise kill us mid-delivery.
const TERMINATING: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGALRM,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Records the two statuses that can end a cut-short run.
pub fn set_statuses(temporary: u8, success: u8) {
    TEMPORARY.store(temporary, Ordering::SeqCst);
    SUCCESS.store(success, Ordering::SeqCst);
}

/// The status for a run cut short now: success once committed, else "try again".
pub fn cut_short_status() -> u8 {
    if COMMITTED.load(Ordering::SeqCst) {
        SUCCESS.load(Ordering::SeqCst)
    } else {
        TEMPORARY.load(Ordering::SeqCst)
    }
}

extern "C" fn on_signal(_: nix::libc::c_int) {
    // Only async-signal-safe calls here: kill(2) and _exit(2).
    let group = CHILD_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        unsafe { nix::libc::kill(-group, nix::libc::SIGTERM) };
    }
    unsafe { nix::libc::_exit(cut_short_status() as nix::libc::c_int) };
}

/// Installs the handlers. SIGXFSZ is ignored so a file-size limit becomes an I/O error.
pub fn install() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in TERMINATING {
        // SAFETY: the handler only touches atomics and async-signal-safe libc calls.
        let _ = unsafe { signal::sigaction(sig, &action) };
    }
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring a signal installs no code.
    let _ = unsafe { signal::sigaction(Signal::SIGXFSZ, &ignore) };
}

/// While a Fallback runs, a signal to us is passed on to its process group.
pub fn set_child_group(pgid: i32) {
    CHILD_GROUP.store(pgid, Ordering::SeqCst);
}

/// Runs `commit` with terminating signals held. If it succeeds, the run counts as delivered
/// before the signals are released, so a signal that arrived meanwhile exits with success.
pub fn commit_guarded<T, E>(commit: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let mut held = SigSet::empty();
    for sig in TERMINATING {
        held.add(sig);
    }
    let mut previous = SigSet::empty();
    let blocked =
        signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&held), Some(&mut previous)).is_ok();
    let result = commit();
    if result.is_ok() {
        COMMITTED.store(true, Ordering::SeqCst);
    }
    if blocked {
        let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    }
    result
}

/// Keeps process signals off the calling thread (a database connection's own). The handlers
/// decide the exit status from whether the delivery is committed, and `commit_guarded` holds
/// signals on the main thread while COMMIT runs; a signal taken by another thread during
/// COMMIT would slip past that guard. Faults raised by the thread's own code (SIGSEGV,
/// SIGBUS, SIGFPE, SIGILL) stay unblocked.
pub fn keep_off_this_thread() {
    let mut set = SigSet::all();
    for fault in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGILL,
    ] {
        set.remove(fault);
    }
    let _ = signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

/// Whether a delivery has been committed (a late panic must then still report success).
pub fn committed() -> bool {
    COMMITTED.load(Ordering::SeqCst)
}

/// Test hook (debug builds only): `VIRT_MAIL_TEST_KILL_AT=<point>` kills the process with
/// SIGKILL when it reaches that point, to prove what a crash there leaves behind.
pub fn test_kill_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("VIRT_MAIL_TEST_KILL_AT").is_ok_and(|p| p == point) {
        let _ = signal::kill(nix::unistd::getpid(), Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
