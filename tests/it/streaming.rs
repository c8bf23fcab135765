//! A large message is written into its SQLite row after the row is inserted (incremental
//! BLOB I/O), so that memory stays flat; wherever the statement or the table could see the
//! placeholder zeros instead of the message, it is stored as the statement is written.

use crate::common::*;

/// Large enough to be streamed (from 1 MiB on).
const LARGE: usize = 2 * 1024 * 1024;

fn large_message() -> Vec<u8> {
    let mut body = b"Subject: urgent report\n\n".to_vec();
    body.extend(pseudo_random(LARGE));
    body
}

fn sql(s: &Setup, batch: &str) {
    rusqlite::Connection::open(&s.db)
        .unwrap()
        .execute_batch(batch)
        .unwrap();
}

fn query<T: rusqlite::types::FromSql>(s: &Setup, q: &str) -> T {
    rusqlite::Connection::open(&s.db)
        .unwrap()
        .query_row(q, [], |r| r.get(0))
        .unwrap()
}

/// Peak RSS in KiB of one delivery of `len` bytes, from a pipe or from a regular file (as
/// qmail and courier hand it over); the stored message must equal the input.
fn peak_kb(s: &Setup, len: usize, from_file: bool) -> i64 {
    let body = pseudo_random(len);
    let mut run = s.run();
    run.args(["-l", "alice"]);
    let file = s.path("message");
    if from_file {
        std::fs::write(&file, &body).unwrap();
        run.stdin_file(&file);
    } else {
        run.stdin(body.clone());
    }
    let kb = run.peak_rss_kb(0);
    assert!(
        s.mails().pop().unwrap().body == body,
        "{len}-byte body differs"
    );
    kb
}

#[test]
fn memory_stays_flat_as_messages_grow() {
    let s = Setup::standard("");
    for from_file in [false, true] {
        // Just under 1 MiB: stored by the statement as written, from the spool. 16 MiB:
        // written after the row, a piece at a time, each dropped from memory once written.
        let small = peak_kb(&s, 1024 * 1024 - 1, from_file);
        let large = peak_kb(&s, 16 * 1024 * 1024, from_file);
        // Without the pieces SQLite's record and the message would be 32 MiB more.
        assert!(
            large - small <= 2048,
            "peak RSS {small} KiB at 1 MiB, {large} KiB at 16 MiB (from a file: {from_file})"
        );
    }
}

#[test]
fn the_streamed_row_is_one_row_with_the_exact_message() {
    let s = Setup::standard("");
    let body = large_message();
    let out = s
        .run()
        .args(["-l", "alice", "-s", "bob@example.org", "--debug"])
        .stdin(body.clone())
        .expect(0);
    assert!(
        text(&out.stderr).contains("message written into mail.body"),
        "{}",
        text(&out.stderr)
    );
    let mails = s.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipient, "alice");
    assert_eq!(mails[0].sender.as_deref(), Some("bob@example.org"));
    assert!(mails[0].body == body, "body differs");
    assert_eq!(query::<String>(&s, "SELECT typeof(body) FROM mail"), "blob");
}

/// Parallel deliveries of large messages wait for each other's write lock and checkpoint,
/// and each stores its own message, once.
#[test]
fn parallel_streamed_deliveries_each_store_their_own_message_once() {
    let s = Setup::standard("");
    let (pipes, each) = (4, 3);
    let body = |i: usize| {
        let mut body = format!("Subject: parallel {i}\n\n").into_bytes();
        body.extend(pseudo_random(LARGE + i * 4099));
        body
    };
    std::thread::scope(|scope| {
        for pipe in 0..pipes {
            let s = &s;
            scope.spawn(move || {
                for i in (pipe..pipes * each).step_by(pipes) {
                    s.run()
                        .args(["-l", "alice", "-s", &format!("p{i}@example.org")])
                        .stdin(body(i))
                        .expect(0);
                }
            });
        }
    });
    let mails = s.mails();
    assert_eq!(mails.len(), pipes * each);
    for m in &mails {
        let sender = m.sender.as_deref().unwrap_or_default();
        let i: usize = sender[1..sender.find('@').unwrap()].parse().unwrap();
        assert!(m.body == body(i), "{sender}: body differs");
    }
    let senders: std::collections::BTreeSet<_> = mails.iter().map(|m| &m.sender).collect();
    assert_eq!(senders.len(), pipes * each, "a message stored twice");
    assert_eq!(query::<String>(&s, "PRAGMA integrity_check"), "ok");
}

/// Each case: extra schema, a Deliver (or the standard one), and a query whose answer,
/// computed by SQLite when the row was inserted, must be the one the real message gives.
#[test]
fn whatever_could_see_the_zeros_sees_the_message() {
    let standard =
        "INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)";
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "a trigger copies the message",
            "CREATE TABLE audit (body BLOB);
             CREATE TRIGGER keep AFTER INSERT ON mail BEGIN
                 INSERT INTO audit VALUES (NEW.body); END;",
            standard,
            "SELECT instr(body, 'urgent') > 0 FROM audit",
        ),
        (
            // No second row change gives this one away: only the trigger check does.
            "a trigger files the message by its content",
            "CREATE TRIGGER file AFTER INSERT ON mail WHEN instr(NEW.body, 'urgent') > 0
                 BEGIN UPDATE mail SET folder = 'Urgent' WHERE id = NEW.id; END;",
            standard,
            "SELECT folder = 'Urgent' FROM mail",
        ),
        (
            "a CHECK constraint reads it",
            "DROP TABLE mail;
             CREATE TABLE mail (id INTEGER PRIMARY KEY, recipient TEXT, folder TEXT,
                 sender TEXT, body BLOB CHECK (instr(body, 'urgent') > 0));",
            standard,
            "SELECT count(*) FROM mail",
        ),
        (
            "a generated column reads it",
            "DROP TABLE mail;
             CREATE TABLE mail (id INTEGER PRIMARY KEY, recipient TEXT, folder TEXT,
                 sender TEXT, head TEXT AS (CAST(substr(body, 1, 8) AS TEXT)) STORED,
                 body BLOB);",
            standard,
            "SELECT head = 'Subject:' FROM mail",
        ),
        (
            "a partial index reads it",
            "CREATE INDEX urgent ON mail (recipient) WHERE instr(body, 'urgent') > 0;",
            standard,
            "SELECT count(*) FROM mail INDEXED BY urgent WHERE instr(body, 'urgent') > 0",
        ),
        (
            "the statement decides on it",
            "",
            "INSERT INTO mail (recipient, folder, sender, body)
                 SELECT $1, CASE WHEN instr(m, 'urgent') > 0 THEN 'Urgent' ELSE $2 END,
                     '$sender', m FROM (SELECT $message AS m)",
            "SELECT folder = 'Urgent' FROM mail",
        ),
        (
            "the statement transforms it",
            "",
            "INSERT INTO mail (recipient, folder, sender, body)
                 VALUES ($1, instr($message, 'urgent') > 0, '$sender', CAST($message AS BLOB))",
            "SELECT folder = 1 FROM mail",
        ),
        (
            "an upsert updates with it",
            "CREATE UNIQUE INDEX one ON mail (recipient);
             INSERT INTO mail (recipient, body) VALUES ('alice', 'old');",
            "INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)
                 ON CONFLICT (recipient) DO UPDATE SET body = excluded.body",
            "SELECT count(*) FROM mail WHERE instr(body, 'urgent') > 0",
        ),
        (
            // Streaming is tried and undone: SQLite gives no BLOB handle on an indexed column.
            "the message's column is indexed",
            "CREATE INDEX whole ON mail (body);",
            standard,
            "SELECT count(*) FROM mail INDEXED BY whole WHERE instr(body, 'urgent') > 0",
        ),
        (
            // The same: SQLite gives no handle where an index has an expression.
            "an index on an expression of it",
            "CREATE INDEX head ON mail (substr(body, 1, 8));",
            standard,
            "SELECT count(*) FROM mail INDEXED BY head
                 WHERE substr(body, 1, 8) = CAST('Subject:' AS BLOB)",
        ),
        (
            "the message's column is not the last",
            "DROP TABLE mail;
             CREATE TABLE mail (id INTEGER PRIMARY KEY, recipient TEXT, folder TEXT,
                 sender TEXT, body BLOB, note TEXT DEFAULT 'n');",
            standard,
            "SELECT count(*) FROM mail WHERE note = 'n'",
        ),
    ];
    let body = large_message();
    let mut wrong = Vec::new();
    for (name, schema, deliver, check) in cases {
        let s = Setup::new(
            &format!(
                "Verify = SELECT name, folder FROM users WHERE name = '$local'\nDeliver = {}",
                deliver.replace('\n', "\n    ")
            ),
            BOUNCE,
        );
        sql(&s, schema);
        s.run().args(["-l", "alice"]).stdin(body.clone()).expect(0);
        let stored: Vec<Vec<u8>> = rusqlite::Connection::open(&s.db)
            .unwrap()
            .prepare("SELECT body FROM mail WHERE length(body) > 3")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if stored.len() != 1 || stored[0] != body {
            wrong.push(format!(
                "{name}: {} rows, or the body differs",
                stored.len()
            ));
        } else if query::<i64>(&s, check) != 1 {
            wrong.push(format!("{name}: {check} is not 1"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_refused_streamed_row_fails_as_the_statement_would() {
    let verify = "Verify = SELECT name, folder FROM users WHERE name = '$local'";
    let cases = [
        // NOT NULL on another column: refused whatever the message holds.
        (
            "",
            "INSERT INTO mail (recipient, folder, sender, body) VALUES (NULL, $2, '$sender', $message)",
            "NOT NULL constraint failed: mail.recipient",
        ),
        // A CHECK that the placeholder zeros would pass and the message does not.
        (
            "DROP TABLE mail;
             CREATE TABLE mail (id INTEGER PRIMARY KEY, recipient TEXT, folder TEXT,
                 sender TEXT, body BLOB CHECK (instr(body, 'urgent') = 0));",
            "INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)",
            "CHECK constraint failed",
        ),
        // Foreign keys are on (`PRAGMA foreign_keys` in the backend's settings): an immediate
        // one refuses the row, a deferred one the COMMIT.
        (
            &foreign_key_schema(""),
            "INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)",
            "FOREIGN KEY constraint failed",
        ),
        (
            &foreign_key_schema("DEFERRABLE INITIALLY DEFERRED"),
            "INSERT INTO mail (recipient, folder, sender, body) VALUES ($1, $2, '$sender', $message)",
            "FOREIGN KEY constraint failed",
        ),
    ];
    for (schema, deliver, refusal) in cases {
        let mut statuses = Vec::new();
        for body in [b"Subject: urgent\n\nx\n".to_vec(), large_message()] {
            let s = Setup::new(&format!("{verify}\nDeliver = {deliver}"), BOUNCE);
            sql(&s, schema);
            let out = s.run().args(["-l", "alice"]).stdin(body).output();
            assert!(text(&out.stderr).contains(refusal), "{}", text(&out.stderr));
            statuses.push(out.status.code());
            assert_eq!(
                query::<i64>(&s, "SELECT count(*) FROM mail"),
                0,
                "{refusal}"
            );
        }
        assert_eq!(statuses[0], statuses[1], "{refusal}");
    }
}

/// A TEMP trigger lives in the connection, not in the database's schema: one made by an
/// earlier statement (here the Duplicate query, which may be any SQL) fires on the insert.
#[test]
fn a_temp_trigger_made_before_deliver_sees_the_message() {
    let s = Setup::new(
        "Verify = SELECT name, folder FROM users WHERE name = '$local'\n\
         Duplicate = CREATE TEMP TRIGGER file AFTER INSERT ON main.mail \
         WHEN instr(NEW.body, 'urgent') > 0 \
         BEGIN UPDATE mail SET folder = 'Urgent' WHERE id = NEW.id; END\n\
         Deliver = INSERT INTO mail (recipient, folder, sender, body) \
         VALUES ($1, $2, '$sender', $message)",
        BOUNCE,
    );
    let body = large_message();
    s.run().args(["-l", "alice"]).stdin(body.clone()).expect(0);
    assert!(s.mails().pop().unwrap().body == body);
    assert_eq!(query::<String>(&s, "SELECT folder FROM mail"), "Urgent");
}

/// The mail table with its message column a foreign key into `known`, `deferral` its timing.
fn foreign_key_schema(deferral: &str) -> String {
    format!(
        "DROP TABLE mail;
         CREATE TABLE known (body BLOB PRIMARY KEY);
         CREATE TABLE mail (id INTEGER PRIMARY KEY, recipient TEXT, folder TEXT, sender TEXT,
             body BLOB REFERENCES known (body) {deferral});"
    )
}

/// A foreign key on the message's column is checked against the message, not the zeros:
/// SQLite gives no BLOB handle on such a column, so the row is stored as written.
#[test]
fn a_foreign_key_on_the_message_is_checked_against_the_message() {
    let body = large_message();
    for deferral in ["", "DEFERRABLE INITIALLY DEFERRED"] {
        let s = Setup::new(
            "Verify = SELECT name, folder FROM users WHERE name = '$local'\n\
             Deliver = INSERT INTO mail (recipient, folder, sender, body) \
             VALUES ($1, $2, '$sender', $message)",
            BOUNCE,
        );
        sql(&s, &foreign_key_schema(deferral));
        rusqlite::Connection::open(&s.db)
            .unwrap()
            .execute("INSERT INTO known VALUES (?1)", [&body])
            .unwrap();
        s.run().args(["-l", "alice"]).stdin(body.clone()).expect(0);
        assert!(s.mails().pop().unwrap().body == body, "{deferral}");
        assert_eq!(query::<i64>(&s, "SELECT count(*) FROM mail"), 1);
    }
}

/// SQLite rolls a whole transaction back on some errors (a full disk, an I/O error), and the
/// savepoint of a streamed row with it: the delivery must still defer, not bounce.
#[test]
fn a_full_disk_while_streaming_defers_and_stores_nothing() {
    let s = Setup::standard("");
    // Files may grow to 1 MiB (SIGXFSZ ignored, so a write past it fails with EFBIG).
    let limited = [
        "bash",
        "-c",
        "trap '' XFSZ; ulimit -f 1024 && exec \"$@\"",
        "bash",
    ];
    for mailer in ["sendmail", "qmail"] {
        let mut run = s.run();
        run.mailer(mailer)
            .args(["-l", "alice"])
            .stdin(large_message());
        let out = run.wrapped_output(&limited);
        run.check(&out, status_for(mailer, 75));
        assert_eq!(s.count(), 0, "{mailer}");
    }
    // Without the limit the same message is stored, once.
    s.run()
        .args(["-l", "alice"])
        .stdin(large_message())
        .expect(0);
    assert_eq!(s.count(), 1);
    assert!(s.mails()[0].body == large_message());
}
