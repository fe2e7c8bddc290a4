//! RawaLite's host: it runs application screens ("renderers") as WebAssembly
//! components that can touch nothing but the `db`, `paths` and `session`
//! capabilities their manifest grants.
//!
//! ## Layers
//!
//! Each module imports only modules listed before it, and the parts of a
//! module import one another in no circle (`cargo xtask test` checks both;
//! docs/DESIGN-NOTES.md's "Layout" says more):
//!
//! <!-- layers -->
//! blocking units utc net data_dir limits log_queue metrics
//! auth
//! capabilities runtime
//! database backup
//! manifest app
//! server
//! <!-- /layers -->
//!
//! - values: [`units`] and [`net`] (sizes, intervals, networks and
//!   addresses as the manifest writes them), [`data_dir`] (the data
//!   directory's lock, its temporary and staging names, private
//!   directories), [`limits`] (what a request may use), [`utc`], the log
//!   queue and [`metrics`];
//! - [`auth`]: users, passwords, sessions and the sign-in limiter, over a
//!   [`auth::store::Store`] a backend implements;
//! - [`capabilities`]: one module per capability with its grant and state
//!   (the WIT bindings and their error type too); [`runtime`]: the engine,
//!   the compile cache, the import check, one fresh store per request;
//! - [`database`]: the one seam every backend sits behind, and the
//!   backends (SQLite, PostgreSQL), each in a folder of its own;
//!   [`backup`]: backups of a data directory and their restore;
//! - [`manifest`] reads `rawalite.toml`; [`app`]: a manifest's guests
//!   loaded with their grants, on its database;
//! - [`server`]: `rawalite serve`.

#![warn(unreachable_pub)]

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
