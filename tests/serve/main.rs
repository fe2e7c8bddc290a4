//! `rawalite serve` from outside: HTTP, clients, several hosts, a full
//! disk, crashes and a load balancer.
//!
//! One test binary per area, each module one suite: `cargo xtask test
//! --test serve -- hosts::` runs one suite. Fewer binaries link faster.

#[path = "../common/mod.rs"]
mod common;

mod balancer;
mod clients;
mod crash;
mod diskfull;
mod hosts;
mod ops;
mod serve;
mod watch;
