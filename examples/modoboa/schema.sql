-- The part of Modoboa's schema (PostgreSQL) virt_mail reads, as Modoboa's Django models
-- create it (abridged to the columns used). Quotas are in MB; admin_quota.bytes is the
-- usage Dovecot's quota dict keeps.
CREATE TABLE IF NOT EXISTS admin_domain (
    id      serial PRIMARY KEY,
    name    varchar(100) NOT NULL UNIQUE,
    quota   integer NOT NULL DEFAULT 0,
    enabled boolean NOT NULL DEFAULT true
);

CREATE TABLE IF NOT EXISTS admin_mailbox (
    id        serial PRIMARY KEY,
    address   varchar(252) NOT NULL,          -- the local part
    quota     integer NOT NULL DEFAULT 0,     -- MB, 0 = unlimited
    domain_id integer NOT NULL REFERENCES admin_domain (id)
);

CREATE TABLE IF NOT EXISTS admin_quota (
    username varchar(254) PRIMARY KEY,        -- local@domain
    bytes    bigint NOT NULL DEFAULT 0,
    messages integer NOT NULL DEFAULT 0
);
