//! The store limiter that enforces a guest's memory cap across all of a
//! component's memories and tables.

use crate::limits::Limits;
use wasmtime::ResourceLimiter;

/// The store's resource limiter. It adds up every memory and every table
/// of the instance, so a component cannot multiply its cap by declaring
/// more memories. A growth past the cap traps (rather than failing
/// `memory.grow`), and the limiter remembers it so the host can say
/// "memory limit" instead of a bare trap.
pub(crate) struct Limiter {
    memory: u64,
    /// Bytes of all memories so far.
    memory_used: u64,
    /// Elements of all tables so far.
    table_elements: usize,
    pub(crate) memory_exceeded: bool,
    /// How often a memory grew after it was made: each `memory.grow` costs
    /// a request two `mprotect`s (one now, one when the slot is reused).
    pub(crate) grows: u32,
}

/// Enough for a component's core instances, tables and memories, with room
/// to spare; a guest that needs more is doing something else.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 8;
/// Table elements across all tables (a few bytes of host memory each).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            memory: limits.memory,
            memory_used: 0,
            table_elements: 0,
            memory_exceeded: false,
            grows: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used + desired.saturating_sub(current) as u64;
        if total > self.memory {
            self.memory_exceeded = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.memory);
        }
        self.memory_used = total;
        // A memory is made with `current` 0; later calls are grows.
        if current > 0 && desired > current {
            self.grows += 1;
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_elements + desired.saturating_sub(current);
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Store;
    use wasmtime::component::{Component, Linker};

    /// A component of `n` core modules, each with one memory of `mib` MiB.
    fn memories(n: usize, mib: usize) -> Vec<u8> {
        let pages = mib * 16;
        let modules: String = (0..n)
            .map(|i| {
                format!("(core module $m{i} (memory {pages})) (core instance (instantiate $m{i}))")
            })
            .collect();
        wat::parse_str(format!("(component {modules})")).unwrap()
    }

    fn instantiate(bytes: &[u8]) -> (wasmtime::Result<()>, bool) {
        let engine = super::super::engine::new_engine().unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let mut store = Store::new(&engine, Limiter::new(&Limits::default()));
        store.limiter(|l| l);
        let result = Linker::new(&engine)
            .instantiate(&mut store, &component)
            .map(drop);
        (result, store.data().memory_exceeded)
    }

    #[test]
    fn the_memory_cap_holds_across_all_memories() {
        let (one, exceeded) = instantiate(&memories(1, 40));
        assert!(one.is_ok() && !exceeded, "{one:?}");
        // Two memories of 40 MiB each are 80 MiB: over the 64 MiB cap,
        // although each alone is under it.
        let (two, exceeded) = instantiate(&memories(2, 40));
        assert!(two.is_err() && exceeded, "{two:?}");
    }
}
