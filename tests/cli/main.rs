//! The `rawalite` commands a user types: the CLI, `new`, backups and
//! restores.
//!
//! One test binary per area, each module one suite: `cargo xtask test
//! --test cli -- backup::` runs one suite. Fewer binaries link faster.

#[path = "../common/mod.rs"]
mod common;

mod backup;
mod cli;
mod new;
mod testing;
