//! Per-request limits and the store limiter that enforces the memory cap.
//! Every limit has a default; the manifest may change them per guest.

use std::time::Duration;
use wasmtime::ResourceLimiter;

/// What one request of one guest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory, per memory.
    pub memory: u64,
    /// Wall-clock time for the whole request, host calls included.
    pub timeout: Duration,
    /// Bytes of the response: body plus headers.
    pub response_bytes: u64,
    /// Host resource handles (open roots, streams) alive at once.
    pub handles: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(1),
            response_bytes: 8 << 20,
            handles: 64,
        }
    }
}

/// The store's resource limiter. A growth past the cap traps (rather than
/// failing `memory.grow`), and the limiter remembers it so the host can say
/// "memory limit" instead of a bare trap.
pub(crate) struct Limiter {
    memory: u64,
    pub(crate) memory_exceeded: bool,
}

/// Enough for a component's core instances, tables and memories, with room
/// to spare; a guest that needs more is doing something else.
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 32;
const MAX_MEMORIES: usize = 8;
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            memory: limits.memory,
            memory_exceeded: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory {
            self.memory_exceeded = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.memory);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
