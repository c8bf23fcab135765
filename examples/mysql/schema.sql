-- virt_mail on MySQL / MariaDB: mailboxes and the messages stored for them.
-- mysql mail < schema.sql
CREATE TABLE IF NOT EXISTS mailbox (
    id      INT AUTO_INCREMENT PRIMARY KEY,
    local   VARCHAR(255) NOT NULL,            -- lower-case local part
    domain  VARCHAR(255) NOT NULL DEFAULT '', -- lower-case domain ('' = any)
    folder  VARCHAR(255) NOT NULL DEFAULT 'Inbox',
    UNIQUE KEY (local, domain)
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS message (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    mailbox_id  INT NOT NULL,
    folder      VARCHAR(255) NOT NULL,
    sender      VARCHAR(1024) NOT NULL,       -- envelope sender, '' for bounces
    received    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    body        LONGBLOB NOT NULL,            -- the message, byte for byte
    KEY (mailbox_id, folder),
    FOREIGN KEY (mailbox_id) REFERENCES mailbox (id)
) DEFAULT CHARSET = utf8mb4;
