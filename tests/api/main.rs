//! The library and the guests: the runtime, each capability on SQLite
//! and PostgreSQL, hostile guests, and the Python and TypeScript SDKs.
//!
//! One test binary per area, each module one suite: `cargo xtask test
//! --test api -- db::` runs one suite. Fewer binaries link faster.

#[path = "../common/mod.rs"]
mod common;

mod db;
mod hostile;
mod paths;
mod postgres;
mod postgres_tls;
mod python;
mod runtime;
mod session;
mod typescript;
