-- virt_mail on OpenLink Virtuoso: mailboxes and the messages stored for them.
-- isql-vt localhost:1111 dba dba < schema.sql
CREATE TABLE mailbox (
    id      INTEGER IDENTITY PRIMARY KEY,
    local   VARCHAR(255) NOT NULL,              -- lower-case local part
    domain  VARCHAR(255) DEFAULT '' NOT NULL,   -- lower-case domain ('' = any)
    folder  VARCHAR(255) DEFAULT 'Inbox' NOT NULL
);
CREATE UNIQUE INDEX mailbox_address ON mailbox (local, domain);

CREATE TABLE message (
    id          INTEGER IDENTITY PRIMARY KEY,
    mailbox_id  INTEGER NOT NULL REFERENCES mailbox (id),
    folder      VARCHAR(255) NOT NULL,
    sender      VARCHAR(1024) NOT NULL,         -- envelope sender, '' for bounces
    received    TIMESTAMP,                      -- set by the server on insert
    body        LONG VARBINARY NOT NULL         -- the message, byte for byte
);
CREATE INDEX message_folder ON message (mailbox_id, folder);
