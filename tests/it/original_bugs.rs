//! SPEC §10, row by row: bugs of the original that must not come back.

use crate::common::*;

#[test]
fn unquoted_column_macro_in_deliver_is_bound() {
    // The old default `Deliver = DB.DBA.NEW_MAIL($1, $message)` pasted $1 unquoted.
    let s = Setup::new(
        "Verify = SELECT name FROM users WHERE name = '$local'\n\
         Deliver = INSERT INTO mail (recipient, body) VALUES ($1, $message)",
        "",
    );
    s.run().args(["-l", "alice"]).expect(0);
    assert_eq!(s.mails()[0].recipient, "alice");
}

#[test]
fn quotes_in_local_parts_neither_break_nor_rewrite_statements() {
    let s = Setup::standard("");
    s.run()
        .args(["-l", "o'brien", "-h", "example.com"])
        .expect(0);
    s.run()
        .args(["-l", "x' or name='alice", "-h", "example.com"])
        .expect(67);
    s.run()
        .args(["-l", "x' OR '1'='1", "-h", "example.com"])
        .expect(67);
    let mails = s.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipient, "o'brien");
    s.assert_tables_intact();
}

#[test]
fn macro_values_are_not_expanded_again() {
    let s = Setup::standard("");
    // The original reached alice with -l 'al$domain' -h ice.
    s.run().args(["-l", "al$domain", "-h", "ice"]).expect(67);
    // The original overflowed with -l '$local'.
    s.run().args(["-l", "$local"]).expect(67);
    s.run().args(["-l", "${local}${local}${local}"]).expect(67);
    assert_eq!(s.count(), 0);
}

#[test]
fn nul_bytes_are_stored_and_copied_whole() {
    let s = Setup::standard("");
    let debug = s.path("debug.log");
    s.configure(&format!("{OPTIONS}\nMailDebug = {}", debug.display()), "");
    let body = b"head\0tail\0".to_vec();
    s.run().args(["-l", "alice"]).stdin(body.clone()).expect(0);
    assert_eq!(s.mails()[0].body, body);
    assert_eq!(std::fs::read(&debug).unwrap(), body);
}

#[test]
fn transient_execution_errors_defer() {
    // The original bounced (70) every SQL execution error. A database that is locked, read
    // only or missing is a fault to wait out.
    let s = Setup::standard("StatementTimeout = 1");
    s.run().args(["-l", "alice"]).expect(0);
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for mailer in MAILERS {
        s.run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .expect(status_for(mailer, 75));
    }
    conn.execute_batch("COMMIT").unwrap();
}
