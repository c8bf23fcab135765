-- virt_mail on SQLite: mailboxes and the messages stored for them.
-- Create with:  sqlite3 /var/mail/virt_mail.db < schema.sql
-- virt_mail switches the file to WAL mode on first use; it never creates the file itself.
-- The -wal file beside it stays (if at most 64 MiB), its blocks reused by the next delivery;
-- sqlite3 DB 'PRAGMA wal_checkpoint(TRUNCATE)' gives the space back (virt_mail(8)).
-- The database file itself grows in allocated steps of 1 MiB.
-- SQLite's default 4 KiB pages suit small mail best; for a store that mostly takes messages
-- of 1 MiB and more, 16 KiB pages are about 15 % quicker (docs/PERFORMANCE.md):
-- PRAGMA page_size = 16384;

CREATE TABLE IF NOT EXISTS mailbox (
    id      INTEGER PRIMARY KEY,
    local   TEXT NOT NULL,                    -- lower-case local part
    domain  TEXT NOT NULL DEFAULT '',         -- lower-case domain ('' = any)
    folder  TEXT NOT NULL DEFAULT 'Inbox',
    UNIQUE (local, domain)
);

CREATE TABLE IF NOT EXISTS message (
    id          INTEGER PRIMARY KEY,
    mailbox_id  INTEGER NOT NULL REFERENCES mailbox (id),
    folder      TEXT NOT NULL,
    sender      TEXT NOT NULL,                -- envelope sender, '' for bounces
    received    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    body        BLOB NOT NULL                 -- the message, byte for byte; keep it the
                                              -- last column, with no trigger or CHECK
                                              -- reading it: then a large message is written
                                              -- in pieces and memory stays flat
);

CREATE INDEX IF NOT EXISTS message_mailbox ON message (mailbox_id, folder);
