//! Reliability, measured (docs/RELIABILITY.md): the fault matrix, the concurrency runs, and a
//! property test of password masking.
//!
//! **Fault matrix** (`fault_matrix`, run by `scripts/fault-matrix.sh [--ci|--full]` on servers
//! of its own, so stopping and killing them disturbs nobody else's tests). Each fault is
//! injected on every store where it applies, under the mailer profiles, and every run is judged
//! the same way: the exit status must be the one SPEC §7 gives that mailer for the fault
//! (a temporary fault: 75, or 111 under qmail; never 70, 74, 101 or a signal death), and the
//! database must hold the message exactly once once the MTA has done what that status tells
//! it to (retry after a deferral): never lost (success reported, no row), never duplicated,
//! never partial (a row whose body differs from what was sent). It prints a counts table
//! (fault × backend × mailer) and fails on any problem.
//!
//! **Concurrency** (`concurrency`): N deliveries to one user through P parallel pipes on each
//! store: N rows, each exactly once, no errors.
//!
//! Both skip unless their switch is set (`VIRT_MAIL_FAULT_MATRIX`, `VIRT_MAIL_CONCURRENCY`):
//! `scripts/test.sh` runs every ignored test in its fault step, and these want their own
//! servers and a serial run.
#![cfg_attr(
    not(all(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(dead_code, unused_imports, unused_variables, unused_mut)
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::stores::{self, Cell, Store};

// ------------------------------------------------------------------------------ switches ---

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Every fault at least once per store where it applies, the mailers rotated.
    Ci,
    /// Every fault under every mailer, the racy ones repeated.
    Full,
}

fn switch(var: &str) -> Option<Mode> {
    match std::env::var(var).as_deref() {
        Ok("ci") => Some(Mode::Ci),
        Ok("full") => Some(Mode::Full),
        _ => None,
    }
}

/// `VIRT_MAIL_FAULT_ONLY=a,b` / `VIRT_MAIL_FAULT_TARGETS=x,y`: reproduce one cell.
fn selected(var: &str, name: &str) -> bool {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|n| n.trim() == name),
        _ => true,
    }
}

/// A small deterministic generator (xorshift64*), seeded from `VIRT_MAIL_FAULT_SEED` or the
/// clock; the seed is printed so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("VIRT_MAIL_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("seed: VIRT_MAIL_FAULT_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

// ------------------------------------------------------------------------------- targets ---

/// The database behind a store, whatever the way in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
    Mariadb,
    Virtuoso,
}

/// A store under test: how virt_mail reaches it and which server (if any) runs it.
struct Target {
    name: &'static str,
    store: Box<dyn Store>,
    db: Db,
    odbc: bool,
    /// `scripts/servers.sh` name of the server process.
    server: Option<&'static str>,
}

fn targets() -> Vec<Target> {
    let mut all = vec![Target {
        name: "sqlite",
        store: Box::new(stores::sqlite::Sqlite::new()),
        db: Db::Sqlite,
        odbc: false,
        server: None,
    }];
    #[cfg(feature = "postgres")]
    if let Some(s) = stores::require("postgres", stores::postgres::Postgres::from_env()) {
        all.push(Target {
            name: "postgres",
            store: Box::new(s),
            db: Db::Postgres,
            odbc: false,
            server: Some("pg"),
        });
    }
    #[cfg(feature = "mysql")]
    if let Some(s) = stores::require("mariadb", stores::mysql::Mysql::from_env()) {
        all.push(Target {
            name: "mariadb",
            store: Box::new(s),
            db: Db::Mariadb,
            odbc: false,
            server: Some("mariadb"),
        });
    }
    #[cfg(feature = "odbc")]
    {
        use stores::odbc::Odbc;
        /// Name, database, server to stop for it, and the store (or why there is none).
        type OdbcTarget = (&'static str, Db, Option<&'static str>, Result<Odbc, String>);
        let odbc: [OdbcTarget; 4] = [
            ("odbc-sqlite", Db::Sqlite, None, Odbc::sqlite_from_env()),
            (
                "odbc-postgres",
                Db::Postgres,
                Some("pg"),
                Odbc::postgres_from_env(),
            ),
            (
                "odbc-mariadb",
                Db::Mariadb,
                Some("mariadb"),
                Odbc::mariadb_from_env(),
            ),
            (
                "odbc-virtuoso",
                Db::Virtuoso,
                Some("virtuoso"),
                Odbc::virtuoso_from_env(),
            ),
        ];
        for (name, db, server, found) in odbc {
            if let Some(s) = stores::require(name, found) {
                all.push(Target {
                    name,
                    store: Box::new(s),
                    db,
                    odbc: true,
                    server,
                });
            }
        }
    }
    #[cfg(all(feature = "odbc", feature = "virtuoso"))]
    if let Some(s) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) {
        all.push(Target {
            name: "virtuoso",
            store: Box::new(s),
            db: Db::Virtuoso,
            odbc: false,
            server: Some("virtuoso"),
        });
    }
    all.retain(|t| selected("VIRT_MAIL_FAULT_TARGETS", t.name));
    all
}

/// `scripts/servers.sh ACTION NAME` (the caller's VM_RUN_DIR and ports pick the servers).
fn servers(action: &str, name: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/servers.sh");
    let out = Command::new(script)
        .args([action, name])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/servers.sh {action} {name} failed: {}",
        text(&out.stderr)
    );
}

/// Starts the server again when dropped, even when the fault's code panics halfway.
struct Restart(Option<&'static str>);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            servers("start", name);
        }
    }
}

/// The SQLite file behind a SQLite target.
fn sqlite_file(target: &Target) -> PathBuf {
    if target.odbc {
        PathBuf::from(std::env::var("VIRT_MAIL_TEST_ODBC_SQLITE_DB").unwrap())
    } else {
        PathBuf::from(target.store.dsn().strip_prefix("sqlite:").unwrap())
    }
}

// --------------------------------------------------------------------------------- bench ---

/// One fault on one store: private tables (`{t}_users` with alice, `{t}_mail`), dropped
/// again at the end, and a directory for configurations.
struct Bench<'t> {
    target: &'t Target,
    t: String,
    dir: tempfile::TempDir,
    /// The table the mail goes to (`{t}_mail`, or one on a full disk).
    mail: String,
    /// Where rows are read back, when not through the store (a SQLite file of the fault's).
    file: Option<PathBuf>,
}

impl<'t> Bench<'t> {
    fn new(target: &'t Target) -> Bench<'t> {
        let t = stores::unique_prefix();
        let d = target.store.dialect();
        let store = &target.store;
        store.exec(&format!(
            "CREATE TABLE {t}_users (name {text} NOT NULL PRIMARY KEY, folder {text} NOT NULL)",
            text = d.text
        ));
        store.exec(&format!(
            "INSERT INTO {t}_users (name, folder) VALUES ('alice', 'Inbox')"
        ));
        store.exec(&format!(
            "CREATE TABLE {t}_mail (id {serial}, recipient {text} NOT NULL, folder {text}, \
             sender {text}, body {blob} NOT NULL)",
            serial = d.serial,
            text = d.text,
            blob = d.blob
        ));
        let mail = format!("{t}_mail");
        Bench {
            target,
            t,
            dir: tempfile::tempdir().unwrap(),
            mail,
            file: None,
        }
    }

    fn t(&self) -> &str {
        &self.t
    }

    fn verify(&self) -> String {
        format!(
            "SELECT name, folder FROM {}_users WHERE name = '$local'",
            self.t()
        )
    }

    fn deliver(&self) -> String {
        format!(
            "INSERT INTO {} (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)",
            self.mail
        )
    }

    /// Writes `NAME.ini` with `dsn` (or the store's), Verify, Deliver and `extra` options.
    fn config_with(
        &self,
        name: &str,
        dsn: Option<&str>,
        verify: &str,
        deliver: &str,
        extra: &str,
    ) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.ini"));
        let dsn = dsn.map_or_else(|| self.target.store.dsn(), str::to_string);
        std::fs::write(
            &path,
            format!(
                "[Options]\nDSN = {dsn}\nVerify = {verify}\nDeliver = {deliver}\n{extra}\n\
                 [Environment]\n{}\n{BOUNCE}\n",
                self.target.store.environment()
            ),
        )
        .unwrap();
        mode(&path, 0o600);
        path
    }

    /// The standard statements with `extra` options.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        self.config_with(name, None, &self.verify(), &self.deliver(), extra)
    }

    /// Bodies stored for `token` (the sender of one delivery).
    fn rows(&self, token: &str) -> Vec<Vec<u8>> {
        let sql = format!("SELECT body FROM {} WHERE sender = '{token}'", self.mail);
        let rows: Vec<Vec<Cell>> = match &self.file {
            Some(file) => stores::sqlite::query_file(file, &sql),
            None => self.target.store.query(&sql),
        };
        rows.into_iter()
            .map(|r| r.into_iter().next().flatten().unwrap_or_default())
            .collect()
    }
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        let tables = [format!("{}_mail", self.t), format!("{}_users", self.t)];
        if self.target.db == Db::Virtuoso {
            // Virtuoso can keep a lock for a client killed in the middle of sending a long
            // value (the DROP then waits forever): give the drop a time limit, and restart
            // the server when it runs out.
            for table in &tables {
                if !virtuoso_admin(&format!("DROP TABLE {table}"), 20) {
                    println!(
                        "note: DROP TABLE {table} waited 20 s on Virtuoso (a lock left by a \
                         client killed mid-transfer); restarting Virtuoso"
                    );
                    VIRTUOSO_RESTARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    servers("restart", "virtuoso");
                    virtuoso_admin(&format!("DROP TABLE {table}"), 20);
                }
            }
            return;
        }
        for table in &tables {
            let _ = self.target.store.try_exec(&format!("DROP TABLE {table}"));
        }
    }
}

/// How often a lock left on Virtuoso made the harness restart it.
static VIRTUOSO_RESTARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// SQL as dba through isql-vt, within `seconds`; whether it finished in time.
fn virtuoso_admin(sql: &str, seconds: u64) -> bool {
    let host = std::env::var("VIRT_MAIL_TEST_VIRTUOSO_HOST").unwrap();
    let user = std::env::var("VIRT_MAIL_TEST_VIRTUOSO_USER").unwrap_or_else(|_| "dba".into());
    let password =
        std::env::var("VIRT_MAIL_TEST_VIRTUOSO_PASSWORD").unwrap_or_else(|_| "dba".into());
    let status = Command::new("timeout")
        .arg(seconds.to_string())
        .args(["isql-vt", &host, &user, &password])
        .arg(format!("exec={sql};"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    status.code() != Some(124)
}

/// Whether the run's stderr names what went wrong (`text`); `missing` says what was not.
fn stderr_says(obs: &Observed, text: &str, missing: &str) -> Result<(), String> {
    if obs.stderr.contains(text) {
        Ok(())
    } else {
        Err(missing.to_string())
    }
}

/// One message handed over once: who, what, and how the MTA runs us.
#[derive(Clone)]
struct Delivery {
    mailer: &'static str,
    local: &'static str,
    token: String,
    body: Vec<u8>,
}

impl Delivery {
    fn run(&self, config: &Path) -> Run {
        let mut run = Run::new();
        run.arg("-c").arg(config).mailer(self.mailer).args([
            "-l",
            self.local,
            "-h",
            "example.com",
            "-s",
            &self.token,
        ]);
        run
    }

    fn command(&self, config: &Path, debug: bool) -> Command {
        let mut run = self.run(config);
        if debug {
            run.arg("--debug");
        }
        run.command()
    }

    /// What a complete row holds: qmail/courier put their header lines first.
    fn stored(&self) -> Vec<u8> {
        let mut want = prefix(self.mailer);
        want.extend_from_slice(&self.body);
        want
    }
}

// ------------------------------------------------------------------------------ running ---

/// What a run ended with.
struct Observed {
    status: ExitStatus,
    elapsed: Duration,
    stdout: Vec<u8>,
    stderr: String,
    /// Peak resident set size of virt_mail itself, in KiB.
    maxrss_kb: i64,
}

impl Observed {
    fn describe(&self) -> String {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "?".into(),
        };
        let err: String = self.stderr.lines().take(4).collect::<Vec<_>>().join(" | ");
        format!(
            "{status} after {:.1} s; stderr: {}",
            self.elapsed.as_secs_f64(),
            err.chars().take(400).collect::<String>()
        )
    }
}

/// What virt_mail's standard input is.
enum Input {
    /// Piped, written by a thread (which stops quietly if virt_mail stops reading).
    Bytes(Vec<u8>),
    /// Something the fault prepared: a socket, a device, a file, another process's output.
    Given(Stdio),
}

/// A running virt_mail: its stderr lines arrive on a channel, so a fault can wait for the
/// step it wants to hit (`--debug` names each).
struct Live {
    child: Child,
    started: Instant,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_done: JoinHandle<()>,
    stdout: JoinHandle<Vec<u8>>,
    writer: Option<JoinHandle<()>>,
}

/// Most bytes of virt_mail's output kept for a report (a flooding Fallback passes on 64 KiB).
const KEEP: usize = 1 << 20;

fn spawn(mut command: Command, input: Input) -> Live {
    let (stdin, bytes) = match input {
        Input::Bytes(b) => (Stdio::piped(), Some(b)),
        Input::Given(s) => (s, None),
    };
    let started = Instant::now();
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = bytes.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let (tx, lines) = mpsc::channel();
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_done = {
        let stderr = Arc::clone(&stderr);
        let mut pipe = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut line = Vec::new();
            while pipe.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line).into_owned();
                {
                    let mut all = stderr.lock().unwrap();
                    if all.len() < KEEP {
                        all.push_str(&text);
                    }
                }
                let _ = tx.send(text);
                line.clear();
            }
        })
    };
    let stdout = {
        let mut pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if out.len() < KEEP {
                    out.extend_from_slice(&buf[..n]);
                }
            }
            out
        })
    };
    Live {
        child,
        started,
        lines,
        stderr,
        stderr_done,
        stdout,
        writer,
    }
}

impl Live {
    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Waits until a stderr line contains `needle`; false when it never came.
    fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(self.pid(), signal);
    }

    /// Reaps virt_mail (with its resource usage) and collects its output.
    fn finish(self) -> Observed {
        let (status, maxrss_kb) = wait4(self.child.id() as i32);
        let elapsed = self.started.elapsed();
        let stdout = self.stdout.join().unwrap();
        let _ = self.stderr_done.join();
        if let Some(w) = self.writer {
            let _ = w.join();
        }
        let stderr = self.stderr.lock().unwrap().clone();
        Observed {
            status,
            elapsed,
            stdout,
            stderr,
            maxrss_kb,
        }
    }
}

/// waitpid with the child's own resource usage (its peak RSS).
fn wait4(pid: i32) -> (ExitStatus, i64) {
    let mut status = 0;
    // SAFETY: plain syscall with out-parameters owned here.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(nix::libc::EINTR), "wait4: {e}");
    }
    (ExitStatus::from_raw(status), usage.ru_maxrss)
}

/// A plain run to the end.
fn run_plain(command: Command, input: Input) -> Observed {
    spawn(command, input).finish()
}

// ------------------------------------------------------------------------------- judging ---

/// What a fault may end with, as internal (sysexits) results mapped per mailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Deferred: 75, 111 under qmail.
    Temp,
    /// Deferred, or delivered if the fault came too late to matter.
    TempOrOk,
    /// This exact internal code (a bounce the SPEC prescribes).
    Code(i32),
    /// We killed it with SIGKILL (nothing can catch that), or it had already finished.
    KilledOrOk,
}

impl Want {
    fn accepts(self, mailer: &str, status: &ExitStatus) -> bool {
        let code = status.code();
        let is = |internal| code == Some(status_for(mailer, internal));
        match self {
            Want::Temp => is(75),
            Want::TempOrOk => is(75) || is(0),
            Want::Code(c) => is(c),
            Want::KilledOrOk => status.signal() == Some(9) || is(0),
        }
    }

    fn describe(self) -> String {
        match self {
            Want::Temp => "temporary (75/111)".into(),
            Want::TempOrOk => "temporary or delivered".into(),
            Want::Code(c) => format!("{c}"),
            Want::KilledOrOk => "SIGKILL or delivered".into(),
        }
    }
}

/// Where a delivered message is to be found.
enum Found<'a> {
    /// Rows of the bench's mail table, sender = token.
    Rows,
    /// A file the Fallback wrote (no rows may appear).
    File(&'a Path),
}

#[derive(Clone, Copy, Default)]
struct Count {
    runs: u32,
    right: u32,
    lost: u32,
    dup: u32,
    partial: u32,
    /// Truncated copies a Virtuoso server replayed after a crash in its COMMIT (its defect,
    /// see `virtuoso_torn_copy`): counted apart, never a pass for anything else.
    torn: u32,
}

impl Count {
    fn add(&mut self, o: Count) {
        self.runs += o.runs;
        self.right += o.right;
        self.lost += o.lost;
        self.dup += o.dup;
        self.partial += o.partial;
        self.torn += o.torn;
    }

    fn bad(&self) -> bool {
        self.right != self.runs || self.lost + self.dup + self.partial > 0
    }
}

/// The whole matrix: counts per (fault, target, mailer) and every problem in words.
struct Matrix {
    targets: Vec<&'static str>,
    /// Problems are printed as they are found, too (a later hang must not hide them).
    cells: BTreeMap<(usize, usize, usize), Count>,
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Matrix {
    fn problem(&mut self, p: String) {
        println!("PROBLEM: {p}");
        self.problems.push(p);
    }

    fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    /// Judges one run: its status against `want` (and `extra`, the fault's own checks such
    /// as time or memory), then the store, after the retry the MTA would make.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        fault: &Fault,
        target: &Target,
        bench: &Bench<'_>,
        d: &Delivery,
        obs: &Observed,
        want: Want,
        extra: Result<(), String>,
        found: Found<'_>,
        retry: Option<&Path>,
    ) {
        let fi = FAULTS.iter().position(|f| f.name == fault.name).unwrap();
        let ti = self.targets.iter().position(|t| *t == target.name).unwrap();
        let mi = MAILERS.iter().position(|m| *m == d.mailer).unwrap();
        let cell = format!("{} / {} / {}", fault.name, target.name, d.mailer);
        let mut c = Count {
            runs: 1,
            ..Count::default()
        };
        let ok_status = status_for(d.mailer, 0);
        let delivered = obs.status.code() == Some(ok_status);
        let right = want.accepts(d.mailer, &obs.status);
        match (&extra, right) {
            (Ok(()), true) => c.right = 1,
            (Err(why), _) => self.problem(format!("{cell}: {why}; {}", obs.describe())),
            (Ok(()), false) => self.problem(format!(
                "{cell}: wanted {}, got {}",
                want.describe(),
                obs.describe()
            )),
        }
        let want_body = d.stored();
        match found {
            Found::File(path) => {
                let rows = bench.rows(&d.token);
                if !rows.is_empty() {
                    c.dup = 1;
                    self.problem(format!(
                        "{cell}: {} rows for an unknown recipient",
                        rows.len()
                    ));
                }
                if delivered {
                    match std::fs::read(path) {
                        Ok(got) if got == d.body => {}
                        Ok(got) => {
                            c.partial = 1;
                            self.problem(format!(
                                "{cell}: the Fallback stored {} bytes of {}",
                                got.len(),
                                d.body.len()
                            ));
                        }
                        Err(e) => {
                            c.lost = 1;
                            self.problem(format!(
                                "{cell}: delivered, but the Fallback's copy is missing ({e})"
                            ));
                        }
                    }
                }
            }
            Found::Rows => {
                let rows = bench.rows(&d.token);
                let deferred = obs.status.code() == Some(status_for(d.mailer, 75))
                    || obs.status.signal().is_some();
                let torn = virtuoso_torn_copy(target, obs, deferred, &rows, &want_body);
                if let Some(t) = &torn {
                    c.torn = 1;
                    self.note(format!(
                        "{cell}: KNOWN VIRTUOSO DEFECT: deferred at COMMIT, and the restarted \
                         server replayed a truncated copy ({} of {} bytes; docs/RELIABILITY.md)",
                        t.len(),
                        want_body.len()
                    ));
                }
                let partial = rows
                    .iter()
                    .filter(|b| **b != want_body && Some(*b) != torn.as_ref())
                    .count();
                if partial > 0 {
                    c.partial = 1;
                    self.problem(format!(
                        "{cell}: {partial} stored bodies differ from the message ({} bytes sent; stored {:?} bytes)",
                        want_body.len(),
                        rows.iter().map(Vec::len).collect::<Vec<_>>()
                    ));
                }
                if delivered {
                    if rows.is_empty() {
                        c.lost = 1;
                        self.problem(format!("{cell}: success reported, nothing stored"));
                    } else if rows.len() > 1 {
                        c.dup = 1;
                        self.problem(format!("{cell}: stored {} times", rows.len()));
                    }
                } else if deferred {
                    if !rows.is_empty() {
                        self.note(format!(
                            "{cell}: deferred ({}) with {} row(s) already stored",
                            obs.describe(),
                            rows.len()
                        ));
                    }
                    match retry {
                        // The MTA retries once the fault is gone.
                        Some(config) => {
                            let mut run = d.run(config);
                            let again = run.stdin(d.body.clone()).output();
                            let mut rows = bench.rows(&d.token);
                            // The server's truncated copy stays; the retry must add one
                            // complete copy beside it (a length-checking Duplicate).
                            if let Some(i) =
                                torn.as_ref().and_then(|t| rows.iter().position(|r| r == t))
                            {
                                rows.remove(i);
                            }
                            if again.status.code() != Some(ok_status) {
                                c.lost = 1;
                                self.problem(format!(
                                    "{cell}: the retry failed: {:?} {}",
                                    again.status,
                                    text(&again.stderr).trim()
                                ));
                            } else if rows.is_empty() {
                                c.lost = 1;
                                self.problem(format!("{cell}: retry reported success, no row"));
                            } else if rows.len() > 1 {
                                c.dup = 1;
                                self.problem(format!(
                                    "{cell}: stored {} times after the retry",
                                    rows.len()
                                ));
                            } else if rows[0] != want_body {
                                c.partial = 1;
                                self.problem(format!("{cell}: the retried row differs"));
                            }
                        }
                        None if rows.len() > 1 => c.dup = 1,
                        None => {}
                    }
                } else if !rows.is_empty() {
                    // Bounced, yet stored: the sender is told it failed while it arrived.
                    c.dup = 1;
                    self.problem(format!(
                        "{cell}: bounced ({}) but {} row(s) stored",
                        obs.describe(),
                        rows.len()
                    ));
                }
            }
        }
        self.cells.entry((fi, ti, mi)).or_default().add(c);
    }

    fn print(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, a: &str, b: &str, c: &str, n: Count| {
            let _ = writeln!(
                out,
                "| {a:<28} | {b:<13} | {c:<8} | {:>4} | {:>5} | {:>4} | {:>4} | {:>7} | {:>4} |",
                n.runs, n.right, n.lost, n.dup, n.partial, n.torn
            );
        };
        let header = |out: &mut String, c: &str| {
            let _ = writeln!(
                out,
                "| {:<28} | {:<13} | {c:<8} | runs | right | lost | dup  | partial | torn |",
                "fault", "backend"
            );
            let _ = writeln!(
                out,
                "|{:-<30}|{:-<15}|{:-<10}|------|-------|------|------|---------|------|",
                "", "", ""
            );
        };
        let _ = writeln!(out, "\nFault matrix by fault x backend (all mailers):\n");
        header(&mut out, "mailers");
        let mut by_pair: BTreeMap<(usize, usize), (Count, Vec<usize>)> = BTreeMap::new();
        for (&(f, t, m), n) in &self.cells {
            let e = by_pair.entry((f, t)).or_default();
            e.0.add(*n);
            e.1.push(m);
        }
        let mut total = Count::default();
        for (&(f, t), (n, mailers)) in &by_pair {
            let m = if mailers.len() == MAILERS.len() {
                "all".to_string()
            } else {
                mailers
                    .iter()
                    .map(|&m| MAILERS[m])
                    .collect::<Vec<_>>()
                    .join(",")
            };
            line(&mut out, FAULTS[f].name, self.targets[t], &m, *n);
            total.add(*n);
        }
        line(&mut out, "TOTAL", "", "", total);
        let _ = writeln!(out, "\nBy mailer:\n");
        let _ = writeln!(
            out,
            "| mailer   | runs | right | lost | dup  | partial | torn |"
        );
        let _ = writeln!(
            out,
            "|----------|------|-------|------|------|---------|------|"
        );
        for (mi, m) in MAILERS.iter().enumerate() {
            let mut n = Count::default();
            for (&(_, _, x), c) in &self.cells {
                if x == mi {
                    n.add(*c);
                }
            }
            let _ = writeln!(
                out,
                "| {m:<8} | {:>4} | {:>5} | {:>4} | {:>4} | {:>7} | {:>4} |",
                n.runs, n.right, n.lost, n.dup, n.partial, n.torn
            );
        }
        let _ = writeln!(
            out,
            "\nFault matrix, every cell (fault x backend x mailer):\n"
        );
        header(&mut out, "mailer");
        for (&(f, t, m), n) in &self.cells {
            line(&mut out, FAULTS[f].name, self.targets[t], MAILERS[m], *n);
        }
        out
    }
}

// -------------------------------------------------------------------------------- faults ---

/// A fault: its name in the table, where it applies, and how it is run.
struct Fault {
    name: &'static str,
    what: &'static str,
    applies: fn(&Target) -> bool,
    run: fn(&mut Ctx<'_>, &Target),
}

fn everywhere(_: &Target) -> bool {
    true
}

fn servers_only(t: &Target) -> bool {
    t.server.is_some()
}

fn virtuoso_only(t: &Target) -> bool {
    t.db == Db::Virtuoso
}

fn not_virtuoso(t: &Target) -> bool {
    t.db != Db::Virtuoso
}

fn connection_limited(t: &Target) -> bool {
    matches!(t.db, Db::Postgres | Db::Mariadb)
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "db-down-at-connect",
        what: "server stopped (SQLite: database file gone) before virt_mail connects",
        applies: everywhere,
        run: db_down,
    },
    Fault {
        name: "server-killed-after-verify",
        what: "server SIGKILLed between Verify and Deliver",
        applies: servers_only,
        run: killed_after_verify,
    },
    Fault {
        name: "server-killed-mid-20MB",
        what: "server SIGKILLed while a 20 MB Deliver is being sent",
        applies: servers_only,
        run: killed_mid_deliver,
    },
    Fault {
        name: "server-killed-in-commit-20MB",
        what: "Virtuoso SIGKILLed while it writes a 20 MB COMMIT to its transaction log",
        applies: virtuoso_only,
        run: killed_in_commit,
    },
    Fault {
        name: "virt_mail-killed-mid-20MB",
        what: "virt_mail itself SIGKILLed during a 20 MB Deliver",
        applies: everywhere,
        run: process_killed_mid_deliver,
    },
    Fault {
        name: "lock-wait-timeout",
        what: "the recipient's row (SQLite: the database) locked by another session",
        applies: everywhere,
        run: lock_wait,
    },
    Fault {
        name: "statement-timeout",
        what: "a Verify that runs for 30 s, StatementTimeout = 2",
        applies: everywhere,
        run: statement_timeout,
    },
    Fault {
        name: "too-many-connections",
        what: "the delivery user's connection slots taken (role/user connection limit 1)",
        applies: connection_limited,
        run: too_many_connections,
    },
    Fault {
        name: "disk-full",
        what: "the mail table on a full tmpfs (SQLite file, PostgreSQL tablespace, MariaDB DATA DIRECTORY)",
        applies: not_virtuoso,
        run: disk_full,
    },
    Fault {
        name: "stdin-abandoned",
        what: "the MTA dies mid-write: half a message, then EOF, parent gone",
        applies: everywhere,
        run: stdin_abandoned,
    },
    Fault {
        name: "stdin-reset",
        what: "standard input is a socket reset by the peer (ECONNRESET after 32 KiB)",
        applies: everywhere,
        run: stdin_reset,
    },
    Fault {
        name: "stdin-eio",
        what: "standard input is a file whose read fails with EIO (/proc/PID/mem)",
        applies: everywhere,
        run: stdin_eio,
    },
    Fault {
        name: "stdin-eisdir",
        what: "standard input is a directory (read fails with EISDIR)",
        applies: everywhere,
        run: stdin_eisdir,
    },
    Fault {
        name: "sigterm-mid-delivery",
        what: "SIGTERM at a random point of reading, Deliver or commit",
        applies: everywhere,
        run: sigterm,
    },
    Fault {
        name: "sigalrm-mid-delivery",
        what: "SIGALRM at a random point of reading, Deliver or commit",
        applies: everywhere,
        run: sigalrm,
    },
    Fault {
        name: "sigpipe-mid-delivery",
        what: "SIGPIPE at a random point of reading, Deliver or commit",
        applies: everywhere,
        run: sigpipe,
    },
    Fault {
        name: "fallback-missing",
        what: "Fallback program does not exist (SPEC §5.6: bounce as unknown, 67)",
        applies: everywhere,
        run: fallback_missing,
    },
    Fault {
        name: "fallback-crash",
        what: "Fallback dies of SIGSEGV",
        applies: everywhere,
        run: fallback_crash,
    },
    Fault {
        name: "fallback-hang",
        what: "Fallback sleeps past FallbackTimeout = 2",
        applies: everywhere,
        run: fallback_hang,
    },
    Fault {
        name: "fallback-hang-ignoring-term",
        what: "Fallback ignores SIGTERM and hangs (needs the SIGKILL)",
        applies: everywhere,
        run: fallback_hang_ignoring_term,
    },
    Fault {
        name: "fallback-flood",
        what: "Fallback writes 30 MB to stdout and to stderr, then succeeds",
        applies: everywhere,
        run: fallback_flood,
    },
    Fault {
        name: "config-unreadable",
        what: "configuration file not readable by the delivery user (SPEC §3: 72)",
        applies: everywhere,
        run: config_unreadable,
    },
    Fault {
        name: "oversized-2GB-stream",
        what: "2 GB from /dev/zero through a pipe, MaxMessageSize = 10 MiB (77, fast, small)",
        applies: everywhere,
        run: oversized_stream,
    },
    Fault {
        name: "oversized-2GB-file",
        what: "a 2 GB file as standard input (qmail style), MaxMessageSize = 10 MiB",
        applies: everywhere,
        run: oversized_file,
    },
];

/// What the faults share: the matrix, the generator, the mode, a run counter.
struct Ctx<'m> {
    matrix: &'m mut Matrix,
    rng: Rng,
    mode: Mode,
    serial: u32,
    /// Rotates the mailer in the CI variant, so every profile is covered somewhere.
    turn: usize,
}

impl Ctx<'_> {
    /// The mailers (and how many runs each) for a fault in this mode.
    fn mailers(&mut self, full_repeats: u32) -> Vec<&'static str> {
        match self.mode {
            Mode::Ci => {
                self.turn += 1;
                vec![MAILERS[self.turn % MAILERS.len()]]
            }
            Mode::Full => MAILERS
                .iter()
                .flat_map(|m| std::iter::repeat_n(*m, full_repeats as usize))
                .collect(),
        }
    }

    fn delivery(&mut self, mailer: &'static str, size: usize) -> Delivery {
        self.serial += 1;
        let token = format!(
            "r{}x{:x}.{mailer}@faults.example",
            self.serial,
            self.rng.next() >> 40
        );
        let mut body = format!("Subject: {token}\r\n\r\n").into_bytes();
        let n = size.saturating_sub(body.len());
        body.extend(self.rng.bytes(n));
        Delivery {
            mailer,
            local: "alice",
            token,
            body,
        }
    }
}

fn fault(name: &str) -> &'static Fault {
    FAULTS.iter().find(|f| f.name == name).unwrap()
}

// --- database down ---

fn db_down(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("db-down-at-connect");
    let bench = Bench::new(target);
    let good = bench.config("good", "");
    // The SQLite ODBC driver creates a missing database file (then Verify finds no table:
    // 78, a bounce); NoCreat=1 keeps it from doing so, as a real setup must.
    let config = if target.db == Db::Sqlite && target.odbc {
        bench.config_with(
            "down",
            Some(&format!("{};NoCreat=1", target.store.dsn())),
            &bench.verify(),
            &bench.deliver(),
            "",
        )
    } else {
        good.clone()
    };
    let deliveries: Vec<Delivery> = match ctx.mode {
        Mode::Ci => MAILERS.iter().map(|m| ctx.delivery(m, 2000)).collect(),
        Mode::Full => ctx
            .mailers(2)
            .into_iter()
            .map(|m| ctx.delivery(m, 2000))
            .collect(),
    };
    let mut observed = Vec::new();
    {
        let _restart = Restart(target.server);
        let _back = match target.server {
            Some(server) => {
                servers("stop", server);
                None
            }
            None => Some(MovedAway::new(&sqlite_file(target))),
        };
        for d in &deliveries {
            observed.push(run_plain(
                d.command(&config, false),
                Input::Bytes(d.body.clone()),
            ));
        }
    }
    for (d, obs) in deliveries.iter().zip(&observed) {
        let extra = if obs.stdout == b"\nThe mail store is unavailable.\n" {
            Ok(())
        } else {
            Err(format!("bounce text {:?}", text(&obs.stdout)))
        };
        ctx.matrix.judge(
            f,
            target,
            &bench,
            d,
            obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&good),
        );
    }
}

/// A SQLite database moved out of the way (and its journal files), put back when dropped.
struct MovedAway(Vec<(PathBuf, PathBuf)>);

impl MovedAway {
    fn new(file: &Path) -> MovedAway {
        let mut moved = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let from = PathBuf::from(format!("{}{suffix}", file.display()));
            let to = PathBuf::from(format!("{}{suffix}.away", file.display()));
            if from.exists() {
                std::fs::rename(&from, &to).unwrap();
                moved.push((from, to));
            }
        }
        MovedAway(moved)
    }
}

impl Drop for MovedAway {
    fn drop(&mut self) {
        for (from, to) in &self.0 {
            let _ = std::fs::rename(to, from);
        }
    }
}

// --- servers killed ---

fn killed_after_verify(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("server-killed-after-verify");
    let server = target.server.unwrap();
    let bench = Bench::new(target);
    let config = bench.config("good", "");
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 4000);
        // Verify runs before the message is read: stdin is held until the kill.
        let (reader, mut writer) = std::io::pipe().unwrap();
        let live = spawn(d.command(&config, true), Input::Given(Stdio::from(reader)));
        let reached = live.wait_for("Verify: found", Duration::from_secs(30));
        let obs = {
            let _restart = Restart(Some(server));
            servers("kill", server);
            let _ = writer.write_all(&d.body);
            drop(writer);
            live.finish()
        };
        let extra = if reached {
            Ok(())
        } else {
            Err("Verify never finished".into())
        };
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

/// The `Duplicate` statement (as a Message-ID check would be): a retry after a crash that
/// fell after the commit (nobody can tell) finds the row and does not store it twice. On
/// Virtuoso it also compares the length, as docs/RELIABILITY.md advises there: a truncated
/// copy the server replayed (`virtuoso_torn_copy`) is then no reason to skip the retry.
fn duplicate_check(bench: &Bench<'_>) -> String {
    let length = if bench.target.db == Db::Virtuoso {
        " AND length(body) = CAST('$size' AS INTEGER)"
    } else {
        ""
    };
    format!(
        "Duplicate = SELECT 1 FROM {} WHERE sender = '$sender'{length}",
        bench.mail
    )
}

/// The one shape of a Virtuoso server defect: `log_commit` (libsrc/Wi/log.c, 7.2) writes a
/// transaction's long values to the log after the record its header counts, so a server
/// killed while writing them replays, at restart, the row with its body cut short. The
/// COMMIT was never acknowledged — virt_mail deferred at that step — so the server, not
/// virt_mail, broke atomicity. Only exactly that is recognised: a Virtuoso target, a
/// deferral whose error names the COMMIT (`SQLTransact`), and one stored row that is a
/// strict prefix of the message. Returns that row.
fn virtuoso_torn_copy(
    target: &Target,
    obs: &Observed,
    deferred: bool,
    rows: &[Vec<u8>],
    want: &[u8],
) -> Option<Vec<u8>> {
    let [row] = rows else { return None };
    let shape = target.db == Db::Virtuoso
        && deferred
        && obs.stderr.contains("SQLTransact")
        && row.len() < want.len()
        && want.starts_with(row);
    shape.then(|| row.clone())
}

fn killed_mid_deliver(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("server-killed-mid-20MB");
    let server = target.server.unwrap();
    let bench = Bench::new(target);
    let config = bench.config("dup", &duplicate_check(&bench));
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 20 * 1024 * 1024);
        let live = spawn(d.command(&config, true), Input::Bytes(d.body.clone()));
        let reached = live.wait_for("Deliver:", Duration::from_secs(60));
        let jitter = ctx.rng.below(60);
        let obs = {
            let _restart = Restart(Some(server));
            std::thread::sleep(Duration::from_millis(jitter));
            servers("kill", server);
            live.finish()
        };
        let extra = if reached {
            Ok(())
        } else {
            Err("Deliver never started".into())
        };
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::TempOrOk,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

/// Aims at the window `virtuoso_torn_copy` describes, which the random moment of
/// server-killed-mid-20MB seldom hits: the server is killed as soon as its transaction log
/// has grown by 64 KiB during the delivery (only a COMMIT writes it).
fn killed_in_commit(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("server-killed-in-commit-20MB");
    let server = target.server.unwrap();
    let dir =
        PathBuf::from(std::env::var("VM_RUN_DIR").expect(
            "VM_RUN_DIR: the fault servers' run directory (scripts/fault-matrix.sh sets it)",
        ))
        .join("virtuoso");
    let log = dir.join("data/virtuoso.trx");
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bench = Bench::new(target);
    let config = bench.config("dup", &duplicate_check(&bench));
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 20 * 1024 * 1024);
        let pid: i32 = std::fs::read_to_string(dir.join("server.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let before = size(&log);
        let live = spawn(d.command(&config, true), Input::Bytes(d.body.clone()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while size(&log) < before + 64 * 1024 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
        let grew = size(&log) >= before + 64 * 1024;
        let obs = {
            let _restart = Restart(Some(server));
            // Directly: the script's own start-up would miss the window.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            servers("kill", server);
            live.finish()
        };
        let extra = if grew {
            Ok(())
        } else {
            Err("the server's transaction log never grew".into())
        };
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::TempOrOk,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

fn process_killed_mid_deliver(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("virt_mail-killed-mid-20MB");
    let bench = Bench::new(target);
    let config = bench.config("dup", &duplicate_check(&bench));
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 20 * 1024 * 1024);
        let live = spawn(d.command(&config, true), Input::Bytes(d.body.clone()));
        let reached = live.wait_for("Deliver:", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(ctx.rng.below(60)));
        live.signal(nix::sys::signal::Signal::SIGKILL);
        let obs = live.finish();
        let extra = if reached {
            Ok(())
        } else {
            Err("Deliver never started".into())
        };
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::KilledOrOk,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

// --- locks and time limits ---

/// A session of the test's own that holds a lock until dropped (rolled back then).
#[allow(clippy::large_enum_variant)] // one at a time, on the stack of a test
enum Holder {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Pg(postgres::Client),
    #[cfg(feature = "mysql")]
    My(mysql::Conn),
    #[cfg(feature = "odbc")]
    Odbc(odbc_api::Connection<'static>),
}

impl Holder {
    /// Locks the recipient's row (a write not yet committed); SQLite: the write lock.
    fn lock(target: &Target, bench: &Bench<'_>) -> Holder {
        let update = format!(
            "UPDATE {}_users SET folder = folder WHERE name = 'alice'",
            bench.t()
        );
        match target.db {
            Db::Sqlite => {
                let conn = rusqlite::Connection::open(sqlite_file(target)).unwrap();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                conn.execute_batch(&update).unwrap();
                Holder::Sqlite(conn)
            }
            #[cfg(feature = "postgres")]
            Db::Postgres => {
                let url = std::env::var("VIRT_MAIL_TEST_PG_URL").unwrap();
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                client.batch_execute(&format!("BEGIN; {update}")).unwrap();
                Holder::Pg(client)
            }
            #[cfg(feature = "mysql")]
            Db::Mariadb => {
                use mysql::prelude::Queryable;
                let url = std::env::var("VIRT_MAIL_TEST_MYSQL_URL").unwrap();
                let mut conn = stores::mysql::connect(&url).unwrap();
                conn.query_drop("START TRANSACTION").unwrap();
                conn.query_drop(&update).unwrap();
                Holder::My(conn)
            }
            #[cfg(feature = "odbc")]
            Db::Virtuoso => {
                let env = odbc_api::environment().unwrap();
                let conn = env
                    .connect_with_connection_string(
                        // The ODBC data source, also when virt_mail goes native.
                        &stores::odbc::Odbc::virtuoso_from_env().unwrap().dsn(),
                        odbc_api::ConnectionOptions::default(),
                    )
                    .unwrap();
                conn.set_autocommit(false).unwrap();
                conn.execute(&update, (), None).unwrap();
                Holder::Odbc(conn)
            }
            #[allow(unreachable_patterns)]
            _ => panic!("no lock holder for {:?} in this build", target.db),
        }
    }

    /// A connection that takes the delivery user's only slot.
    fn connection(url: &str, db: Db) -> Holder {
        match db {
            #[cfg(feature = "postgres")]
            Db::Postgres => Holder::Pg(postgres::Client::connect(url, postgres::NoTls).unwrap()),
            #[cfg(feature = "mysql")]
            Db::Mariadb => Holder::My(stores::mysql::connect(url).unwrap()),
            _ => panic!("no connection holder for {db:?}"),
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        match self {
            Holder::Sqlite(c) => {
                let _ = c.execute_batch("ROLLBACK");
            }
            #[cfg(feature = "postgres")]
            Holder::Pg(c) => {
                let _ = c.batch_execute("ROLLBACK");
            }
            #[cfg(feature = "mysql")]
            Holder::My(c) => {
                use mysql::prelude::Queryable;
                let _ = c.query_drop("ROLLBACK");
            }
            #[cfg(feature = "odbc")]
            Holder::Odbc(c) => {
                let _ = c.rollback();
            }
        }
    }
}

fn lock_wait(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("lock-wait-timeout");
    let bench = Bench::new(target);
    let good = bench.config("good", "");
    // The servers lock the row Verify reads FOR UPDATE; SQLite's Deliver waits for the
    // database's write lock.
    let verify = match target.db {
        Db::Sqlite => bench.verify(),
        _ => format!("{} FOR UPDATE", bench.verify()),
    };
    let config = bench.config_with(
        "locked",
        None,
        &verify,
        &bench.deliver(),
        "StatementTimeout = 2",
    );
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 3000);
        let obs = {
            let _lock = Holder::lock(target, &bench);
            run_plain(d.command(&config, false), Input::Bytes(d.body.clone()))
        };
        let extra = within(&obs, 2 + 5 + 10 + 3);
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&good),
        );
    }
}

/// The run's own time check: it must answer well before an MTA gives up.
fn within(obs: &Observed, seconds: u64) -> Result<(), String> {
    if obs.elapsed <= Duration::from_secs(seconds) {
        Ok(())
    } else {
        Err(format!(
            "took {:.1} s (limit {seconds} s)",
            obs.elapsed.as_secs_f64()
        ))
    }
}

fn statement_timeout(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("statement-timeout");
    let bench = Bench::new(target);
    let good = bench.config("good", "");
    let slow = match target.db {
        Db::Sqlite => "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                       LIMIT 4000000000) SELECT count(*) FROM c) > 0"
            .to_string(),
        Db::Postgres => "(SELECT 1 FROM pg_sleep(30)) = 1".into(),
        Db::Mariadb => "SLEEP(30) = 0".into(),
        Db::Virtuoso => "delay(30) = 0".into(),
    };
    let config = bench.config_with(
        "slow",
        None,
        &format!("{} AND {slow}", bench.verify()),
        &bench.deliver(),
        "StatementTimeout = 2",
    );
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 3000);
        let obs = run_plain(d.command(&config, false), Input::Bytes(d.body.clone()));
        let extra = within(&obs, 2 + 5 + 10 + 3);
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&good),
        );
    }
}

/// The role/user `scripts/fault-matrix.sh` made with a connection limit of 1: its URL for
/// the test's own client, and the DSN virt_mail gets.
fn limited(target: &Target) -> (String, String) {
    let (var, odbc) = match target.db {
        Db::Postgres => ("VIRT_MAIL_FAULT_PG_LIMITED_URL", "DSN=vm_pg"),
        _ => ("VIRT_MAIL_FAULT_MYSQL_LIMITED_URL", "DSN=vm_mariadb"),
    };
    let url = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run scripts/fault-matrix.sh"));
    let dsn = if target.odbc {
        let user = std::env::var("VIRT_MAIL_FAULT_LIMITED_USER").unwrap();
        let password = std::env::var("VIRT_MAIL_FAULT_LIMITED_PASSWORD").unwrap();
        format!("{odbc};UID={user};PWD={password}")
    } else {
        url.clone()
    };
    (url, dsn)
}

fn too_many_connections(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("too-many-connections");
    let bench = Bench::new(target);
    let (url, dsn) = limited(target);
    let config = bench.config_with("limited", Some(&dsn), &bench.verify(), &bench.deliver(), "");
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 3000);
        let obs = {
            let _slot = Holder::connection(&url, target.db);
            run_plain(d.command(&config, false), Input::Bytes(d.body.clone()))
        };
        // The server counts a session until its process has gone, a moment after the
        // client left: the MTA's retry comes minutes later, ours after a pause.
        std::thread::sleep(Duration::from_secs(1));
        let extra = stderr_says(&obs, "DB_Connect", "not refused at connect");
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

// --- disk full ---

/// A tmpfs of our own, unmounted when dropped; `fill` leaves it nearly full.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(name: &str, owner: Option<&str>) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(format!("vm-full-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=160m,mode=0755", "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mount tmpfs: {}", text(&out.stderr).trim()));
        }
        if let Some(owner) = owner {
            let ok = Command::new("chown")
                .arg(format!("{owner}:{owner}"))
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {owner} {}", dir.display());
        }
        Ok(Tmpfs { dir })
    }

    /// Fills the file system to within `free` bytes.
    fn fill(&self, free: u64) {
        self.unfill();
        let st = nix::sys::statvfs::statvfs(&self.dir).unwrap();
        let available = st.blocks_available() as u64 * st.fragment_size() as u64;
        let size = available.saturating_sub(free);
        let file = std::fs::File::create(self.dir.join("filler")).unwrap();
        nix::fcntl::posix_fallocate(&file, 0, size as i64).unwrap();
    }

    /// The administrator makes room.
    fn unfill(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Superuser SQL on the PostgreSQL server (peer authentication over its socket).
fn pg_admin(sql: &str) {
    let dir = std::env::var("VIRT_MAIL_TEST_PG_SOCKET_DIR").unwrap();
    let port = std::env::var("VIRT_MAIL_TEST_PG_PORT").unwrap();
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/psql"])
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &dir,
            "-p",
            &port,
            "-d",
            "mail",
            "-c",
        ])
        .arg(sql)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
}

/// Root SQL on the MariaDB server (unix_socket authentication).
fn mariadb_admin(sql: &str) {
    let socket = std::env::var("VIRT_MAIL_TEST_MYSQL_SOCKET").unwrap();
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-uroot", "-S", &socket, "mail", "-e"])
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
}

fn disk_full(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("disk-full");
    let owner = match target.db {
        Db::Postgres => Some("postgres"),
        Db::Mariadb => Some("mysql"),
        _ => None,
    };
    let fs = match Tmpfs::mount(target.name, owner) {
        Ok(fs) => fs,
        Err(why) => {
            ctx.matrix.problem(format!(
                "{} / {}: cannot make a full disk: {why}",
                f.name, target.name
            ));
            return;
        }
    };
    let mut bench = Bench::new(target);
    let t = bench.t().to_string();
    let columns = |d: &stores::Dialect| {
        format!(
            "(id {}, recipient {text} NOT NULL, folder {text}, sender {text}, body {} NOT NULL)",
            d.serial,
            d.blob,
            text = d.text
        )
    };
    let mut dsn = None;
    let mut cleanup: Vec<Box<dyn Fn()>> = Vec::new();
    match target.db {
        Db::Sqlite => {
            // The whole database on the full disk, with its own copy of the users.
            let file = fs.dir.join("mail.db");
            let conn = rusqlite::Connection::open(&file).unwrap();
            conn.execute_batch(&format!(
                "CREATE TABLE {t}_users (name TEXT PRIMARY KEY, folder TEXT NOT NULL);
                 INSERT INTO {t}_users VALUES ('alice', 'Inbox');
                 CREATE TABLE {t}_fmail {};",
                columns(&target.store.dialect())
            ))
            .unwrap();
            dsn = Some(if target.odbc {
                format!(
                    "DRIVER=SQLite3;Database={};NoCreat=1;Timeout=5000",
                    file.display()
                )
            } else {
                format!("sqlite:{}", file.display())
            });
            bench.file = Some(file);
        }
        Db::Postgres => {
            let space = format!("vmrel_full_{}", std::process::id());
            pg_admin(&format!(
                "CREATE TABLESPACE {space} LOCATION '{}'",
                fs.dir.display()
            ));
            pg_admin(&format!("GRANT CREATE ON TABLESPACE {space} TO virt"));
            target.store.exec(&format!(
                "CREATE TABLE {t}_fmail {} TABLESPACE {space}",
                columns(&target.store.dialect())
            ));
            cleanup.push(Box::new(move || {
                pg_admin(&format!("DROP TABLESPACE {space}"))
            }));
        }
        Db::Mariadb => {
            mariadb_admin(&format!(
                "CREATE TABLE {t}_fmail {} DATA DIRECTORY = '{}'",
                columns(&target.store.dialect()),
                fs.dir.display()
            ));
        }
        Db::Virtuoso => unreachable!(),
    }
    bench.mail = format!("{t}_fmail");
    let good = bench.config_with(
        "good",
        dsn.as_deref(),
        &bench.verify(),
        &bench.deliver(),
        "",
    );
    for mailer in ctx.mailers(1) {
        // 8 MB into 1 MB of space.
        let d = ctx.delivery(mailer, 8 * 1024 * 1024);
        fs.fill(1024 * 1024);
        let obs = run_plain(d.command(&good, false), Input::Bytes(d.body.clone()));
        fs.unfill();
        if target.db == Db::Mariadb {
            // InnoDB aborts the server when a rollback finds no space ("[FATAL] InnoDB:
            // Error (Out of disk space) in rollback"): bring it back, as an operator would.
            if !obs.stderr.is_empty() && !mariadb_alive() {
                ctx.matrix.note(format!(
                    "{} / {} / {mailer}: MariaDB aborted on the full disk and was restarted",
                    f.name, target.name
                ));
                servers("start", "mariadb");
            }
        }
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            Ok(()),
            Found::Rows,
            Some(&good),
        );
    }
    if let Some(file) = &bench.file {
        let check = stores::sqlite::query_file(file, "PRAGMA integrity_check");
        let ok = check
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .is_some_and(|v| v == b"ok");
        if !ok {
            ctx.matrix.problem(format!(
                "{} / {}: the database is damaged: {check:?}",
                f.name, target.name
            ));
        }
    } else {
        target.store.exec(&format!("DROP TABLE {}", bench.mail));
    }
    drop(bench);
    for c in cleanup {
        c();
    }
    drop(fs);
}

#[cfg(feature = "mysql")]
fn mariadb_alive() -> bool {
    let url = std::env::var("VIRT_MAIL_TEST_MYSQL_URL").unwrap();
    stores::mysql::connect(&url).is_ok()
}

#[cfg(not(feature = "mysql"))]
fn mariadb_alive() -> bool {
    false
}

// --- standard input ---

fn stdin_abandoned(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("stdin-abandoned");
    let bench = Bench::new(target);
    let config = bench.config("good", "");
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 200_000);
        // The "MTA": a shell that starts virt_mail and waits for it, killed halfway through
        // writing the message. We become virt_mail's parent (subreaper) to see its status.
        let command = d.command(&config, true);
        let mut mta = wrapped(
            &[
                "/bin/sh",
                "-c",
                "exec 3<&0; \"$0\" \"$@\" <&3 3<&- & echo $!; wait",
            ],
            &command,
        );
        let (reader, mut writer) = std::io::pipe().unwrap();
        let started = Instant::now();
        let mut shell = mta
            .stdin(Stdio::from(reader))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pid_line = String::new();
        BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut pid_line)
            .unwrap();
        let pid: i32 = pid_line.trim().parse().unwrap();
        let (tx, lines) = mpsc::channel::<String>();
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader_thread = {
            let stderr = Arc::clone(&stderr);
            let pipe = shell.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    stderr.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut reached = false;
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains("Verify: found") {
                reached = true;
                break;
            }
        }
        let _ = writer.write_all(&d.body[..d.body.len() / 2]);
        let _ = shell.kill();
        let _ = shell.wait();
        drop(writer);
        let (status, maxrss_kb) = wait4(pid);
        let _ = reader_thread.join();
        let obs = Observed {
            status,
            elapsed: started.elapsed(),
            stdout: Vec::new(),
            stderr: stderr.lock().unwrap().clone(),
            maxrss_kb,
        };
        let extra = if reached {
            Ok(())
        } else {
            Err("Verify never finished".into())
        };
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

fn stdin_reset(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("stdin-reset");
    let bench = Bench::new(target);
    let config = bench.config("good", "");
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 100_000);
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        // Unread data in our receive queue when we close makes the kernel reset the
        // connection: virt_mail reads 32 KiB, then ECONNRESET.
        theirs.try_clone().unwrap().write_all(b"unread").unwrap();
        ours.write_all(&d.body[..32 * 1024]).unwrap();
        let live = spawn(
            d.command(&config, false),
            Input::Given(Stdio::from(OwnedFd::from(theirs))),
        );
        drop(ours);
        let obs = live.finish();
        let extra = stderr_says(&obs, "Cannot read the message", "no read error reported");
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

fn stdin_eio(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("stdin-eio");
    let bench = Bench::new(target);
    let config = bench.config("good", "");
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 3000);
        // Our own memory as a file: offset 0 is unmapped, so read(2) fails with EIO.
        let mem = std::fs::File::open(format!("/proc/{}/mem", std::process::id())).unwrap();
        let obs = run_plain(d.command(&config, false), Input::Given(Stdio::from(mem)));
        let extra = stderr_says(&obs, "Input/output error", "no EIO reported");
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

fn stdin_eisdir(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("stdin-eisdir");
    let bench = Bench::new(target);
    let config = bench.config("good", "");
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 3000);
        let dir = std::fs::File::open(bench.dir.path()).unwrap();
        let obs = run_plain(d.command(&config, false), Input::Given(Stdio::from(dir)));
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Temp,
            Ok(()),
            Found::Rows,
            Some(&config),
        );
    }
}

// --- signals ---

fn sigterm(ctx: &mut Ctx<'_>, target: &Target) {
    signal_mid_delivery(
        ctx,
        target,
        "sigterm-mid-delivery",
        nix::sys::signal::SIGTERM,
    );
}

fn sigalrm(ctx: &mut Ctx<'_>, target: &Target) {
    signal_mid_delivery(
        ctx,
        target,
        "sigalrm-mid-delivery",
        nix::sys::signal::SIGALRM,
    );
}

fn sigpipe(ctx: &mut Ctx<'_>, target: &Target) {
    signal_mid_delivery(
        ctx,
        target,
        "sigpipe-mid-delivery",
        nix::sys::signal::SIGPIPE,
    );
}

/// The signal lands at a random point: while the message is read (just after Verify), or
/// a few milliseconds into Deliver, where the statement, the commit or the exit may be
/// running. No Duplicate check here: a signal is caught, so "deferred" must mean "not
/// stored".
fn signal_mid_delivery(
    ctx: &mut Ctx<'_>,
    target: &Target,
    name: &str,
    signal: nix::sys::signal::Signal,
) {
    let f = fault(name);
    let bench = Bench::new(target);
    let config = bench.config("good", "");
    let repeats = if ctx.mode == Mode::Full { 4 } else { 1 };
    for mailer in ctx.mailers(repeats) {
        let d = ctx.delivery(mailer, 2 * 1024 * 1024);
        let during_read = ctx.rng.below(4) == 0;
        let (input, writer) = if during_read {
            // The message is held back, so the signal surely lands during the read.
            let (reader, writer) = std::io::pipe().unwrap();
            (Input::Given(Stdio::from(reader)), Some(writer))
        } else {
            (Input::Bytes(d.body.clone()), None)
        };
        let live = spawn(d.command(&config, true), input);
        let step = if during_read {
            "Verify: found"
        } else {
            "Deliver:"
        };
        let reached = live.wait_for(step, Duration::from_secs(60));
        if let Some(mut w) = writer {
            let _ = w.write_all(&d.body[..1000]);
            std::thread::sleep(Duration::from_millis(ctx.rng.below(50)));
            live.signal(signal);
            // Still alive (SIGPIPE is ignored): it gets the whole message, as from an MTA.
            let _ = w.write_all(&d.body[1000..]);
            drop(w);
        } else {
            std::thread::sleep(Duration::from_micros(ctx.rng.below(30_000)));
            live.signal(signal);
        }
        let obs = live.finish();
        let extra = if reached {
            Ok(())
        } else {
            Err(format!("never reached {step}"))
        };
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::TempOrOk,
            extra,
            Found::Rows,
            Some(&config),
        );
    }
}

// --- fallback ---

/// Runs an unknown recipient into `fallback`, judged by `want` and, when it delivers, by the
/// copy it left in `out`.
fn fallback_fault(
    ctx: &mut Ctx<'_>,
    target: &Target,
    name: &str,
    fallback: &str,
    want: Want,
    limit: u64,
) {
    let f = fault(name);
    let bench = Bench::new(target);
    let out = bench.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let fallback = fallback.replace("{out}", &out.display().to_string());
    let config = bench.config(
        "fallback",
        &format!("FallbackTimeout = 2\nFallback = {fallback}"),
    );
    for mailer in ctx.mailers(1) {
        let mut d = ctx.delivery(mailer, 50_000);
        d.local = "carol";
        let obs = run_plain(d.command(&config, false), Input::Bytes(d.body.clone()));
        let mut extra = within(&obs, limit);
        // A flooding child is cut to 64 KiB per stream.
        if obs.stdout.len() > 80 * 1024 || obs.stderr.len() > 80 * 1024 {
            extra = Err(format!(
                "passed on {} bytes of stdout and {} of stderr",
                obs.stdout.len(),
                obs.stderr.len()
            ));
        }
        let copy = out.join(&d.token);
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            want,
            extra,
            Found::File(&copy),
            None,
        );
    }
}

fn fallback_missing(ctx: &mut Ctx<'_>, target: &Target) {
    fallback_fault(
        ctx,
        target,
        "fallback-missing",
        "/nonexistent/virt_mail-fallback -f $sender",
        Want::Code(67),
        10,
    );
}

fn fallback_crash(ctx: &mut Ctx<'_>, target: &Target) {
    fallback_fault(
        ctx,
        target,
        "fallback-crash",
        "/bin/sh -c \"cat > /dev/null; kill -SEGV $$\"",
        Want::Temp,
        10,
    );
}

fn fallback_hang(ctx: &mut Ctx<'_>, target: &Target) {
    // FallbackTimeout 2 s, SIGTERM; 2 s more for the output pipes.
    fallback_fault(
        ctx,
        target,
        "fallback-hang",
        "/bin/sleep 600",
        Want::Temp,
        2 + 2 + 4,
    );
}

fn fallback_hang_ignoring_term(ctx: &mut Ctx<'_>, target: &Target) {
    // 2 s, SIGTERM ignored, SIGKILL 5 s later, then the pipes.
    fallback_fault(
        ctx,
        target,
        "fallback-hang-ignoring-term",
        "/bin/sh -c \"trap '' TERM; sleep 600\"",
        Want::Temp,
        2 + 5 + 2 + 4,
    );
}

fn fallback_flood(ctx: &mut Ctx<'_>, target: &Target) {
    fallback_fault(
        ctx,
        target,
        "fallback-flood",
        "/bin/sh -c \"cat > {out}/$sender; head -c 30000000 /dev/zero; \
         head -c 30000000 /dev/zero >&2; exit 0\"",
        Want::Code(0),
        30,
    );
}

// --- configuration and size ---

fn config_unreadable(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("config-unreadable");
    let bench = Bench::new(target);
    let config = bench.config("root-only", "");
    // Root reads anything: the delivery runs as nobody, the file stays root's, mode 0600.
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 3000);
        let mut as_nobody = wrapped(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ],
            &d.command(&config, false),
        );
        as_nobody.current_dir("/");
        let obs = run_plain(as_nobody, Input::Bytes(d.body.clone()));
        let extra = stderr_says(
            &obs,
            "Cannot open configuration file",
            "no 'Cannot open configuration file'",
        );
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Code(72),
            extra,
            Found::Rows,
            None,
        );
    }
}

/// Peak RSS allowed for refusing an oversized message (10 MB are held, then dropped).
const OVERSIZED_RSS_KB: i64 = 96 * 1024;

/// The worst peak RSS (KiB) and time (s) seen refusing an oversized message.
static OVERSIZED: Mutex<(i64, f64)> = Mutex::new((0, 0.0));

fn oversized_check(obs: &Observed) -> Result<(), String> {
    {
        let mut worst = OVERSIZED.lock().unwrap();
        worst.0 = worst.0.max(obs.maxrss_kb);
        worst.1 = worst.1.max(obs.elapsed.as_secs_f64());
    }
    within(obs, 20)?;
    if obs.maxrss_kb > OVERSIZED_RSS_KB {
        return Err(format!(
            "peak RSS {} MiB (limit {})",
            obs.maxrss_kb / 1024,
            OVERSIZED_RSS_KB / 1024
        ));
    }
    if !obs.stdout.ends_with(b"\nToo long for alice.\n") {
        return Err(format!("bounce text {:?}", text(&obs.stdout)));
    }
    Ok(())
}

fn oversized_stream(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("oversized-2GB-stream");
    let bench = Bench::new(target);
    let config = bench.config("limit", "MaxMessageSize = 10485760");
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 100);
        let mut zeros = Command::new("head")
            .args(["-c", "2147483648", "/dev/zero"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = zeros.stdout.take().unwrap();
        let report = bench.dir.path().join("rss");
        let command = measured(&d.command(&config, false), &report);
        let mut obs = run_plain(command, Input::Given(Stdio::from(pipe)));
        obs.maxrss_kb = peak_rss_kb(&report);
        let _ = zeros.kill();
        let _ = zeros.wait();
        let extra = oversized_check(&obs);
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Code(77),
            extra,
            Found::Rows,
            None,
        );
    }
}

fn oversized_file(ctx: &mut Ctx<'_>, target: &Target) {
    let f = fault("oversized-2GB-file");
    let bench = Bench::new(target);
    let config = bench.config("limit", "MaxMessageSize = 10485760");
    let path = bench.dir.path().join("2GB");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    for mailer in ctx.mailers(1) {
        let d = ctx.delivery(mailer, 100);
        let file = std::fs::File::open(&path).unwrap();
        let report = bench.dir.path().join("rss");
        let command = measured(&d.command(&config, false), &report);
        let mut obs = run_plain(command, Input::Given(Stdio::from(file)));
        obs.maxrss_kb = peak_rss_kb(&report);
        let extra = oversized_check(&obs);
        ctx.matrix.judge(
            f,
            target,
            &bench,
            &d,
            &obs,
            Want::Code(77),
            extra,
            Found::Rows,
            None,
        );
    }
}

// ------------------------------------------------------------------------------- matrix ---

#[test]
#[ignore = "the fault matrix: scripts/fault-matrix.sh [--ci|--full]"]
fn fault_matrix() {
    let Some(mode) = switch("VIRT_MAIL_FAULT_MATRIX") else {
        eprintln!("skipped: set VIRT_MAIL_FAULT_MATRIX=ci|full (scripts/fault-matrix.sh)");
        return;
    };
    // Orphans (stdin-abandoned) come back to us, so their status can be read.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let targets = targets();
    let mut matrix = Matrix {
        targets: targets.iter().map(|t| t.name).collect(),
        cells: BTreeMap::new(),
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let started = Instant::now();
    {
        let mut ctx = Ctx {
            matrix: &mut matrix,
            rng: Rng::from_env(),
            mode,
            serial: 0,
            turn: 0,
        };
        for fault in FAULTS {
            if !selected("VIRT_MAIL_FAULT_ONLY", fault.name) {
                continue;
            }
            for target in &targets {
                if !(fault.applies)(target) {
                    continue;
                }
                let t0 = Instant::now();
                let problems = ctx.matrix.problems.len();
                (fault.run)(&mut ctx, target);
                println!(
                    "{:<28} {:<14} {:>6.1} s {}",
                    fault.name,
                    target.name,
                    t0.elapsed().as_secs_f64(),
                    if ctx.matrix.problems.len() > problems {
                        "PROBLEM"
                    } else {
                        "ok"
                    }
                );
            }
        }
    }
    println!("{}", matrix.print());
    println!("\nFaults:\n");
    for f in FAULTS {
        println!("- {}: {}", f.name, f.what);
    }
    for n in &matrix.notes {
        println!("note: {n}");
    }
    let (rss, secs) = *OVERSIZED.lock().unwrap();
    if rss > 0 {
        println!(
            "oversized input: refused with 77 in at most {secs:.2} s, peak RSS at most {} KiB",
            rss
        );
    }
    let restarts = VIRTUOSO_RESTARTS.load(std::sync::atomic::Ordering::Relaxed);
    if restarts > 0 {
        println!(
            "note: Virtuoso restarted {restarts} time(s) to clear a lock left by a killed client"
        );
    }
    let torn: u32 = matrix.cells.values().map(|c| c.torn).sum();
    if torn > 0 {
        println!(
            "note: {torn} truncated copy(ies) replayed by Virtuoso after a crash in its COMMIT \
             (its defect; each retry stored a complete copy beside it: docs/RELIABILITY.md)"
        );
    }
    let bad: Vec<_> = matrix.cells.values().filter(|c| c.bad()).collect();
    println!(
        "\n{} runs in {:.0} s, {} problem(s), {} cell(s) with a problem",
        matrix.cells.values().map(|c| c.runs).sum::<u32>(),
        started.elapsed().as_secs_f64(),
        matrix.problems.len(),
        bad.len()
    );
    for p in &matrix.problems {
        println!("PROBLEM: {p}");
    }
    let covered: Vec<&str> = MAILERS
        .iter()
        .enumerate()
        .filter(|(mi, _)| matrix.cells.keys().any(|k| k.2 == *mi))
        .map(|(_, m)| *m)
        .collect();
    let subset = ["VIRT_MAIL_FAULT_ONLY", "VIRT_MAIL_FAULT_TARGETS"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()));
    assert!(
        subset || covered.len() == MAILERS.len(),
        "mailers covered: {covered:?}"
    );
    assert!(
        matrix.problems.is_empty(),
        "{} problem(s), see above",
        matrix.problems.len()
    );
}

// -------------------------------------------------------------------------- concurrency ---

/// `VIRT_MAIL_CONCURRENCY`: `ci` (200 deliveries, 8 pipes), `full` (1000 with 2, 8 and 32),
/// or `N:P,P,…`.
fn concurrency_plan() -> Option<(usize, Vec<usize>, bool)> {
    let plan = std::env::var("VIRT_MAIL_CONCURRENCY").ok()?;
    Some(match plan.as_str() {
        "ci" => (200, vec![8], false),
        "full" => (1000, vec![2, 8, 32], true),
        other => {
            let (n, p) = other.split_once(':')?;
            (
                n.parse().ok()?,
                p.split(',').filter_map(|x| x.parse().ok()).collect(),
                true,
            )
        }
    })
}

struct Parallel {
    target: &'static str,
    pipes: usize,
    deliveries: usize,
    ok: usize,
    errors: usize,
    rows: usize,
    missing: usize,
    dup: usize,
    partial: usize,
    seconds: f64,
    first_error: String,
}

fn concurrency_body(i: usize) -> Vec<u8> {
    let mut body = format!("Subject: parallel {i}\r\n\r\n").into_bytes();
    body.extend((0..1024).map(|k| ((i * 31 + k * 7) % 251) as u8));
    body
}

fn parallel_deliveries(target: &Target, n: usize, pipes: usize) -> Parallel {
    let bench = Bench::new(target);
    let config = bench.config("parallel", "");
    let started = Instant::now();
    let results: Vec<(usize, Option<i32>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..pipes)
            .map(|w| {
                let config = config.clone();
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in (w..n).step_by(pipes) {
                        let mut run = Run::new();
                        run.arg("-c")
                            .arg(&config)
                            .args(["-l", "alice", "-s", &format!("p{i}@parallel.example")])
                            .stdin(concurrency_body(i));
                        let o = run.output();
                        out.push((i, o.status.code(), text(&o.stderr)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| r.1 == Some(0)).count();
    let first_error = results
        .iter()
        .find(|r| r.1 != Some(0))
        .map(|r| format!("#{}: {:?} {}", r.0, r.1, r.2.trim()))
        .unwrap_or_default();
    let rows = target
        .store
        .query(&format!("SELECT sender, body FROM {}", bench.mail));
    let mut seen = vec![0usize; n];
    let mut partial = 0;
    for row in &rows {
        let sender = text(row[0].as_deref().unwrap_or_default());
        let i: usize = sender
            .strip_prefix('p')
            .and_then(|s| s.split('@').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        if i < n {
            seen[i] += 1;
            if row[1].as_deref() != Some(&concurrency_body(i)[..]) {
                partial += 1;
            }
        } else {
            partial += 1;
        }
    }
    Parallel {
        target: target.name,
        pipes,
        deliveries: n,
        ok,
        errors: n - ok,
        rows: rows.len(),
        missing: seen.iter().filter(|&&c| c == 0).count(),
        dup: seen.iter().filter(|&&c| c > 1).count(),
        partial,
        seconds,
        first_error,
    }
}

#[test]
#[ignore = "concurrency runs: scripts/fault-matrix.sh (VIRT_MAIL_CONCURRENCY=ci|full|N:P,…)"]
fn concurrency() {
    let Some((n, pipes, all_targets)) = concurrency_plan() else {
        eprintln!("skipped: set VIRT_MAIL_CONCURRENCY=ci|full|N:P,P (scripts/fault-matrix.sh)");
        return;
    };
    let mut results = Vec::new();
    for target in targets() {
        // SQLite file, PostgreSQL, MariaDB and Virtuoso at least; the other ODBC ways in full.
        let wanted = matches!(
            target.name,
            "sqlite" | "postgres" | "mariadb" | "virtuoso" | "odbc-virtuoso"
        );
        if !wanted && !all_targets {
            continue;
        }
        for &p in &pipes {
            let r = parallel_deliveries(&target, n, p);
            println!(
                "{:<14} {:>3} pipes: {}/{} ok, {} rows in {:.1} s {}",
                r.target, r.pipes, r.ok, r.deliveries, r.rows, r.seconds, r.first_error
            );
            results.push(r);
        }
    }
    println!("\nConcurrency: deliveries to one user through parallel pipes\n");
    println!(
        "| backend        | pipes | deliveries | exit 0 | errors | rows | missing | dup | partial | seconds | per s |"
    );
    println!(
        "|----------------|-------|------------|--------|--------|------|---------|-----|---------|---------|-------|"
    );
    let mut bad = Vec::new();
    for r in &results {
        println!(
            "| {:<14} | {:>5} | {:>10} | {:>6} | {:>6} | {:>4} | {:>7} | {:>3} | {:>7} | {:>7.1} | {:>5.0} |",
            r.target,
            r.pipes,
            r.deliveries,
            r.ok,
            r.errors,
            r.rows,
            r.missing,
            r.dup,
            r.partial,
            r.seconds,
            r.deliveries as f64 / r.seconds
        );
        if r.errors + r.missing + r.dup + r.partial > 0 || r.rows != r.deliveries {
            bad.push(format!("{} x{}: {}", r.target, r.pipes, r.first_error));
        }
    }
    assert!(bad.is_empty(), "problems: {bad:#?}");
}

// --------------------------------------------------------------------------- properties ---

/// SPEC §8: the password never appears. Generated DSNs in every form the backends read,
/// with passwords drawn from an alphabet of everything that is special somewhere (ODBC
/// braces and `;`, URL delimiters, `%`, `://`, `}}`, spaces, non-ASCII).
#[test]
fn mask_dsn_never_shows_a_password() {
    use virt_mail::report::{MASK, mask_dsn};
    let alphabet: Vec<&str> = vec![
        "a", "Z", "0", "9", ";", "{", "}", "}}", "=", "@", ":", "/", "?", "#", "&", "%", "%4",
        "%41", " ", "'", "\"", "\\", "://", "PWD=", "é", "€", "🙂", "-", "_", ".", "~", "+", "!",
        "$",
    ];
    let mut rng = Rng(0x5eed_1234_9876_abcd);
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let mut checked = 0;
    for _ in 0..20_000 {
        let len = 1 + rng.below(6) as usize;
        let password: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        if password.contains(['*', '\0']) {
            continue;
        }
        let needs_braces = password.contains([';', '{', '}'])
            || password.starts_with(' ')
            || password.ends_with(' ');
        let odbc = if needs_braces {
            format!("{{{}}}", password.replace('}', "}}"))
        } else {
            password.clone()
        };
        let key = ["PWD", "pwd", "Password", " PASSWORD "][rng.below(4) as usize];
        let e = encode(&password);
        let dsns = [
            format!("DSN=Virtuoso;HOST=localhost:1111;UID=dba;{key}={odbc}"),
            format!("DRIVER={{/usr/lib/x.so}};{key}={odbc};UID=u;URL=http://h/x"),
            format!("{key}={{{}}}", password.replace('}', "}}")),
            format!("postgres://virt:{e}@127.0.0.1:5432/mail?sslmode=disable"),
            format!("postgresql://u@h/mail?password={e}&application_name=x"),
            format!("mysql://virt:{e}@127.0.0.1:3306/mail"),
            format!("mariadb://virt@127.0.0.1/mail?password={e}"),
        ];
        for dsn in &dsns {
            let masked = mask_dsn(dsn);
            let visible = masked.replace(MASK, "\0");
            assert!(
                !visible.contains(password.as_str()),
                "{password:?} visible in {masked:?} (from {dsn:?})"
            );
            checked += 1;
        }
    }
    assert!(checked > 100_000);
}

// ------------------------------------------------------------- a connection cut at commit ---

/// Where a relay cuts the connection (both directions): just after passing on the server's
/// `AfterServer` bytes, or instead of passing on the client's `BeforeClient` bytes.
#[derive(Clone, Copy)]
enum Cut {
    AfterServer(&'static [u8]),
    BeforeClient(&'static [u8]),
}

/// A TCP relay on loopback to `target` that cuts every connection at `cut`; its port.
fn cutting_relay(target: u16, cut: Cut) -> u16 {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let pump =
                |mut from: TcpStream, mut to: TcpStream, marker: Option<(&'static [u8], bool)>| {
                    let (a, b) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 1 << 16];
                        let mut tail: Vec<u8> = Vec::new();
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mut window = std::mem::take(&mut tail);
                            window.extend_from_slice(&buf[..n]);
                            let hit = marker
                                .is_some_and(|(m, _)| window.windows(m.len()).any(|w| w == m));
                            let forward = !(hit && marker.is_some_and(|(_, before)| before));
                            if hit && forward {
                                // Cut the way back first: the client answers these bytes
                                // at once (a COMMIT), and that answer must not get through
                                // before the cut, or the test races the relay.
                                let _ = a.shutdown(Shutdown::Both);
                            }
                            if forward && to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            if hit {
                                let _ = a.shutdown(Shutdown::Both);
                                let _ = b.shutdown(Shutdown::Both);
                                break;
                            }
                            let keep = window.len().min(64);
                            tail = window[window.len() - keep..].to_vec();
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
            let (to_server, from_server) = match cut {
                Cut::AfterServer(m) => (None, Some((m, false))),
                Cut::BeforeClient(m) => (Some((m, true)), None),
            };
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                to_server,
            );
            pump(server, client, from_server);
        }
    });
    port
}

/// The connection dies between the Deliver statement and its COMMIT (the relay cuts it):
/// the mail is deferred and nothing is stored, and the MTA's retry stores it once. Before
/// the fix in `backend/odbc/mod.rs`, psqlODBC answered the COMMIT with success without sending it —
/// exit 0, no row: a lost message.
fn cut_at_commit(
    name: &'static str,
    store: Box<dyn Store>,
    db: Db,
    odbc: bool,
    port: u16,
    cut: Cut,
) {
    let dsn = store.dsn();
    // The same data source through the relay: an ODBC `Port=` attribute (the last one
    // wins), or the port in a URL (before its path, or at its end).
    let dsn_through = |relay: u16| {
        if odbc {
            format!("{dsn};Port={relay}")
        } else if let Some(head) = dsn.strip_suffix(&format!(":{port}")) {
            format!("{head}:{relay}")
        } else {
            dsn.replace(&format!(":{port}/"), &format!(":{relay}/"))
        }
    };
    let target = Target {
        name,
        store,
        db,
        odbc,
        server: None,
    };
    let bench = Bench::new(&target);
    let relay = cutting_relay(port, cut);
    let cut_config = bench.config_with(
        "cut",
        Some(&dsn_through(relay)),
        &bench.verify(),
        &bench.deliver(),
        "",
    );
    let good = bench.config("good", "");
    let mut rng = Rng(0x00c0_ffee);
    for mailer in MAILERS {
        let mut body = format!("Subject: cut {mailer}\r\n\r\n").into_bytes();
        body.extend(rng.bytes(300_000));
        let d = Delivery {
            mailer,
            local: "alice",
            token: format!("cut.{mailer}@faults.example"),
            body,
        };
        let out = d.run(&cut_config).stdin(d.body.clone()).output();
        assert_eq!(
            out.status.code(),
            Some(status_for(mailer, 75)),
            "{} {mailer}: {}",
            target.name,
            text(&out.stderr)
        );
        assert!(bench.rows(&d.token).is_empty(), "{} {mailer}", target.name);
        d.run(&good)
            .stdin(d.body.clone())
            .expect(status_for(mailer, 0));
        let rows = bench.rows(&d.token);
        assert!(
            rows.len() == 1 && rows[0] == d.stored(),
            "{} {mailer}: {} row(s) after the retry, sizes {:?} (want one of {} bytes)",
            target.name,
            rows.len(),
            rows.iter().map(Vec::len).collect::<Vec<_>>(),
            d.stored().len()
        );
    }
}

fn env_port(var: &str) -> u16 {
    std::env::var(var).unwrap().parse().unwrap()
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_connection_cut_before_commit_defers() {
    if let Some(s) = stores::require("postgres", stores::postgres::Postgres::from_env()) {
        let cut = Cut::AfterServer(b"INSERT 0 1");
        cut_at_commit(
            "postgres",
            Box::new(s),
            Db::Postgres,
            false,
            env_port("VIRT_MAIL_TEST_PG_PORT"),
            cut,
        );
    }
}

#[cfg(feature = "odbc")]
#[test]
fn odbc_postgres_connection_cut_before_commit_defers() {
    if let Some(s) = stores::require("odbc postgres", stores::odbc::Odbc::postgres_from_env()) {
        let cut = Cut::AfterServer(b"INSERT 0 1");
        cut_at_commit(
            "odbc-postgres",
            Box::new(s),
            Db::Postgres,
            true,
            env_port("VIRT_MAIL_TEST_PG_PORT"),
            cut,
        );
    }
}

/// Virtuoso's own protocol: the relay cuts the connection as the COMMIT (`TRXC`) request
/// goes out, so the server never sees it and rolls the Deliver back.
#[cfg(all(feature = "odbc", feature = "virtuoso"))]
#[test]
fn virtuoso_connection_cut_at_commit_defers() {
    if let Some(s) = stores::require("virtuoso", stores::virtuoso::Native::from_env()) {
        let host = std::env::var("VIRT_MAIL_TEST_VIRTUOSO_HOST").unwrap();
        let port = host.rsplit_once(':').unwrap().1.parse().unwrap();
        cut_at_commit(
            "virtuoso",
            Box::new(s),
            Db::Virtuoso,
            false,
            port,
            Cut::BeforeClient(b"TRXC"),
        );
    }
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_connection_cut_at_commit_defers() {
    if let Some(s) = stores::require("mariadb", stores::mysql::Mysql::from_env()) {
        let cut = Cut::BeforeClient(b"COMMIT");
        cut_at_commit(
            "mariadb",
            Box::new(s),
            Db::Mariadb,
            false,
            env_port("VIRT_MAIL_TEST_MYSQL_PORT"),
            cut,
        );
    }
}

#[cfg(feature = "odbc")]
#[test]
fn odbc_mariadb_connection_cut_at_commit_defers() {
    if let Some(s) = stores::require("odbc mariadb", stores::odbc::Odbc::mariadb_from_env()) {
        let cut = Cut::BeforeClient(b"COMMIT");
        cut_at_commit(
            "odbc-mariadb",
            Box::new(s),
            Db::Mariadb,
            true,
            env_port("VIRT_MAIL_TEST_MYSQL_PORT"),
            cut,
        );
    }
}
