//! RawaLite's host: it runs application screens ("renderers") as WebAssembly
//! components that can touch nothing but the `db`, `paths` and `session`
//! capabilities their manifest grants.
//!
//! - [`runtime`]: the engine, the compile cache, the import check, and one
//!   fresh store per request;
//! - [`limits`]: what a request may use, below both the runtime and the
//!   capabilities; [`units`] and [`net`]: sizes, intervals and networks as
//!   the manifest writes them, below everything that reads one;
//!   [`data_dir`]: the data directory's lock, its temporary and staging
//!   names, private directories;
//! - [`capabilities`]: one module per capability with its grant and state;
//! - [`manifest`] reads `rawalite.toml`;
//! - [`database`]: the app's database, a SQLite file or PostgreSQL, and
//!   its migrations;
//! - [`auth`]: users, passwords and sessions;
//! - [`app`]: a manifest's guests loaded with their grants;
//! - [`server`]: `rawalite serve`;
//! - [`backup`]: backups of a data directory and their restore;
//! - [`metrics`]: Prometheus metrics for `serve --metrics`.

pub mod app;
pub mod auth;
pub mod backup;
mod blocking;
pub mod capabilities;
pub mod data_dir;
pub mod database;
pub mod limits;
pub mod log_queue;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod server;
pub mod units;
pub mod utc;
