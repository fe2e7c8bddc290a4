//! Flows in a real headless Chromium.
//!
//! One test binary per area, each module one suite: `cargo xtask test
//! --test browser -- e2e::` runs one suite. Fewer binaries link faster.

#[path = "../common/mod.rs"]
mod common;

mod e2e;
