//! The bridge's `clock` and `random` interfaces: the time and fresh
//! entropy on every call, for guests whose WASI is stubbed out at build
//! time (Python) and whose own clock and generators would otherwise hold
//! the build's values. They grant nothing, so they are linked for every
//! guest and never audited, like WASI's clocks and random for Rust guests.

use super::GuestState;
use crate::capabilities::rawalite::bridge::{clock, random};
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::component::{HasSelf, Linker};

/// The most bytes one `random.bytes` call returns.
const MAX_BYTES: u32 = 64 << 10;

pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    clock::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    random::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)
}

impl clock::Host for GuestState {
    fn now_micros(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64))
    }
}

impl random::Host for GuestState {
    fn bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_BYTES {
            wasmtime::bail!("random.bytes asked for {len} bytes; at most {MAX_BYTES} per call");
        }
        let mut bytes = vec![0; len as usize];
        getrandom::fill(&mut bytes)
            .map_err(|e| wasmtime::Error::msg(format!("the host has no entropy: {e}")))?;
        Ok(bytes)
    }
}
