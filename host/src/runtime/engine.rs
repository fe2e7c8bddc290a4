//! The process's one wasmtime `Engine`: Cranelift, the pooling instance
//! allocator (instances, memories, tables and the stacks guests run on),
//! and epoch interruption driven by a background ticker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy,
};

/// How often the ticker advances the epoch: the granularity of deadlines,
/// and how long a guest runs before it yields to the async runtime.
pub(super) const TICK: Duration = Duration::from_millis(2);

/// How many guest instances may be alive at once across the process.
/// Each slot reserves address space, not memory.
const INSTANCE_SLOTS: u32 = 256;

/// The largest linear memory any guest may be granted. Per-guest limits
/// (default 64 MiB) are enforced below this by the store's limiter.
pub const MAX_MEMORY: u64 = 4 << 30;

pub(crate) fn new_engine() -> anyhow::Result<Engine> {
    // PAGEMAP_SCAN's reset misses pages swapped out (see swap.rs).
    let swap = super::Swap::of_this_process();
    let pagemap = if swap.is_on() {
        tracing::warn!(
            why = swap.why(),
            "each sandbox is reset by memset, not PAGEMAP_SCAN (which misses pages swapped out): \
             slower; give `serve` no swap for the faster reset (systemd: MemorySwapMax=0)"
        );
        Enabled::No
    } else {
        Enabled::Auto
    };
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(INSTANCE_SLOTS)
        // A Rust guest is a few core instances (its module, the WASI
        // adapter, shims) with one or two memories and tables each.
        .max_core_instances_per_component(64)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .total_core_instances(INSTANCE_SLOTS * 8)
        .total_memories(INSTANCE_SLOTS * 2)
        .total_tables(INSTANCE_SLOTS * 4)
        // A render runs on a stack of its own (a fiber), so it can yield
        // to the async runtime at every epoch tick.
        .total_stacks(INSTANCE_SLOTS)
        .max_memory_size(MAX_MEMORY as usize)
        // Reset a reused slot in place instead of unmapping it: PAGEMAP_SCAN
        // (Linux 6.7+) finds the pages a request dirtied and only those are
        // restored, so the next request neither memsets nor page-faults.
        .pagemap_scan(pagemap)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10);

    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch every [`TICK`] until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let stopped = stop.clone();
        thread::Builder::new()
            .name("rawalite-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
