//! virt_mail: a local delivery agent that stores mail with SQL.
//!
//! The modules follow a delivery's data path: command line (`args`) → configuration
//! (`ini`, `config`) → envelope → message → macros → backend (Verify, Deliver) → fallback →
//! exit code. `app` strings them together; `main.rs` only parses, runs and exits, with
//! `arena` as the process's allocator.

pub mod app;
pub mod arena;
pub mod args;
pub mod backend;
pub mod check;
pub mod config;
pub mod envelope;
pub mod error;
pub mod exit;
pub mod fallback;
pub mod headers;
pub mod ini;
pub mod macros;
pub mod maildir;
pub mod message;
pub mod quota;
pub mod report;
pub mod signals;
pub mod spool;
