//! Delivery benchmark: `cargo bench --all-features --bench deliver` (or `bench/run.sh`, which
//! installs and starts what it needs first) prints one markdown table and writes a chart.
//!
//! Each row runs a command once per message, the way an MTA runs an MDA: a new process, the
//! message on standard input (a regular file, as qmail gives it; `BENCH_STDIN=pipe` feeds it
//! through a pipe, as Postfix's pipe(8) and exim do), wait for its status. For every row and
//! message size it measures, in the same run:
//! - wall time per delivery, one stream of deliveries after the other (median, p99), and the
//!   CPU time (user + system, from wait4) each used (median): steadier on a busy machine;
//! - throughput (deliveries/s) of that one stream and of two streams side by side ("2 pipes",
//!   as an MTA with two local deliveries in flight), and their ratio;
//! - peak RSS, read by GNU time (`/usr/bin/time -f %M`, the largest of 5 runs).
//!
//! Rows: the floors (`/bin/true`, `cat >/dev/null`, `dd conv=fsync` = the durable-write
//! floor on this disk), virt_mail on SQLite, PostgreSQL and MariaDB over their unix sockets
//! (`BENCH_TCP=1` adds TCP), virt_mail over ODBC to Virtuoso and the original
//! `/usr/bin/virt_mail` (Debian virtuoso-opensource-7-bin) with the same config file into
//! the same table of the same server, and the MDAs an administrator would otherwise pick,
//! each delivering to a Maildir: procmail, maildrop and dovecot-lda. Server rows need
//! `--all-features` and the environment of `scripts/servers.sh start` (source its env.sh);
//! a row whose program or server is missing is left out with a note.
//!
//! Environment: `BENCH_RUNS` (300: deliveries per row for messages up to 64 KiB; a third of
//! that up to 4 MiB, a tenth above), `BENCH_SIZES` (`2048,65536,1048576,20971520`),
//! `BENCH_ONLY` (comma-separated substrings of row names), `BENCH_SKIP` (same, to leave
//! out), `BENCH_PARALLEL=0` (skip the two-stream runs), `BENCH_STDIN=pipe`, `BENCH_DIR`
//! (`/var/tmp`: where the SQLite database, the Maildirs and the messages go), `BENCH_BIN`
//! (the virt_mail to measure; default: the one cargo built), `BENCH_BIN_ODBC` (the one for
//! the ODBC row; default: the one cargo built), `BENCH_EXTRA`
//! (`label=/path/to/virt_mail,...`: other builds to compare, e.g. scratch builds, each on
//! the rows of ours named by `BENCH_EXTRA_FOR`, default `sqlite`, or by a `:odbc+postgres`
//! suffix; the chart leaves them out unless `BENCH_SVG_EXTRA=1`), `BENCH_ORIGINAL`
//! (`/usr/bin/virt_mail`), `BENCH_SVG` (`docs/perf.svg`; empty: none), `BENCH_TCP=1`,
//! `BENCH_STRICT=1` (exit 1 unless every row `BENCH_ONLY` names was measured at every size).

mod svg;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const BUILT_BIN: &str = env!("CARGO_BIN_EXE_virt_mail");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// What a row is, for the chart's colours and the acceptance checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Floor,
    Ours,
    Original,
    Mda,
}

/// One command to measure.
#[derive(Clone)]
struct Spec {
    name: String,
    kind: Kind,
    argv: Vec<String>,
    /// Run as this uid/gid (dovecot-lda will not deliver as root without an auth service).
    user: Option<(u32, u32)>,
    env: Vec<(String, String)>,
    /// Run after each (row, size): empties the mailbox so the disk does not fill up.
    cleanup: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Spec {
    fn new(name: &str, kind: Kind, argv: &[&str]) -> Spec {
        Spec {
            name: name.to_string(),
            kind,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            user: None,
            env: Vec::new(),
            cleanup: None,
        }
    }

    fn cleanup(mut self, f: impl Fn() + Send + Sync + 'static) -> Spec {
        self.cleanup = Some(Arc::new(f));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        self.prepare(&mut cmd);
        cmd
    }

    fn prepare(&self, cmd: &mut Command) {
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid); // std drops root's supplementary groups too
        }
    }
}

/// One measured (row, size).
pub struct Row {
    pub name: String,
    pub kind: Kind,
    pub size: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    /// Median CPU time (user + system) per delivery: steadier than wall time on a busy
    /// machine, and blind to waiting (fsync, the server).
    pub cpu_ms: f64,
    pub rss_kib: i64,
    /// Deliveries per second, one stream.
    pub tput1: f64,
    /// Deliveries per second, two streams side by side (0: not measured).
    pub tput2: f64,
    /// 1-minute load average when the row finished.
    pub load: f64,
    /// Share of the machine's CPU time the VM's host took while the row ran (steal), in %:
    /// above a few per cent, times (and CPU times) are not comparable with a quiet run.
    pub steal: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StdinMode {
    File,
    Pipe,
}

/// Runs `spec` `runs` times in `streams` parallel streams with `input` on stdin. Returns
/// every delivery's wall time (ms, sorted) and the wall time of the whole batch (s), or the
/// first failure (the batch stops there).
fn measure(
    spec: &Spec,
    input: &Path,
    data: &Arc<Vec<u8>>,
    runs: usize,
    streams: usize,
    mode: StdinMode,
) -> Result<(Vec<f64>, Vec<f64>, f64), String> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<Result<Vec<(f64, f64)>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..streams)
            .map(|_| {
                scope.spawn(|| {
                    let mut times = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < runs {
                        match deliver_once(spec, input, data, mode) {
                            Ok(t) => times.push(t),
                            Err(e) => {
                                next.store(runs, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(times)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let (mut times, mut cpu) = (Vec::new(), Vec::new());
    for r in results {
        for (t, c) in r? {
            times.push(t);
            cpu.push(c);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    cpu.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((times, cpu, wall))
}

/// One delivery: its wall time (spawn to reaped exit) and the CPU time it used (user +
/// system, from wait4), both in ms, or why it failed.
fn deliver_once(
    spec: &Spec,
    input: &Path,
    data: &Arc<Vec<u8>>,
    mode: StdinMode,
) -> Result<(f64, f64), String> {
    let mut cmd = spec.command();
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    match mode {
        StdinMode::File => {
            cmd.stdin(File::open(input).unwrap());
        }
        StdinMode::Pipe => {
            cmd.stdin(Stdio::piped());
        }
    }
    let started = Instant::now();
    // Reaped by `wait4` below (for its rusage), not by std.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", spec.argv[0]));
    if mode == StdinMode::Pipe {
        let mut stdin = child.stdin.take().unwrap();
        // A command that does not read (e.g. /bin/true) closes the pipe: EPIPE is fine.
        let _ = stdin.write_all(data);
    }
    let (status, cpu) = wait4(child.id());
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if status.success() {
        Ok((ms, cpu))
    } else {
        Err(status.to_string())
    }
}

/// Reaps `pid` with wait4: its exit status and the CPU time it used, in ms.
fn wait4(pid: u32) -> (std::process::ExitStatus, f64) {
    use nix::libc;
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; the child is ours and reaped exactly once here
    // (std's Child is never waited on afterwards).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "wait4: {e}");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    (
        std::process::ExitStatus::from_raw(status),
        tv(usage.ru_utime) + tv(usage.ru_stime),
    )
}

/// Peak RSS in KiB over a few runs, read by GNU time: a child spawned from this (larger)
/// process would report our own RSS as its floor.
fn peak_rss(spec: &Spec, input: &Path) -> i64 {
    (0..5)
        .map(|_| {
            let mut cmd = Command::new("/usr/bin/time");
            cmd.args(["-f", "%M"]).args(&spec.argv);
            spec.prepare(&mut cmd);
            let out = cmd
                .stdin(File::open(input).unwrap())
                .stdout(Stdio::null())
                .output()
                .expect("/usr/bin/time (Debian package `time`)");
            let text = String::from_utf8_lossy(&out.stderr);
            text.lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_or(name: &str, default: &str) -> String {
    env(name).unwrap_or_else(|| default.to_string())
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Our command line for one config file (sendmail mode, as exim and Postfix run it).
fn ours(bin: &str, config: &str) -> Vec<String> {
    [
        bin,
        "-c",
        config,
        "-l",
        "alice",
        "-h",
        "example.com",
        "-s",
        "bob@example.org",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn ours_spec(name: &str, kind: Kind, bin: &str, config: &str) -> Spec {
    let argv = ours(bin, config);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    Spec::new(name, kind, &argv)
}

// ------------------------------------------------------------------------------ SQLite ---

/// A SQLite store and config in `dir`, as the quick start sets one up.
fn sqlite_setup(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("mail.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(include_str!("../examples/sqlite/schema.sql"))
        .unwrap();
    conn.execute_batch("INSERT INTO mailbox (local, domain) VALUES ('alice', 'example.com')")
        .unwrap();
    drop(conn);
    let config = dir.join("virt_mail.ini");
    let text =
        std::fs::read_to_string(Path::new(MANIFEST_DIR).join("examples/sqlite/virt_mail.ini"))
            .unwrap()
            .replace(
                "sqlite:/var/mail/virt_mail.db",
                &format!("sqlite:{}", db.display()),
            );
    write_private(&config, &text);
    (db, config)
}

/// Empties the SQLite mailbox (and its WAL), outside the timed runs. VACUUM gives the file
/// back, so that every row grows the database as a live mail store does, rather than the
/// first row growing it and the next ones reusing its free pages.
fn sqlite_cleanup(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.execute_batch("DELETE FROM message; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
}

// ------------------------------------------------------------------------------ servers ---

/// The statements every server row uses (the bench tables are created fresh per run). They
/// suit the original too, which pastes `$local`, `$sender` and `$1` into the SQL text.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(dead_code)
)]
const SERVER_OPTIONS: &str = "Verify = SELECT id FROM bench_mailbox WHERE local = '$local'
Deliver = INSERT INTO bench_message (mailbox_id, sender, body) VALUES ($1, '$sender', $message)
";

#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(dead_code)
)]
fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(format!("{name}.ini"));
    write_private(&path, text);
    path.display().to_string()
}

#[cfg(feature = "postgres")]
fn postgres_rows(dir: &Path, bin: &str, specs: &mut Vec<Spec>, notes: &mut Vec<String>) {
    let (Some(url), Some(socket), Some(port)) = (
        env("VIRT_MAIL_TEST_PG_URL"),
        env("VIRT_MAIL_TEST_PG_SOCKET_DIR"),
        env("VIRT_MAIL_TEST_PG_PORT"),
    ) else {
        notes.push("PostgreSQL: no server environment (scripts/servers.sh start)".into());
        return;
    };
    let mut client = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => return notes.push(format!("PostgreSQL: {e}")),
    };
    // The body column as examples/postgres/schema.sql makes it (lz4: see there).
    client
        .batch_execute(
            "DROP TABLE IF EXISTS bench_message, bench_mailbox;
             CREATE TABLE bench_mailbox (id SERIAL PRIMARY KEY, local TEXT NOT NULL UNIQUE);
             CREATE TABLE bench_message (id BIGSERIAL PRIMARY KEY, mailbox_id INT NOT NULL,
                 sender TEXT NOT NULL, body BYTEA COMPRESSION lz4 NOT NULL);
             INSERT INTO bench_mailbox (local) VALUES ('alice');",
        )
        .unwrap();
    let mut dsns = Vec::new();
    // Peer authentication over the socket, as a delivery user would log in: no password
    // hashing (SCRAM) on either side.
    if let Some(peer) = env("VIRT_MAIL_TEST_PG_PEER_URL") {
        dsns.push(("postgres socket", peer));
    }
    // The same server through PgBouncer in session mode (scripts/servers.sh): no new server
    // process per delivery, as README's "PostgreSQL through PgBouncer" sets it up.
    match env("VIRT_MAIL_TEST_PGBOUNCER_URL") {
        Some(bouncer) => dsns.push(("postgres pgbouncer socket", bouncer)),
        None => notes.push("PgBouncer: no server environment (scripts/servers.sh start)".into()),
    }
    dsns.push((
        "postgres socket scram",
        format!("postgresql://virt:virtpw@/mail?host={socket}&port={port}"),
    ));
    if env("BENCH_TCP").is_some() {
        dsns.push(("postgres tcp scram", url.clone()));
    }
    for (name, dsn) in dsns {
        let config = write_config(
            dir,
            &name.replace(' ', "_"),
            &format!("[Options]\nDSN = {dsn}\n{SERVER_OPTIONS}"),
        );
        let url = url.clone();
        specs.push(
            ours_spec(&format!("virt_mail {name}"), Kind::Ours, bin, &config).cleanup(move || {
                if let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) {
                    let _ = c.batch_execute("TRUNCATE bench_message");
                }
            }),
        );
    }
}

#[cfg(not(feature = "postgres"))]
fn postgres_rows(_: &Path, _: &str, _: &mut Vec<Spec>, notes: &mut Vec<String>) {
    notes.push("PostgreSQL: built without the `postgres` feature".into());
}

#[cfg(feature = "mysql")]
fn mysql_rows(dir: &Path, bin: &str, specs: &mut Vec<Spec>, notes: &mut Vec<String>) {
    use mysql::prelude::Queryable;
    let (Some(url), Some(socket)) = (
        env("VIRT_MAIL_TEST_MYSQL_URL"),
        env("VIRT_MAIL_TEST_MYSQL_SOCKET"),
    ) else {
        notes.push("MariaDB: no server environment (scripts/servers.sh start)".into());
        return;
    };
    let connect = {
        let url = url.clone();
        move || -> Result<mysql::Conn, String> {
            let opts = mysql::Opts::from_url(&url).map_err(|e| e.to_string())?;
            mysql::Conn::new(opts).map_err(|e| e.to_string())
        }
    };
    let mut conn = match connect() {
        Ok(c) => c,
        Err(e) => return notes.push(format!("MariaDB: {e}")),
    };
    for sql in [
        "DROP TABLE IF EXISTS bench_message, bench_mailbox",
        "CREATE TABLE bench_mailbox (id INT AUTO_INCREMENT PRIMARY KEY, local VARCHAR(200) NOT NULL UNIQUE)",
        "CREATE TABLE bench_message (id BIGINT AUTO_INCREMENT PRIMARY KEY, mailbox_id INT NOT NULL, sender VARCHAR(700) NOT NULL, body LONGBLOB NOT NULL)",
        "INSERT INTO bench_mailbox (local) VALUES ('alice')",
    ] {
        conn.query_drop(sql).unwrap();
    }
    let mut dsns = vec![(
        "mariadb socket",
        format!("mysql://virt:virtpw@localhost/mail?socket={socket}"),
    )];
    if env("BENCH_TCP").is_some() {
        dsns.push(("mariadb tcp", url.clone()));
    }
    for (name, dsn) in dsns {
        let config = write_config(
            dir,
            &name.replace(' ', "_"),
            &format!("[Options]\nDSN = {dsn}\n{SERVER_OPTIONS}"),
        );
        let connect = connect.clone();
        specs.push(
            ours_spec(&format!("virt_mail {name}"), Kind::Ours, bin, &config).cleanup(move || {
                if let Ok(mut c) = connect() {
                    let _ = c.query_drop("TRUNCATE TABLE bench_message");
                }
            }),
        );
    }
}

#[cfg(not(feature = "mysql"))]
fn mysql_rows(_: &Path, _: &str, _: &mut Vec<Spec>, notes: &mut Vec<String>) {
    notes.push("MariaDB: built without the `mysql` feature".into());
}

/// Runs `sql` on Virtuoso through its ODBC driver; errors of statements starting with
/// `DROP` are ignored.
#[cfg(feature = "odbc")]
fn virtuoso_sql(connect: &str, statements: &[&str]) -> Result<(), String> {
    let env = odbc_api::environment().map_err(|e| e.to_string())?;
    let conn = env
        .connect_with_connection_string(connect, Default::default())
        .map_err(|e| e.to_string())?;
    for sql in statements {
        // Virtuoso's driver reads statement texts up to a NUL, whatever length it is given.
        let text = format!("{sql}\0");
        let result = conn.execute(&text[..sql.len()], (), None).map(|_| ());
        if let Err(e) = result {
            if !sql.starts_with("DROP") {
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}

/// Virtuoso, one server, one table: ours natively and the original with one config file
/// (HOST/PORT/UID/PWD, which both turn into a connection to the Virtuoso server), and ours
/// through the Virtuoso ODBC driver (a `DRIVER=` string, with the `odbc` build).
#[cfg(feature = "odbc")]
fn virtuoso_rows(
    dir: &Path,
    (bin, odbc_bin): (&str, &str),
    specs: &mut Vec<Spec>,
    notes: &mut Vec<String>,
) {
    let (Some(host), Some(driver)) = (
        env("VIRT_MAIL_TEST_VIRTUOSO_HOST"),
        env("VIRT_MAIL_TEST_VIRTUOSO_DRIVER"),
    ) else {
        notes.push("Virtuoso: no server environment (scripts/servers.sh start)".into());
        return;
    };
    let connect = format!("DRIVER={driver};HOST={host};UID=dba;PWD=dba");
    let setup = virtuoso_sql(
        &connect,
        &[
            "DROP TABLE bench_message",
            "DROP TABLE bench_mailbox",
            "CREATE TABLE bench_mailbox (id INTEGER PRIMARY KEY, local VARCHAR(200) NOT NULL)",
            "CREATE TABLE bench_message (id INTEGER IDENTITY PRIMARY KEY, mailbox_id INTEGER NOT NULL, sender VARCHAR(700) NOT NULL, body LONG VARBINARY NOT NULL)",
            "INSERT INTO bench_mailbox (id, local) VALUES (1, 'alice')",
        ],
    );
    if let Err(e) = setup {
        return notes.push(format!("Virtuoso: {e}"));
    }
    let (address, port) = host.rsplit_once(':').unwrap_or((&host, "1111"));
    let config = write_config(
        dir,
        "virtuoso",
        &format!(
            "[Options]\nHOST = {address}\nPORT = {port}\nUID = dba\nPWD = dba\n{SERVER_OPTIONS}"
        ),
    );
    let odbc_config = write_config(
        dir,
        "virtuoso-odbc",
        &format!(
            "[Options]\nDSN = DRIVER={{{driver}}};HOST={host};UID=dba;PWD=dba\n{SERVER_OPTIONS}"
        ),
    );
    let cleanup = move || {
        let _ = virtuoso_sql(&connect, &["DELETE FROM bench_message"]);
    };
    let cleanup = Arc::new(cleanup);
    let c = cleanup.clone();
    specs.push(ours_spec("virt_mail virtuoso", Kind::Ours, bin, &config).cleanup(move || c()));
    let c = cleanup.clone();
    specs.push(
        ours_spec(
            "virt_mail odbc virtuoso",
            Kind::Ours,
            odbc_bin,
            &odbc_config,
        )
        .cleanup(move || c()),
    );
    let original = env_or("BENCH_ORIGINAL", "/usr/bin/virt_mail");
    if Path::new(&original).exists() {
        let c = cleanup.clone();
        specs.push(
            ours_spec(
                "original virt_mail virtuoso",
                Kind::Original,
                &original,
                &config,
            )
            .cleanup(move || c()),
        );
    } else {
        notes.push(format!(
            "original virt_mail: {original} missing (Debian package virtuoso-opensource-7-bin)"
        ));
    }
}

#[cfg(not(feature = "odbc"))]
fn virtuoso_rows(_: &Path, _: (&str, &str), _: &mut Vec<Spec>, notes: &mut Vec<String>) {
    notes.push(
        "Virtuoso and the original: the bench sets Virtuoso up through ODBC (feature `odbc`)"
            .into(),
    );
}

/// `pgbench -C`: PostgreSQL's own cost of a connection (fork of a backend, authentication)
/// per `SELECT 1`, over the same socket with the same peer login, for comparison.
fn pgbench_note(notes: &mut Vec<String>) {
    let (Some(socket), Some(port)) = (
        env("VIRT_MAIL_TEST_PG_SOCKET_DIR"),
        env("VIRT_MAIL_TEST_PG_PORT"),
    ) else {
        return;
    };
    let script = std::env::temp_dir().join(format!("virt_mail-bench-{}.sql", std::process::id()));
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let out = Command::new("pgbench")
        .args(["-n", "-C", "-t", "300", "-h", &socket, "-p", &port, "-f"])
        .arg(&script)
        .arg("mail")
        .output();
    let _ = std::fs::remove_file(&script);
    let Ok(out) = out else {
        return notes.push("pgbench -C: pgbench not installed (postgresql-client)".into());
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let pick = |key: &str| {
        text.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.split('=').nth(1))
            .map(|v| v.trim().to_string())
    };
    match (pick("average connection time"), pick("latency average")) {
        (Some(conn), Some(lat)) => notes.push(format!(
            "pgbench -C over the socket (peer login, `SELECT 1`, 300 connections in one process): average connection time {conn}, latency {lat}"
        )),
        _ => notes.push(format!(
            "pgbench -C: no figures ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

// ------------------------------------------------------------------------------- MDAs ---

fn maildir(path: &Path) {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(path.join(sub)).unwrap();
    }
}

/// Removes the delivered files (new/, tmp/), outside the timed runs.
fn maildir_cleanup(path: &Path) {
    for sub in ["tmp", "new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(path.join(sub)) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).exists().then(|| program.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.exists())
    })
}

/// procmail, maildrop and dovecot-lda, each writing into its own Maildir under `dir`.
fn mda_rows(dir: &Path, specs: &mut Vec<Spec>, notes: &mut Vec<String>) {
    let missing = |notes: &mut Vec<String>, name: &str, package: &str| {
        notes.push(format!("{name}: not installed (Debian package {package})"))
    };
    // procmail: an rcfile with DEFAULT=<maildir>/ (the trailing slash means Maildir).
    if let Some(procmail) = which("procmail") {
        let md = dir.join("procmail");
        maildir(&md);
        let rc = dir.join("procmailrc");
        write_private(
            &rc,
            &format!("LOGFILE=/dev/null\nDEFAULT={}/\n", md.display()),
        );
        let argv = [procmail.to_str().unwrap(), rc.to_str().unwrap()];
        specs.push(Spec::new("procmail", Kind::Mda, &argv).cleanup(move || maildir_cleanup(&md)));
    } else {
        missing(notes, "procmail", "procmail");
    }
    // maildrop: a mailfilter file that delivers `to` the Maildir.
    if let Some(maildrop) = which("maildrop") {
        let md = dir.join("maildrop");
        maildir(&md);
        let filter = dir.join("mailfilter");
        write_private(&filter, &format!("to \"{}/\"\n", md.display()));
        let argv = [maildrop.to_str().unwrap(), filter.to_str().unwrap()];
        specs.push(Spec::new("maildrop", Kind::Mda, &argv).cleanup(move || maildir_cleanup(&md)));
    } else {
        missing(notes, "maildrop", "maildrop");
    }
    // dovecot-lda: its own dovecot.conf and Maildir; no dovecot service runs. As root it
    // wants -d USER and an auth service to look USER up, so it runs as nobody instead.
    let lda = env_or("BENCH_DOVECOT_LDA", "/usr/lib/dovecot/dovecot-lda");
    if Path::new(&lda).exists() {
        let base = dir.join("dovecot");
        let md = base.join("Maildir");
        std::fs::create_dir_all(base.join("run")).unwrap();
        maildir(&md);
        let conf = base.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "protocols =\nbase_dir = {b}/run\nlog_path = {b}/dovecot.log\nssl = no\n\
                 mail_location = maildir:{m}\n",
                b = base.display(),
                m = md.display()
            ),
        )
        .unwrap();
        let (uid, gid) = (65534, 65534);
        let chown = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(&base)
            .status();
        // The bench dir is private (0700): let nobody through to its own directory.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711));
        if chown.is_ok_and(|s| s.success()) {
            let argv = [
                lda.as_str(),
                "-c",
                conf.to_str().unwrap(),
                "-f",
                "bob@example.org",
            ];
            let mut spec = Spec::new("dovecot-lda", Kind::Mda, &argv);
            spec.user = Some((uid, gid));
            spec.env = vec![
                ("HOME".into(), base.display().to_string()),
                ("USER".into(), "nobody".into()),
            ];
            specs.push(spec.cleanup(move || maildir_cleanup(&md)));
        } else {
            notes.push("dovecot-lda: cannot hand its Maildir to nobody (not root?)".into());
        }
    } else {
        missing(notes, "dovecot-lda", "dovecot-core");
    }
}

// ----------------------------------------------------------------------------- inputs ---

/// A message of exactly `size` bytes: headers, a text part, and a base64 attachment of
/// pseudo-random bytes (as large mail mostly is: not compressible, unlike a repeated line,
/// which PostgreSQL's TOAST would shrink to nothing).
fn message(dir: &Path, size: usize) -> (PathBuf, Vec<u8>) {
    let path = dir.join(format!("message-{size}"));
    let mut m = Vec::with_capacity(size);
    m.extend_from_slice(
        b"Return-Path: <bob@example.org>\nFrom: Bob <bob@example.org>\nTo: Alice <alice@example.com>\n\
Subject: benchmark\nDate: Mon, 23 Nov 2026 12:00:00 +0000\nMessage-ID: <bench@example.org>\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
Content-Type: text/plain; charset=utf-8\n\nThe quick brown fox jumps over the lazy dog.\n\n--b\n\
Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n",
    );
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ size as u64;
    let mut col = 0;
    while m.len() < size {
        if col == 76 {
            m.push(b'\n');
            col = 0;
            continue;
        }
        // xorshift64*: deterministic, so every run stores the same bytes.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        m.push(B64[(state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 58) as usize]);
        col += 1;
    }
    m.truncate(size);
    if size > 0 {
        m[size - 1] = b'\n';
    }
    std::fs::write(&path, &m).unwrap();
    (path, m)
}

// ---------------------------------------------------------------------------- machine ---

/// The machine's CPU time stolen by the VM's host, and all its CPU time, in ticks since
/// boot (`/proc/stat`: user nice system idle iowait irq softirq steal).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some((*fields.get(7)?, fields.iter().sum()))
}

/// Steal since `start` (from `cpu_ticks`), in % of the CPU time that passed.
fn steal_since(start: Option<(u64, u64)>) -> f64 {
    match (start, cpu_ticks()) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => (s1 - s0) as f64 * 100.0 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn command_line(argv: &[&str]) -> Option<String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The lines that say which machine, disk and build the figures are from.
fn machine(dir: &Path, bin: &str) -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    // The mount that holds the bench dir: longest mount point that prefixes it.
    let dir_s = dir.display().to_string();
    let mount = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4
                && (dir_s == f[1]
                    || dir_s.starts_with(&format!("{}/", f[1].trim_end_matches('/')))))
            .then(|| {
                (
                    f[1].len(),
                    format!("{} on {} type {} ({})", f[0], f[1], f[2], f[3]),
                )
            })
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, s)| s)
        .unwrap_or_default();
    let rev = command_line(&["git", "-C", MANIFEST_DIR, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "?".into());
    let dirty = command_line(&[
        "git",
        "-C",
        MANIFEST_DIR,
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .is_some_and(|s| !s.is_empty());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb as f64 / 1048576.0));
    vec![
        format!("cpu: {cpus} × {cpu}, {mem} memory; kernel {kernel}"),
        format!("disk: {mount} (bench dir {dir_s})"),
        format!(
            "binary: {bin} ({} bytes), source {rev}{}",
            std::fs::metadata(bin).map_or(0, |m| m.len()),
            if dirty { " + uncommitted changes" } else { "" }
        ),
    ]
}

// ------------------------------------------------------------------------------- main ---

fn selected(name: &str) -> bool {
    let list = |var: &str| -> Option<Vec<String>> {
        env(var).map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
    };
    if let Some(only) = list("BENCH_ONLY") {
        if !only.iter().any(|o| name.contains(o.as_str())) {
            return false;
        }
    }
    if let Some(skip) = list("BENCH_SKIP") {
        if skip.iter().any(|o| name.contains(o.as_str())) {
            return false;
        }
    }
    true
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let started = Instant::now();
    let runs: usize = env_or("BENCH_RUNS", "300").parse().unwrap();
    let sizes: Vec<usize> = env_or("BENCH_SIZES", "2048,65536,1048576,20971520")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let parallel = env_or("BENCH_PARALLEL", "1") != "0";
    let mode = match env_or("BENCH_STDIN", "file").as_str() {
        "pipe" => StdinMode::Pipe,
        _ => StdinMode::File,
    };
    let bin = env_or("BENCH_BIN", BUILT_BIN);
    let dir = tempfile::Builder::new()
        .prefix("virt_mail-bench.")
        .tempdir_in(env_or("BENCH_DIR", "/var/tmp"))
        .unwrap();
    let load_start = load1();
    let ticks_start = cpu_ticks();
    let (db, config) = sqlite_setup(dir.path());
    let config = config.to_str().unwrap().to_string();

    // The durable-write floor: copy stdin over a file that already exists and fsync it,
    // the least any MDA with a durable commit must do on this disk.
    let target = dir.path().join("dd-target");
    std::fs::write(&target, vec![0u8; 32 * 1024 * 1024]).unwrap();
    let of = format!("of={}", target.display());

    let mut notes = Vec::new();
    let mut specs = vec![
        Spec::new("/bin/true", Kind::Floor, &["/bin/true"]),
        Spec::new("cat >/dev/null", Kind::Floor, &["/bin/cat"]),
        Spec::new(
            "dd conv=fsync (durable floor)",
            Kind::Floor,
            &["/bin/dd", &of, "bs=1M", "conv=notrunc,fsync", "status=none"],
        ),
    ];
    {
        let db = db.clone();
        specs.push(
            ours_spec("virt_mail sqlite", Kind::Ours, &bin, &config)
                .cleanup(move || sqlite_cleanup(&db)),
        );
    }
    postgres_rows(dir.path(), &bin, &mut specs, &mut notes);
    mysql_rows(dir.path(), &bin, &mut specs, &mut notes);
    // ODBC needs the `odbc` feature, which also makes every start load libodbc: measured
    // with its own build (default: the one cargo built) so the other rows can be measured
    // as installed by default (`BENCH_BIN`, bench/run.sh: a default-features build).
    let odbc_bin = env_or("BENCH_BIN_ODBC", BUILT_BIN);
    virtuoso_rows(dir.path(), (&bin, &odbc_bin), &mut specs, &mut notes);
    // Other builds of virt_mail (scratch builds to compare), each on the rows of ours that
    // BENCH_EXTRA_FOR names (default: sqlite).
    let extra_for = env_or("BENCH_EXTRA_FOR", "sqlite");
    let mut extras = Vec::new();
    for extra in env("BENCH_EXTRA").iter().flat_map(|v| v.split(',')) {
        let (label, path) = extra.split_once('=').expect("BENCH_EXTRA: label=/path");
        // `label=/path:odbc+postgres` picks the rows for this build alone.
        let (path, rows) = match path.rsplit_once(':') {
            Some((p, rows)) if !rows.contains('/') => (p, rows.replace('+', ",")),
            _ => (path, extra_for.clone()),
        };
        for spec in specs
            .iter()
            .filter(|s| s.kind == Kind::Ours && rows.split(',').any(|f| s.name.contains(f.trim())))
        {
            let mut spec = spec.clone();
            spec.name = format!("{} [{label}]", spec.name);
            spec.argv[0] = path.to_string();
            extras.push(spec);
        }
    }
    specs.extend(extras);
    mda_rows(dir.path(), &mut specs, &mut notes);
    specs.retain(|s| selected(&s.name));

    let machine = machine(dir.path(), &bin);
    for line in &machine {
        eprintln!("bench: {line}");
    }
    // Whatever was just written (the builds, the 32 MiB dd target above) would otherwise be
    // written back during the first rows, slowing their fsyncs and CPU: /bin/true measured
    // 0.93 ms at 2 KiB against 0.69 ms at every other size in one run.
    let _ = Command::new("sync").status();
    let mut rows = Vec::new();
    for &size in &sizes {
        let (input, data) = message(dir.path(), size);
        let data = Arc::new(data);
        let n = if size > 4 * 1024 * 1024 {
            runs / 10
        } else if size > 64 * 1024 {
            runs / 3
        } else {
            runs
        }
        .max(10);
        for spec in &specs {
            let row_started = Instant::now();
            let row_ticks = cpu_ticks();
            let runs =
                |runs: usize, streams: usize| measure(spec, &input, &data, runs, streams, mode);
            // Warm up caches and the database file.
            let measured = runs(5, 1).and_then(|_| {
                let (times, cpu, wall1) = runs(n, 1)?;
                let tput2 = if parallel {
                    n as f64 / runs(n, 2)?.2
                } else {
                    0.0
                };
                Ok((times, cpu, wall1, tput2))
            });
            let cleanup = || {
                if let Some(cleanup) = &spec.cleanup {
                    cleanup();
                }
            };
            let (times, cpu, wall1, tput2) = match measured {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("bench: {:<34} {:>8}  FAILED: {e}", spec.name, human(size));
                    notes.push(format!("{} failed at {}: {e}", spec.name, human(size)));
                    cleanup();
                    continue;
                }
            };
            let rss = peak_rss(spec, &input);
            cleanup();
            let row = Row {
                name: spec.name.clone(),
                kind: spec.kind,
                size,
                median_ms: percentile(&times, 0.5),
                p99_ms: percentile(&times, 0.99),
                cpu_ms: percentile(&cpu, 0.5),
                rss_kib: rss,
                tput1: n as f64 / wall1,
                tput2,
                load: load1(),
                steal: steal_since(row_ticks),
            };
            eprintln!(
                "bench: {:<34} {:>8}  median {:>9.3} ms  p99 {:>9.3} ms  cpu {:>8.3} ms  {:>6.1} MiB  {:>7.1}/s  2 pipes {:>7.1}/s  load {:.2}  steal {:.0} %  ({:.1} s)",
                row.name,
                human(size),
                row.median_ms,
                row.p99_ms,
                row.cpu_ms,
                row.rss_kib as f64 / 1024.0,
                row.tput1,
                row.tput2,
                row.load,
                row.steal,
                row_started.elapsed().as_secs_f64()
            );
            rows.push(row);
        }
    }
    if specs.iter().any(|s| s.name.contains("postgres")) {
        pgbench_note(&mut notes);
    }
    let load_end = load1();
    let elapsed = started.elapsed().as_secs_f64();

    print_table(&rows);
    println!();
    for line in &machine {
        println!("- {line}");
    }
    println!(
        "- load average (1 min): {load_start:.2} at the start, {load_end:.2} at the end; the `load` column is at the end of each row"
    );
    println!(
        "- steal: {:.1} % of the CPU time over the whole run went to the VM's host (the `steal` column: per row); rows above 5 % are not comparable with a quiet run",
        steal_since(ticks_start)
    );
    println!(
        "- stdin: {}; runs per row: {runs} up to 64 KiB, {} up to 4 MiB, {} above; whole run {elapsed:.0} s",
        if mode == StdinMode::Pipe {
            "a pipe"
        } else {
            "a regular file"
        },
        (runs / 3).max(10),
        (runs / 10).max(10)
    );
    for note in &notes {
        println!("- {note}");
    }
    println!();
    for line in acceptance(&rows) {
        println!("{line}");
    }
    let svg_path = env("BENCH_SVG").map(PathBuf::from).unwrap_or_else(|| {
        if std::env::var_os("BENCH_SVG").is_some() {
            PathBuf::new()
        } else {
            Path::new(MANIFEST_DIR).join("docs/perf.svg")
        }
    });
    if !svg_path.as_os_str().is_empty() && !rows.is_empty() {
        let subtitle = format!(
            "{} — load {load_start:.2}→{load_end:.2} — {}",
            machine[0],
            machine[2].split(", source").nth(1).map_or("", |s| s.trim())
        );
        if let Some(parent) = svg_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let extras = env("BENCH_SVG_EXTRA").is_some();
        let charted: Vec<&Row> = rows
            .iter()
            .filter(|r| extras || !r.name.ends_with(']'))
            .collect();
        std::fs::write(&svg_path, svg::chart(&charted, &subtitle)).unwrap();
        println!("\nchart: {}", svg_path.display());
    }
    if env("BENCH_STRICT").is_some() {
        strict_check(&rows, &notes, &sizes);
    }
}

/// `BENCH_STRICT=1` (CI's smoke run): every row `BENCH_ONLY` names must have been measured
/// at every size, so that a harness that rots, or a row that starts failing, fails the run.
/// Timings are never judged here.
fn strict_check(rows: &[Row], notes: &[String], sizes: &[usize]) {
    let wanted: Vec<String> = env("BENCH_ONLY")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let mut missing: Vec<String> = wanted
        .iter()
        .flat_map(|w| sizes.iter().map(move |&size| (w, size)))
        .filter(|(w, size)| {
            !rows
                .iter()
                .any(|r| r.size == *size && r.name.contains(w.as_str()))
        })
        .map(|(w, size)| format!("{w} at {}", human(size)))
        .collect();
    missing.extend(notes.iter().filter(|n| n.contains(" failed at ")).cloned());
    if !missing.is_empty() {
        eprintln!("bench: BENCH_STRICT: not measured: {}", missing.join("; "));
        for note in notes {
            eprintln!("bench: note: {note}");
        }
        std::process::exit(1);
    }
    eprintln!("bench: BENCH_STRICT: all {} rows measured", rows.len());
}

fn print_table(rows: &[Row]) {
    println!(
        "| command | message | median ms | p99 ms | CPU ms | peak RSS MiB | RSS − message MiB | msg/s 1 pipe | msg/s 2 pipes | 2÷1 | × /bin/true | × cat | × sqlite | load | steal % |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let floor = |name: &str| find(rows, name, row.size).map(|r| r.median_ms);
        let ratio = |f: Option<f64>| f.map_or("-".into(), |f| format!("{:.2}", row.median_ms / f));
        let (t2, r2) = if row.tput2 > 0.0 {
            (
                format!("{:.1}", row.tput2),
                format!("{:.2}", row.tput2 / row.tput1),
            )
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.2} | {:.0} |",
            row.name,
            human(row.size),
            row.median_ms,
            row.p99_ms,
            row.cpu_ms,
            mib(row.rss_kib),
            mib(row.rss_kib) - row.size as f64 / 1048576.0,
            row.tput1,
            t2,
            r2,
            ratio(floor("/bin/true")),
            ratio(floor("cat >/dev/null")),
            ratio(floor("virt_mail sqlite")),
            row.load,
            row.steal,
        );
    }
}

fn find<'a>(rows: &'a [Row], name: &str, size: usize) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name && r.size == size)
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

/// The project's acceptance ratios, each with the figures it compares and met or not.
fn acceptance(rows: &[Row]) -> Vec<String> {
    let mut out = vec!["Acceptance (median unless said otherwise):".to_string()];
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut check = |text: String, ok: Option<bool>| {
        out.push(match ok {
            Some(ok) => format!("- {}: {text}", verdict(ok)),
            None => format!("- not measured: {text}"),
        })
    };
    let median = |name: &str, size: usize| find(rows, name, size).map(|r| r.median_ms);
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3} ms"));
    let kb2 = 2048;
    let (true2, procmail2) = (median("/bin/true", kb2), median("procmail", kb2));
    // The installed build always; bench/run.sh's SQLite-only build too when it ran.
    for (name, label) in [
        ("virt_mail sqlite", "SQLite"),
        (
            "virt_mail sqlite [sqlite-only]",
            "SQLite, SQLite-only build,",
        ),
    ] {
        let sqlite2 = median(name, kb2);
        if sqlite2.is_none() && name.ends_with(']') {
            continue;
        }
        check(
            format!("{label} 2 KiB durable commit ≤ 1.5 ms: {}", ms(sqlite2)),
            sqlite2.map(|s| s <= 1.5),
        );
        check(
            format!(
                "{label} 2 KiB ≤ 3 × /bin/true: {} vs 3 × {}",
                ms(sqlite2),
                ms(true2)
            ),
            sqlite2.zip(true2).map(|(s, t)| s <= 3.0 * t),
        );
        check(
            format!(
                "{label} 2 KiB below procmail: {} vs {}",
                ms(sqlite2),
                ms(procmail2)
            ),
            sqlite2.zip(procmail2).map(|(s, p)| s < p),
        );
    }
    let mb = 1048576;
    let (sqlite1m, cat1m) = (median("virt_mail sqlite", mb), median("cat >/dev/null", mb));
    check(
        format!(
            "SQLite 1 MiB ≤ 1.5 × cat: {} vs 1.5 × {}",
            ms(sqlite1m),
            ms(cat1m)
        ),
        sqlite1m.zip(cat1m).map(|(s, c)| s <= 1.5 * c),
    );
    let sizes: Vec<usize> = {
        let mut s: Vec<usize> = rows.iter().map(|r| r.size).collect();
        s.dedup();
        s
    };
    let virtuoso = [
        ("Virtuoso", "virt_mail virtuoso"),
        ("ODBC→Virtuoso", "virt_mail odbc virtuoso"),
    ];
    for ((label, row), &size) in virtuoso
        .iter()
        .flat_map(|r| sizes.iter().map(move |s| (r, s)))
    {
        let (o, v) = (
            median("original virt_mail virtuoso", size),
            median(row, size),
        );
        if o.is_some() || v.is_some() {
            check(
                format!(
                    "{label} {} ≤ 0.5 × the original: {} vs 0.5 × {}{}",
                    human(size),
                    ms(v),
                    ms(o),
                    v.zip(o)
                        .map_or(String::new(), |(v, o)| format!(" (= {:.2} ×)", v / o))
                ),
                v.zip(o).map(|(v, o)| v <= 0.5 * o),
            );
        }
    }
    for &size in &sizes {
        let s = median("virt_mail sqlite", size);
        for name in [
            "virt_mail postgres socket",
            "virt_mail postgres pgbouncer socket",
            "virt_mail mariadb socket",
        ] {
            let v = median(name, size);
            if v.is_some() {
                check(
                    format!(
                        "{name} {} ≤ 2 × SQLite: {} vs 2 × {}{}",
                        human(size),
                        ms(v),
                        ms(s),
                        v.zip(s)
                            .map_or(String::new(), |(v, s)| format!(" (= {:.2} ×)", v / s))
                    ),
                    v.zip(s).map(|(v, s)| v <= 2.0 * s),
                );
            }
        }
    }
    let ours: Vec<&str> = {
        let mut names: Vec<&str> = Vec::new();
        for r in rows.iter().filter(|r| r.kind == Kind::Ours) {
            if !names.contains(&r.name.as_str()) {
                names.push(&r.name);
            }
        }
        names
    };
    for name in &ours {
        let worst = rows
            .iter()
            .filter(|r| r.name == *name)
            .map(|r| (mib(r.rss_kib) - r.size as f64 / 1048576.0, r.size))
            .max_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        if let Some((over, size)) = worst {
            check(
                format!(
                    "{name}: peak RSS ≤ message + 4 MiB at every size (worst: message + {over:.1} MiB at {})",
                    human(size)
                ),
                Some(over <= 4.0),
            );
        }
        let (a, b) = (find(rows, name, mb), find(rows, name, 20 * mb));
        if let (Some(a), Some(b)) = (a, b) {
            let growth = mib(b.rss_kib - a.rss_kib);
            check(
                format!(
                    "{name}: peak RSS flat from 1 MiB to 20 MiB (within 2 MiB): grows {growth:.1} MiB"
                ),
                Some(growth <= 2.0),
            );
        }
        for r in rows.iter().filter(|r| r.name == *name && r.tput2 > 0.0) {
            check(
                format!(
                    "{name} {}: 2 pipes ≥ 1.8 × the throughput of one: {:.1}/s vs {:.1}/s (= {:.2} ×)",
                    human(r.size),
                    r.tput2,
                    r.tput1,
                    r.tput2 / r.tput1
                ),
                Some(r.tput2 >= 1.8 * r.tput1),
            );
        }
    }
    out
}

pub fn human(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}
