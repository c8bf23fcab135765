//! Test harness: each test gets its own directory with a SQLite mail store and a config,
//! runs the real binary with a controlled environment, and reads the rows back.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The binary under test: the one cargo built, or `VIRT_MAIL_TEST_BIN` (scripts/test.sh runs
/// the suite once more against the static release build that scripts/build-release.sh makes).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("VIRT_MAIL_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_virt_mail").to_string())
    })
}

/// The databases the binary under test reaches, from its `--version` (the suite runs
/// against builds with different cargo features).
pub fn bin_databases() -> Vec<String> {
    let out = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .expect("virt_mail --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("databases: "))
        .unwrap_or_else(|| panic!("no databases line in --version: {text:?}"));
    line.split_whitespace().map(str::to_string).collect()
}

/// Every `-m` value, in the manual's order.
pub const MAILERS: [&str; 5] = ["sendmail", "exim", "postfix", "qmail", "courier"];

/// The exit status each MTA profile must see for an internal sysexits result (SPEC §7),
/// written out again here, independently of `src/exit.rs`, as the manual page shows it.
pub fn status_for(mailer: &str, internal: i32) -> i32 {
    let transient = matches!(internal, 71 | 74 | 75);
    let known = internal == 0 || (64..=78).contains(&internal);
    match mailer {
        "qmail" if internal == 0 => 99,
        "qmail" if transient => 111,
        "qmail" => 100,
        _ if transient => 75,
        _ if known => internal,
        _ => 70,
    }
}

pub const DTLINE: &str = "Delivered-To: alice@example.com\n";
pub const RPLINE: &str = "Return-Path: <bob@example.org>\n";

pub const SCHEMA: &str = "
    CREATE TABLE users (name TEXT PRIMARY KEY, folder TEXT NOT NULL);
    INSERT INTO users VALUES ('alice', 'Inbox'), ('o''brien', 'Inbox'), ('info', 'Work');
    CREATE TABLE mail (
        id INTEGER PRIMARY KEY,
        recipient TEXT NOT NULL,
        folder TEXT,
        sender TEXT,
        body BLOB NOT NULL
    );
";

pub const OPTIONS: &str = "
Verify = SELECT name, folder FROM users WHERE name = '$local'
Deliver = INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)
";

pub const BOUNCE: &str = "
[Bounce]
UserUnknown = No mailbox for $local@$domain here.
    Please check the address.
DatabaseError = The mail store is unavailable.
InternalError = Internal trouble.
TooLong = Too long for $local.
";

/// One stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub recipient: String,
    pub folder: Option<String>,
    pub sender: Option<String>,
    pub body: Vec<u8>,
}

/// A private directory with a mail store and a configuration file.
pub struct Setup {
    pub dir: TempDir,
    pub db: PathBuf,
    pub config: PathBuf,
}

impl Setup {
    /// The standard schema and a config with `options` in `[Options]` after the DSN, and
    /// `rest` (other sections) after it.
    pub fn new(options: &str, rest: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mail.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        drop(conn);
        let config = dir.path().join("virt_mail.ini");
        let setup = Setup { dir, db, config };
        setup.configure(options, rest);
        setup
    }

    /// Rewrites the config: this store's DSN, then `options`, then other sections.
    pub fn configure(&self, options: &str, rest: &str) {
        self.write_config(&format!(
            "[Options]\nDSN = sqlite:{}\n{options}\n{rest}\n",
            self.db.display()
        ));
    }

    /// The standard Verify/Deliver and bounce texts, plus `extra` options.
    pub fn standard(extra: &str) -> Setup {
        Setup::new(&format!("{OPTIONS}\n{extra}"), BOUNCE)
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A run of the binary with `-c <config>` and a clean envelope environment.
    pub fn run(&self) -> Run {
        let mut run = Run::new();
        run.arg("-c").arg(&self.config);
        run
    }

    /// Delivers `body` to alice under `strace` (`Run::straced`), the trace kept in the
    /// test directory's file `log`; returns the trace.
    pub fn delivery_straced(&self, body: impl Into<Vec<u8>>, syscalls: &str, log: &str) -> String {
        let mut run = self.run();
        run.args(["-l", "alice"]).stdin(body);
        run.straced(syscalls, &self.path(log))
    }

    pub fn mails(&self) -> Vec<Mail> {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let mut stmt = conn
            .prepare("SELECT recipient, folder, sender, body FROM mail ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok(Mail {
                recipient: r.get(0)?,
                folder: r.get(1)?,
                sender: r.get(2)?,
                body: r.get(3)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    pub fn count(&self) -> usize {
        self.mails().len()
    }

    /// The tables of the standard schema are still all there with their rows.
    pub fn assert_tables_intact(&self) {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 3, "users table altered");
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2, "tables added or dropped");
    }
}

/// A command line and environment for one run.
pub struct Run {
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    stdin: Vec<u8>,
    stdin_file: Option<PathBuf>,
}

impl Run {
    pub fn new() -> Run {
        Run {
            args: Vec::new(),
            env: Vec::new(),
            stdin: b"Subject: test\n\nhello\n".to_vec(),
            stdin_file: None,
        }
    }

    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Run {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Run
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(&mut self, k: &str, v: impl Into<OsString>) -> &mut Run {
        self.env.push((k.to_string(), v.into()));
        self
    }

    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Run {
        self.stdin = bytes.into();
        self
    }

    /// Standard input is this regular file instead of a pipe.
    pub fn stdin_file(&mut self, path: &Path) -> &mut Run {
        self.stdin_file = Some(path.to_path_buf());
        self
    }

    /// `-m mailer`, with the qmail-local environment lines in the qmail family.
    pub fn mailer(&mut self, mailer: &str) -> &mut Run {
        self.arg("-m").arg(mailer);
        if mailer == "qmail" || mailer == "courier" {
            self.env("DTLINE", DTLINE).env("RPLINE", RPLINE);
        }
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(&self.args);
        for var in [
            "LOCAL",
            "HOST",
            "SENDER",
            "RECIPIENT",
            "DTLINE",
            "RPLINE",
            "UFLINE",
            "EXT",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn output(&self) -> Output {
        self.feed(self.command())
    }

    /// Runs `command` with this run's input on its stdin, to the end.
    fn feed(&self, mut command: Command) -> Output {
        if let Some(file) = &self.stdin_file {
            // A regular file, as qmail-local hands the message over.
            let file = std::fs::File::open(file).unwrap();
            return command.stdin(file).output().unwrap();
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = self.stdin.clone();
        // Written on a thread: the binary may stop reading early (too long, unknown user).
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs under GNU time, asserts the exit status, and returns virt_mail's peak RSS in
    /// KiB.
    pub fn peak_rss_kb(&self, status: i32) -> i64 {
        let report = tempfile::NamedTempFile::new().unwrap();
        let out = self.feed(measured(&self.command(), report.path()));
        self.check(&out, status);
        let kb = peak_rss_kb(report.path());
        assert_ne!(kb, i64::MAX, "GNU time wrote no peak RSS");
        kb
    }

    /// Runs `prefix… virt_mail args…` (a wrapper that execs virt_mail last), same
    /// environment and input.
    pub fn wrapped_output(&self, prefix: &[&str]) -> Output {
        self.feed(wrapped(prefix, &self.command()))
    }

    /// Runs under `strace -f -y -e trace=SYSCALLS`, asserts success, and returns the trace
    /// (written to `log`).
    pub fn straced(&self, syscalls: &str, log: &Path) -> String {
        let trace = format!("trace={syscalls}");
        let prefix = [
            "strace",
            "-f",
            "-y",
            "-e",
            &trace,
            "-o",
            log.to_str().unwrap(),
        ];
        let out = self.wrapped_output(&prefix);
        self.check(&out, 0);
        std::fs::read_to_string(log).unwrap()
    }

    /// Runs and asserts the exit status; returns the output for further checks.
    pub fn expect(&self, status: i32) -> Output {
        let out = self.output();
        self.check(&out, status);
        out
    }

    /// Asserts the exit status, showing the output if it is not the one expected.
    pub fn check(&self, out: &Output, status: i32) {
        assert_eq!(
            out.status.code(),
            Some(status),
            "args {:?}\nstdout: {}\nstderr: {}",
            self.args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `command` run through `prefix` (setpriv, time …), with the same arguments and environment.
pub fn wrapped(prefix: &[&str], command: &Command) -> Command {
    let mut outer = Command::new(prefix[0]);
    outer
        .args(&prefix[1..])
        .arg(command.get_program())
        .args(command.get_args());
    for (k, v) in command.get_envs() {
        match v {
            Some(v) => outer.env(k, v),
            None => outer.env_remove(k),
        };
    }
    outer
}

/// virt_mail under GNU time, which reports the peak RSS of virt_mail alone (a child's own
/// rusage would include the test process it was spawned from).
pub fn measured(command: &Command, report: &Path) -> Command {
    let report = report.display().to_string();
    wrapped(&["/usr/bin/time", "-f", "%M", "-o", &report], command)
}

/// The peak RSS (KiB) GNU time wrote to `report`; `i64::MAX` if it wrote none.
pub fn peak_rss_kb(report: &Path) -> i64 {
    std::fs::read_to_string(report)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(i64::MAX)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `len` bytes that look random (every value, no repeating text to compress), the same
/// each time: the body of the large-message tests.
pub fn pseudo_random(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// The bytes a mailer stores in front of the message.
pub fn prefix(mailer: &str) -> Vec<u8> {
    match mailer {
        "qmail" | "courier" => format!("{DTLINE}{RPLINE}").into_bytes(),
        _ => Vec::new(),
    }
}

pub fn mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether `strace` can be run here; under `CI=true` it must (scripts/servers.sh installs it).
pub fn strace_available() -> bool {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "strace is needed under CI"
    );
    eprintln!("skipping: no strace (apt-get install strace)");
    false
}

/// The positions (from 1, as strace's `when=` counts them) of the fsyncs in an
/// `strace -y -e trace=fsync` log made on descriptors whose path contains `path`.
pub fn fsync_positions(trace: &str, path: &str) -> Vec<usize> {
    trace
        .lines()
        .filter(|l| l.contains("fsync("))
        .enumerate()
        .filter(|(_, l)| l.contains(path))
        .map(|(i, _)| i + 1)
        .collect()
}

/// A wrapper (for `Run::wrapped_output`) under which the fsyncs strace's `when` names fail
/// with EIO.
pub fn failing_fsyncs(when: &str) -> Vec<String> {
    let inject = format!("inject=fsync:error=EIO:when={when}");
    [
        "strace",
        "-f",
        "-e",
        "trace=fsync",
        "-e",
        &inject,
        "-o",
        "/dev/null",
    ]
    .map(String::from)
    .to_vec()
}
