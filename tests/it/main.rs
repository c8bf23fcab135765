//! Integration tests: the real binary, driven as an MTA would drive it. One test binary
//! (faster to build), one module per concern.

mod bytes;
mod command_line;
mod common;
mod configuration;
mod delivery;
mod docs;
mod faults;
mod fallback;
mod hostile;
#[cfg(feature = "mysql")]
mod mysql;
mod original_bugs;
mod robustness;
mod scenarios;
mod stores;
mod syslog;
