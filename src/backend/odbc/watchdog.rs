//! A call on the driver still running when its time is up is interrupted from another
//! thread, while every call itself stays on the thread that makes all the others (a driver
//! called from a second thread is not safe to count on: MariaDB's aborted with a double free
//! in the fault matrix when COMMIT ran on one). Should the interruption not end the call
//! either (a server that stopped answering), the watchdog reports it and raises SIGALRM,
//! which ends the run with the mailer's status for a run cut short (`signals.rs`).
//! Dropping the watchdog disarms it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask, raise};

/// How long an interrupted call may take to give up before the run is ended.
pub(super) const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

pub(super) struct Watchdog {
    shared: Arc<State>,
}

struct State {
    /// Set when the call is done; held while the interruption runs, so that what it touches
    /// (a statement handle) cannot be freed meanwhile.
    done: Mutex<bool>,
    wake: Condvar,
    /// The same, readable while an interruption holds `done`.
    finished: AtomicBool,
    /// The time was up and the call was interrupted.
    fired: AtomicBool,
}

impl Watchdog {
    /// Watches a call for `limit`. Past it `interrupt` runs on a thread of its own (it may
    /// block), with the call not yet done; if the call still has not returned
    /// `INTERRUPT_GRACE` later, `giving_up` is reported and the run ends.
    pub(super) fn arm(
        limit: Duration,
        interrupt: impl FnOnce() + Send + 'static,
        giving_up: String,
    ) -> Watchdog {
        let shared = Arc::new(State {
            done: Mutex::new(false),
            wake: Condvar::new(),
            finished: AtomicBool::new(false),
            fired: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("odbc-watchdog".into())
            .spawn(move || watch(&theirs, limit, interrupt, &giving_up));
        if let Err(e) = spawned {
            crate::debug!("odbc: no watchdog ({e})");
        }
        Watchdog { shared }
    }

    /// Whether the call was interrupted because its time was up.
    pub(super) fn fired(&self) -> bool {
        self.shared.fired.load(Ordering::SeqCst)
    }
}

fn watch(
    state: &Arc<State>,
    limit: Duration,
    interrupt: impl FnOnce() + Send + 'static,
    giving_up: &str,
) {
    {
        let guard = state.done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = state
            .wake
            .wait_timeout_while(guard, limit, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        if *guard {
            return;
        }
        state.fired.store(true, Ordering::SeqCst);
    }
    crate::debug!("odbc: call still running after {limit:?}: interrupting it");
    let interrupter = Arc::clone(state);
    let _ = std::thread::Builder::new()
        .name("odbc-interrupt".into())
        .spawn(move || {
            let done = interrupter.done.lock().unwrap_or_else(|e| e.into_inner());
            if !*done {
                interrupt();
            }
        });
    let deadline = Instant::now() + INTERRUPT_GRACE;
    while Instant::now() < deadline {
        if state.finished.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::report::error(giving_up);
    // On this thread, which may have been started with signals held (during COMMIT), and
    // for it alone: the handler runs here while the call stays stuck.
    let mut alarm = SigSet::empty();
    alarm.add(Signal::SIGALRM);
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&alarm), None);
    let _ = raise(Signal::SIGALRM);
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.finished.store(true, Ordering::SeqCst);
        *self.shared.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
    }
}
