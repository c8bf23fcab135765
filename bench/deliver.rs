//! Delivery benchmark: `cargo bench --bench deliver` prints one markdown table.
//!
//! Each row runs a command once per "message", the way an MTA runs an MDA: a new process,
//! the message on standard input (a regular file, as qmail gives it), wait for its status.
//! Wall time per run (median, p99) and peak RSS (from wait4) are measured in the same run
//! for the floors (`/bin/true`, `cat >/dev/null`) and for virt_mail, so ratios compare like
//! with like on whatever machine runs it.
//!
//! Environment: `BENCH_RUNS` (default 300), `BENCH_SIZES` (default `2048,1048576`),
//! `BENCH_ONLY` (substring filter on row names). Server rows (PostgreSQL and MariaDB over
//! their unix sockets and TCP, ODBC to Virtuoso) need `--features postgres,mysql,odbc` and
//! the servers of `scripts/servers.sh start` (source its env.sh); without them they are
//! left out with a note.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_virt_mail");

struct Row {
    name: String,
    size: usize,
    median_ms: f64,
    p99_ms: f64,
    rss_kib: i64,
}

/// Runs `argv` `runs` times with `input` on stdin; returns the sorted wall times in ms.
fn measure(argv: &[&str], input: &Path, runs: usize) -> Vec<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let stdin = File::open(input).unwrap();
        let started = Instant::now();
        let status = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("spawn");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(status.success(), "{argv:?}: {status}");
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times
}

/// Peak RSS in KiB over a few runs, read by GNU time (`/usr/bin/time -f %M`): a child
/// spawned from this (larger) process would report our own RSS as its floor.
fn peak_rss(argv: &[&str], input: &Path) -> i64 {
    (0..5)
        .map(|_| {
            let out = Command::new("/usr/bin/time")
                .args(["-f", "%M"])
                .args(argv)
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

/// A SQLite store and config in `dir`, as the quick start sets one up.
fn sqlite_setup(dir: &Path) -> PathBuf {
    let db = dir.join("mail.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(include_str!("../examples/sqlite/schema.sql"))
        .unwrap();
    conn.execute_batch("INSERT INTO mailbox (local, domain) VALUES ('alice', 'example.com')")
        .unwrap();
    drop(conn);
    let config = dir.join("virt_mail.ini");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sqlite/virt_mail.ini"),
    )
    .unwrap()
    .replace(
        "sqlite:/var/mail/virt_mail.db",
        &format!("sqlite:{}", db.display()),
    );
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    config
}

/// The statements every server row uses (the bench tables are created fresh per run).
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
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(dead_code)
)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// (row name, config file) for each reachable server, or a note why it is missing.
fn server_configs(dir: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    postgres_rows(dir, &mut rows, &mut notes);
    mysql_rows(dir, &mut rows, &mut notes);
    odbc_rows(dir, &mut rows, &mut notes);
    (rows, notes)
}

#[cfg(feature = "postgres")]
fn postgres_rows(dir: &Path, rows: &mut Vec<(String, String)>, notes: &mut Vec<String>) {
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
    client
        .batch_execute(
            "DROP TABLE IF EXISTS bench_message, bench_mailbox;
             CREATE TABLE bench_mailbox (id SERIAL PRIMARY KEY, local TEXT NOT NULL UNIQUE);
             CREATE TABLE bench_message (id BIGSERIAL PRIMARY KEY, mailbox_id INT NOT NULL,
                 sender TEXT NOT NULL, body BYTEA NOT NULL);
             INSERT INTO bench_mailbox (local) VALUES ('alice');",
        )
        .unwrap();
    let socket_url = format!("postgresql://virt:virtpw@/mail?host={socket}&port={port}");
    let mut dsns = vec![("postgres socket", socket_url), ("postgres tcp", url)];
    // Peer authentication over the socket, as a delivery user would log in: no password
    // hashing (SCRAM) on either side.
    if let Some(peer) = env("VIRT_MAIL_TEST_PG_PEER_URL") {
        dsns.insert(0, ("postgres socket peer", peer));
    }
    for (name, dsn) in dsns {
        let config = write_config(
            dir,
            &name.replace(' ', "_"),
            &format!("[Options]\nDSN = {dsn}\n{SERVER_OPTIONS}"),
        );
        rows.push((format!("virt_mail {name}"), config));
    }
}

#[cfg(not(feature = "postgres"))]
fn postgres_rows(_: &Path, _: &mut Vec<(String, String)>, notes: &mut Vec<String>) {
    notes.push("PostgreSQL: built without the `postgres` feature".into());
}

#[cfg(feature = "mysql")]
fn mysql_rows(dir: &Path, rows: &mut Vec<(String, String)>, notes: &mut Vec<String>) {
    use mysql::prelude::Queryable;
    let (Some(url), Some(socket)) = (
        env("VIRT_MAIL_TEST_MYSQL_URL"),
        env("VIRT_MAIL_TEST_MYSQL_SOCKET"),
    ) else {
        notes.push("MariaDB: no server environment (scripts/servers.sh start)".into());
        return;
    };
    let mut conn = match mysql::Opts::from_url(&url)
        .map_err(|e| e.to_string())
        .and_then(|o| mysql::Conn::new(o).map_err(|e| e.to_string()))
    {
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
    let socket_url = format!("mysql://virt:virtpw@localhost/mail?socket={socket}");
    for (name, dsn) in [("mariadb socket", socket_url), ("mariadb tcp", url)] {
        let config = write_config(
            dir,
            &name.replace(' ', "_"),
            &format!("[Options]\nDSN = {dsn}\n{SERVER_OPTIONS}"),
        );
        rows.push((format!("virt_mail {name}"), config));
    }
}

#[cfg(not(feature = "mysql"))]
fn mysql_rows(_: &Path, _: &mut Vec<(String, String)>, notes: &mut Vec<String>) {
    notes.push("MariaDB: built without the `mysql` feature".into());
}

#[cfg(feature = "odbc")]
fn odbc_rows(dir: &Path, rows: &mut Vec<(String, String)>, notes: &mut Vec<String>) {
    let (Some(dsn), Some(odbcini), Some(odbcsysini)) = (
        env("VIRT_MAIL_TEST_ODBC_VIRTUOSO_DSN"),
        env("ODBCINI"),
        env("ODBCSYSINI"),
    ) else {
        notes.push("ODBC → Virtuoso: no server environment (scripts/servers.sh start)".into());
        return;
    };
    let connect = format!("DSN={dsn};UID=dba;PWD=dba");
    let setup = || -> Result<(), String> {
        let env = odbc_api::environment().map_err(|e| e.to_string())?;
        let conn = env
            .connect_with_connection_string(
                &format!("{connect}\0")[..connect.len()],
                Default::default(),
            )
            .map_err(|e| e.to_string())?;
        for sql in [
            "DROP TABLE bench_message",
            "DROP TABLE bench_mailbox",
            "CREATE TABLE bench_mailbox (id INTEGER PRIMARY KEY, local VARCHAR(200) NOT NULL)",
            "CREATE TABLE bench_message (id INTEGER IDENTITY PRIMARY KEY, mailbox_id INTEGER NOT NULL, sender VARCHAR(700) NOT NULL, body LONG VARBINARY NOT NULL)",
            "INSERT INTO bench_mailbox (id, local) VALUES (1, 'alice')",
        ] {
            let text = format!("{sql}\0");
            let result = conn.execute(&text[..sql.len()], (), None).map(|_| ());
            if let Err(e) = result {
                if !sql.starts_with("DROP") {
                    return Err(e.to_string());
                }
            }
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return notes.push(format!("ODBC → Virtuoso: {e}"));
    }
    let config = write_config(
        dir,
        "odbc_virtuoso",
        &format!(
            "[Options]\nDSN = {connect}\n{SERVER_OPTIONS}[Environment]\nODBCINI = {odbcini}\nODBCSYSINI = {odbcsysini}\n"
        ),
    );
    rows.push(("virt_mail odbc virtuoso".into(), config));
}

#[cfg(not(feature = "odbc"))]
fn odbc_rows(_: &Path, _: &mut Vec<(String, String)>, notes: &mut Vec<String>) {
    notes.push("ODBC → Virtuoso: built without the `odbc` feature".into());
}

fn message(dir: &Path, size: usize) -> PathBuf {
    let path = dir.join(format!("message-{size}"));
    let mut f = File::create(&path).unwrap();
    let header = b"From: bob@example.org\nTo: alice@example.com\nSubject: benchmark\n\n";
    f.write_all(header).unwrap();
    let line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\n";
    let mut left = size.saturating_sub(header.len());
    while left > 0 {
        let n = left.min(line.len());
        f.write_all(&line[..n]).unwrap();
        left -= n;
    }
    path
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runs: usize = env_or("BENCH_RUNS", "300").parse().unwrap();
    let sizes: Vec<usize> = env_or("BENCH_SIZES", "2048,1048576")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let only = std::env::var("BENCH_ONLY").ok();
    let dir = tempfile::tempdir_in(env_or("BENCH_DIR", "/var/tmp")).unwrap();
    let config = sqlite_setup(dir.path());
    let config = config.to_str().unwrap().to_string();

    // The durable-write floor: copy stdin over a file that already exists and fsync it,
    // the least any MDA with a durable commit must do on this disk.
    let target = dir.path().join("dd-target");
    std::fs::write(&target, vec![0u8; 64 * 1024 * 1024]).unwrap();
    let of = format!("of={}", target.display());
    let (servers, notes) = server_configs(dir.path());
    let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
    let delivery = |config: &str| {
        words(&[
            BIN,
            "-c",
            config,
            "-l",
            "alice",
            "-h",
            "example.com",
            "-s",
            "bob@example.org",
        ])
    };
    let mut rows_spec: Vec<(String, Vec<String>)> = vec![
        ("/bin/true".into(), words(&["/bin/true"])),
        ("cat >/dev/null".into(), words(&["/bin/cat"])),
        (
            "dd conv=fsync (durable floor)".into(),
            words(&["/bin/dd", &of, "bs=1M", "conv=notrunc,fsync", "status=none"]),
        ),
        ("virt_mail sqlite".into(), delivery(&config)),
    ];
    for (name, config) in &servers {
        rows_spec.push((name.clone(), delivery(config)));
    }
    let mut rows = Vec::new();
    for &size in &sizes {
        let input = message(dir.path(), size);
        let n = if size > 4 * 1024 * 1024 {
            runs / 10
        } else if size > 64 * 1024 {
            runs / 3
        } else {
            runs
        }
        .max(10);
        for (name, argv) in &rows_spec {
            if only.as_deref().is_some_and(|o| !name.contains(o)) {
                continue;
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let argv = &argv;
            // Warm up caches and the database file.
            measure(argv, &input, 5);
            let times = measure(argv, &input, n);
            let rss = peak_rss(argv, &input);
            rows.push(Row {
                name: name.clone(),
                size,
                median_ms: percentile(&times, 0.5),
                p99_ms: percentile(&times, 0.99),
                rss_kib: rss,
            });
        }
    }
    println!(
        "| command | message | median ms | p99 ms | peak RSS MiB | × /bin/true | × cat | × sqlite |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let floor = |name: &str| {
            rows.iter()
                .find(|r| r.name == name && r.size == row.size)
                .map(|r| r.median_ms)
        };
        let ratio = |f: Option<f64>| f.map_or("-".into(), |f| format!("{:.2}", row.median_ms / f));
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
            row.name,
            human(row.size),
            row.median_ms,
            row.p99_ms,
            row.rss_kib as f64 / 1024.0,
            ratio(floor("/bin/true")),
            ratio(floor("cat >/dev/null")),
            ratio(floor("virt_mail sqlite")),
        );
    }
    for note in notes {
        println!("\nnot measured: {note}");
    }
}

fn human(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}
