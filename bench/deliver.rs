//! Delivery benchmark: `cargo bench --bench deliver` prints one markdown table.
//!
//! Each row runs a command once per "message", the way an MTA runs an MDA: a new process,
//! the message on standard input (a regular file, as qmail gives it), wait for its status.
//! Wall time per run (median, p99) and peak RSS (from wait4) are measured in the same run
//! for the floors (`/bin/true`, `cat >/dev/null`) and for virt_mail, so ratios compare like
//! with like on whatever machine runs it.
//!
//! Environment: `BENCH_RUNS` (default 300), `BENCH_SIZES` (default `2048,1048576`),
//! `BENCH_ONLY` (substring filter on row names).

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
    let rows_spec: Vec<(&str, Vec<&str>)> = vec![
        ("/bin/true", vec!["/bin/true"]),
        ("cat >/dev/null", vec!["/bin/cat"]),
        (
            "dd conv=fsync (durable floor)",
            vec!["/bin/dd", &of, "bs=1M", "conv=notrunc,fsync", "status=none"],
        ),
        (
            "virt_mail sqlite",
            vec![
                BIN,
                "-c",
                &config,
                "-l",
                "alice",
                "-h",
                "example.com",
                "-s",
                "bob@example.org",
            ],
        ),
    ];
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
            // Warm up caches and the database file.
            measure(argv, &input, 5);
            let times = measure(argv, &input, n);
            let rss = peak_rss(argv, &input);
            rows.push(Row {
                name: name.to_string(),
                size,
                median_ms: percentile(&times, 0.5),
                p99_ms: percentile(&times, 0.99),
                rss_kib: rss,
            });
        }
    }
    println!("| command | message | median ms | p99 ms | peak RSS MiB | × /bin/true | × cat |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let floor = |name: &str| {
            rows.iter()
                .find(|r| r.name == name && r.size == row.size)
                .map(|r| r.median_ms)
        };
        let ratio = |f: Option<f64>| f.map_or("-".into(), |f| format!("{:.2}", row.median_ms / f));
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.1} | {} | {} |",
            row.name,
            human(row.size),
            row.median_ms,
            row.p99_ms,
            row.rss_kib as f64 / 1024.0,
            ratio(floor("/bin/true")),
            ratio(floor("cat >/dev/null")),
        );
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
