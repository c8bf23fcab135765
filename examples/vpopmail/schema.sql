-- vpopmail's MySQL table (one table for all domains, as vpopmail creates it), for
-- virt_mail delivering into the users' Maildirs with vpopmail's hard quota.
-- pw_shell holds the quota as vpopmail writes it: 'NOQUOTA' or '<bytes>S[,<count>C]'.
CREATE TABLE IF NOT EXISTS vpopmail (
    pw_name         CHAR(32) NOT NULL,
    pw_domain       CHAR(96) NOT NULL,
    pw_passwd       CHAR(40),
    pw_uid          INT,
    pw_gid          INT,
    pw_gecos        CHAR(48),
    pw_dir          CHAR(160),
    pw_shell        CHAR(20),
    pw_clear_passwd CHAR(16),
    PRIMARY KEY (pw_name, pw_domain)
);
