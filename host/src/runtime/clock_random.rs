//! The bridge's `clock` and `random` interfaces: the time and fresh
//! entropy on every call, for guests whose WASI is stubbed out at build
//! time (Python) and whose own clock and generators would otherwise hold
//! the build's values. They grant nothing, so they are linked for every
//! guest and never audited, like WASI's clocks and random for Rust guests.
//!
//! A test may pin both ([`Pinned`]): then the bridge and WASI's wall clock
//! say one fixed time, and every generator is seeded, so a page that
//! prints the date or a random id renders the same bytes every run.

use super::GuestState;
use crate::capabilities::rawalite::bridge::{clock, random};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::clocks::HostWallClock;

/// The most bytes one `random.bytes` call returns.
const MAX_BYTES: u32 = 64 << 10;

/// A fixed time, a seed, or both, for a guest's renders (`rawalite test`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pinned {
    /// Microseconds since the Unix epoch.
    pub now_micros: Option<u64>,
    pub seed: Option<u64>,
}

/// One render's pinned time and its generator, seeded afresh per render.
pub(crate) struct PinnedState {
    pub(crate) pinned: Pinned,
    rng: Option<StdRng>,
}

impl Pinned {
    pub(crate) fn state(self) -> PinnedState {
        PinnedState {
            pinned: self,
            rng: self.seed.map(StdRng::seed_from_u64),
        }
    }

    /// WASI's wall clock, and its generators seeded from this seed (apart
    /// from the bridge's, so the two do not repeat each other's bytes).
    pub(crate) fn pin(self, wasi: &mut wasmtime_wasi::WasiCtxBuilder) {
        if let Some(now) = self.now_micros {
            wasi.wall_clock(FixedClock(Duration::from_micros(now)));
        }
        if let Some(seed) = self.seed {
            let seed = seed.wrapping_add(1);
            wasi.secure_random(StdRng::seed_from_u64(seed))
                .insecure_random(StdRng::seed_from_u64(seed.wrapping_add(1)))
                .insecure_random_seed(u128::from(seed));
        }
    }
}

struct FixedClock(Duration);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    clock::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    random::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)
}

impl clock::Host for GuestState {
    fn now_micros(&mut self) -> wasmtime::Result<u64> {
        if let Some(now) = self.pinned.as_ref().and_then(|p| p.pinned.now_micros) {
            return Ok(now);
        }
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
        if let Some(rng) = self.pinned.as_mut().and_then(|p| p.rng.as_mut()) {
            rng.fill_bytes(&mut bytes);
            return Ok(bytes);
        }
        getrandom::fill(&mut bytes)
            .map_err(|e| wasmtime::Error::msg(format!("the host has no entropy: {e}")))?;
        Ok(bytes)
    }
}
