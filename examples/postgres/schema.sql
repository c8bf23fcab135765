-- virt_mail on PostgreSQL: mailboxes and the messages stored for them.
-- psql -d mail -f schema.sql
CREATE TABLE IF NOT EXISTS mailbox (
    id      serial PRIMARY KEY,
    local   text NOT NULL,                    -- lower-case local part
    domain  text NOT NULL DEFAULT '',         -- lower-case domain ('' = any)
    folder  text NOT NULL DEFAULT 'Inbox',
    UNIQUE (local, domain)
);

CREATE TABLE IF NOT EXISTS message (
    id          bigserial PRIMARY KEY,
    mailbox_id  integer NOT NULL REFERENCES mailbox (id),
    folder      text NOT NULL,
    sender      text NOT NULL,                -- envelope sender, '' for bounces
    received    timestamptz NOT NULL DEFAULT now(),
    body        bytea COMPRESSION lz4 NOT NULL
    -- body: the message, byte for byte (not text: mail may hold NUL or 8-bit bytes).
    -- lz4, not the default pglz: pglz spends 14-20 ms per MiB of attachment trying to
    -- compress it, doubling the time of a 1 MiB delivery (docs/PERFORMANCE.md).
    -- PostgreSQL 14+ built with lz4 (Debian's is); before 14, drop "COMPRESSION lz4" and
    -- run ALTER TABLE message ALTER COLUMN body SET STORAGE EXTERNAL (no compression).
);

CREATE INDEX IF NOT EXISTS message_mailbox ON message (mailbox_id, folder);

-- A function for VerifyCheckReturn: 1 when the mailbox exists.
CREATE OR REPLACE FUNCTION mailbox_exists(l text, d text) RETURNS integer
    LANGUAGE sql STABLE
    AS $$ SELECT CASE WHEN EXISTS (SELECT 1 FROM mailbox
                                   WHERE local = l AND (domain = d OR domain = ''))
                      THEN 1 ELSE 0 END $$;
