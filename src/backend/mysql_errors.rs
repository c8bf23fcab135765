//! MySQL/MariaDB server and client error numbers after which the same delivery may work
//! later: one list for the native backend and for Connector/ODBC, which reports most server
//! errors under the catch-all SQLSTATE `HY000` (and some under `42000`), so the number
//! decides.

/// Whether error number `code` says that trying again later can succeed.
pub fn is_transient(code: u32) -> bool {
    matches!(
        code,
        // lock wait timeout, deadlock, too many active transactions, NOWAIT lock
        1205 | 1213 | 1637 | 3572
        // serialization failure ("Record has changed since last read": MariaDB's
        // innodb_snapshot_isolation, on by default from 11.6), table definition changed
        // (retry the transaction), rolled back by group replication at COMMIT
        | 1020 | 1412 | 3101
        // too many connections / user connections / resource limits
        | 1040 | 1203 | 1226
        // server shutting down, connection aborted or killed
        | 1053 | 1077 | 1079 | 1080 | 1152
        // read-only server / fail-over in progress, conflicting global read lock (backups),
        // a Galera node not yet synced ("WSREP has not yet prepared node")
        | 1290 | 1836 | 1792 | 1223 | 1047
        // disk or table full, storage engine errors, out of memory
        | 1021 | 1114 | 1030 | 1037 | 1038 | 1041
        // statement time limits, query interrupted, connection killed
        | 1969 | 3024 | 1317 | 1927
        // network read/write errors reported by the server; COMMIT/ROLLBACK failed
        | 1158 | 1159 | 1160 | 1161 | 1180 | 1181
        // a packet (message) over max_allowed_packet: usually seen as a reset connection,
        // so classified the same; waits for the administrator (or MaxMessageSize)
        | 1153
        // prepared statement must be re-prepared (table changed meanwhile)
        | 1615
        // MySQL 8: disconnected for inactivity
        | 4031
        // client-side codes, as libmysqlclient and proxies report them: cannot connect,
        // server gone away, lost connection
        | 2002 | 2003 | 2006 | 2013 | 2055
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_failures_and_retryable_transactions_are_transient() {
        // 1020: MariaDB's snapshot isolation conflict; 1412, 3101: retry the transaction.
        for code in [1020, 1412, 3101, 1205, 1213, 1226, 2006] {
            assert!(is_transient(code), "{code}");
        }
        // Data and statement errors stay permanent.
        for code in [1048, 1054, 1062, 1064, 1105, 1146, 1366, 1406, 0] {
            assert!(!is_transient(code), "{code}");
        }
    }
}
