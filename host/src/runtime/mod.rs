//! The wasmtime side of the host: one engine per process, each component
//! compiled once (and cached on disk), and a fresh sandboxed store per
//! request with its memory cap, deadline and response cap. Refuses, before
//! compiling it, any component that imports more than the bridge and the
//! inert WASI subset.

mod cache;
mod clock_random;
mod engine;
mod guest;
mod imports;
mod limits;
mod log;
mod swap;
mod wasi;

pub use crate::limits::Limits;
pub use cache::{CacheStats, default_cache_dir};
pub use clock_random::Pinned;
pub use engine::MAX_MEMORY;
pub use guest::{Guest, Outcome, Rendered, Stopped};
pub use imports::{CheckedImport, Item, Surface};
pub use swap::Swap;

use crate::capabilities::{self, Grants, RendererPre};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::WasiCtx;

/// Everything one request's store holds: the WASI context, the host
/// resource table, the limiter, and each capability's request state.
pub struct GuestState {
    /// Built on the guest's first WASI call: most requests make none, and
    /// building one (its random generators seeded) was ~3% of a hello.
    pub(crate) wasi: Option<WasiCtx>,
    /// What the guest printed, through WASI or the bridge's `log`.
    pub(crate) output: wasi::GuestOutput,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: limits::Limiter,
    pub(crate) call: capabilities::Call,
    pub(crate) db: capabilities::db::State,
    pub(crate) paths: capabilities::paths::State,
    pub(crate) session: capabilities::session::State,
    /// The time and the generator when a test pinned them ([`Pinned`]).
    pub(crate) pinned: Option<clock_random::PinnedState>,
}

impl capabilities::States for GuestState {
    fn db(&mut self) -> capabilities::db::View<'_> {
        capabilities::db::View {
            state: &mut self.db,
            call: &mut self.call,
        }
    }

    fn paths(&mut self) -> capabilities::paths::View<'_> {
        capabilities::paths::View {
            state: &mut self.paths,
            table: &mut self.table,
            call: &mut self.call,
        }
    }

    fn session(&mut self) -> capabilities::session::View<'_> {
        capabilities::session::View {
            state: &mut self.session,
            call: &mut self.call,
        }
    }
}

/// Why a component could not be loaded. Each message is one line that says
/// what to do next.
#[derive(Debug, Error)]
pub enum LoadError {
    // The cause follows in the error chain (`{e:#}`), not repeated here.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a WebAssembly file")]
    NotWasm { path: PathBuf },
    #[error(
        "{path} is a core WebAssembly module, not a component: build it for wasm32-wasip2 (cargo build --target wasm32-wasip2)"
    )]
    CoreModule { path: PathBuf },
    #[error("{path} is not a valid component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} is refused: it imports {}", .refused.join(", "))]
    ForbiddenImports { path: PathBuf, refused: Vec<String> },
    #[error(
        "{path} is not a RawaLite renderer (it must export `render` of rawalite:bridge/renderer@0.1.0): {reason}"
    )]
    NotARenderer { path: PathBuf, reason: String },
}

/// The process's runtime: the engine, its epoch ticker, the compile cache
/// and the linker every guest is instantiated against. A clone shares all
/// of them (`rawalite test` opens an app per case on one runtime).
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: Arc<cache::ComponentCache>,
    _ticker: Arc<engine::Ticker>,
}

impl Runtime {
    /// A runtime whose compiled components are cached in `cache_dir`
    /// (in memory only when `None`).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        log::add_to_linker(&mut linker)?;
        clock_random::add_to_linker(&mut linker)?;
        capabilities::add_to_linker(&mut linker)?;
        Ok(Runtime {
            cache: Arc::new(cache::ComponentCache::new(&engine, cache_dir)),
            _ticker: Arc::new(engine::Ticker::start(&engine)?),
            engine,
            linker,
        })
    }

    /// Keeps the compile cache within `cap` bytes, removing the artifacts of
    /// components not in `in_use` (by SHA-256), oldest first. Returns how
    /// many were removed and the bytes left.
    pub fn prune_cache(&self, in_use: &[[u8; 32]], cap: u64) -> (usize, u64) {
        self.cache.prune(in_use, cap)
    }

    /// How many components were compiled, or found already compiled.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Checks the component at `path` as `load` does before compiling (it
    /// is a component whose imports are all allowed); returns whether it is
    /// compiled already, so that loading it is quick.
    pub fn check(&self, path: &Path) -> Result<bool, LoadError> {
        let bytes = read_component(path)?;
        check_component(path, &bytes)?;
        Ok(self.cache.has(&bytes))
    }

    /// Loads the component at `path` as the guest `name`: checks that it is
    /// a component, checks its imports, compiles it (or finds it compiled),
    /// and pre-instantiates it against the bridge.
    pub fn load(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
        grants: Grants,
    ) -> Result<Guest, LoadError> {
        let bytes = read_component(path)?;
        let surface = check_component(path, &bytes)?;
        let compiled = self
            .cache
            .get(&self.engine, &bytes)
            .map_err(|e| LoadError::Invalid {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        self.load_compiled(name, path, compiled, surface, limits, grants)
    }

    /// `load` when the component is compiled already (milliseconds);
    /// `None`, after the same checks, when it would have to be compiled.
    pub fn load_if_compiled(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
        grants: Grants,
    ) -> Result<Option<Guest>, LoadError> {
        let bytes = read_component(path)?;
        let surface = check_component(path, &bytes)?;
        let Some(compiled) = self.cache.get_if_compiled(&self.engine, &bytes) else {
            return Ok(None);
        };
        self.load_compiled(name, path, compiled, surface, limits, grants)
            .map(Some)
    }

    /// Pre-instantiates the compiled component (and its SHA-256) against
    /// the bridge.
    fn load_compiled(
        &self,
        name: &str,
        path: &Path,
        (component, hash): (wasmtime::component::Component, [u8; 32]),
        surface: Surface,
        limits: Limits,
        grants: Grants,
    ) -> Result<Guest, LoadError> {
        let not_renderer = |e: wasmtime::Error| LoadError::NotARenderer {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(not_renderer)?;
        let pre = RendererPre::new(pre).map_err(not_renderer)?;
        Ok(Guest::new(
            Arc::from(name),
            pre,
            limits,
            grants,
            hash,
            surface,
        ))
    }
}

fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Checks the header and the imports of a component binary, the same check
/// `load` and `rawalite inspect` use. Refused imports are an error here.
fn check_component(path: &Path, bytes: &[u8]) -> Result<Surface, LoadError> {
    let surface = read_surface(path, bytes)?;
    let refused: Vec<String> = surface.refused().map(ToString::to_string).collect();
    if refused.is_empty() {
        Ok(surface)
    } else {
        Err(LoadError::ForbiddenImports {
            path: path.to_owned(),
            refused,
        })
    }
}

/// Reads a component's imports and exports, each import with its verdict.
pub fn read_surface(path: &Path, bytes: &[u8]) -> Result<Surface, LoadError> {
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    Surface::read(bytes).map_err(|e| LoadError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}
