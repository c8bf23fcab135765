//! Integration tests: the real binary, driven as an MTA would drive it. One test binary
//! (faster to build), one module per concern.

mod beyond;
mod bytes;
mod command_line;
mod common;
mod configuration;
mod delivery;
mod docs;
mod durability;
mod fallback;
mod faults;
mod hostile;
mod maildir;
mod memory;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "odbc")]
mod odbc;
mod original_bugs;
#[cfg(feature = "postgres")]
mod postgres;
mod regex_shim;
mod reliability;
mod robustness;
mod scenarios;
mod stores;
mod streaming;
mod syslog;
mod wal;
