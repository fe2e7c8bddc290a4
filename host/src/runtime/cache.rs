//! Compiled components, kept in memory for the process and on disk across
//! restarts. The key is the component's SHA-256 together with the engine's
//! compatibility hash (wasmtime version, target, settings), so a changed
//! component or engine configuration never loads a stale artifact.
//!
//! The directory is trusted like the binary itself: wasmtime runs what it
//! finds there as native code. It is created with mode 0700, and used only
//! if it is a real directory owned by this user that no one else may write;
//! otherwise the cache stays in memory and the log says why.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How often components were compiled, and how often a compiled artifact was
/// found instead (in memory or on disk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub compiled: u64,
    pub from_disk: u64,
    pub from_memory: u64,
}

pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: [u8; 32],
    loaded: Mutex<HashMap<[u8; 32], Component>>,
    compiled: AtomicU64,
    from_disk: AtomicU64,
    from_memory: AtomicU64,
}

impl ComponentCache {
    /// A cache in `dir`, or in memory only when `dir` is `None` or cannot be
    /// created (the host still works, it just compiles at every start).
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(
            |dir| match create_private_dir(&dir).and_then(|()| trusted(&dir)) {
                Ok(()) => Some(dir),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "compile cache disabled");
                    None
                }
            },
        );
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: hasher.0.finalize().into(),
            loaded: Mutex::default(),
            compiled: AtomicU64::new(0),
            from_disk: AtomicU64::new(0),
            from_memory: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            from_disk: self.from_disk.load(Ordering::Relaxed),
            from_memory: self.from_memory.load(Ordering::Relaxed),
        }
    }

    /// The compiled form of `bytes`, compiling only when neither the memory
    /// nor the disk cache has it. Returns the component and its SHA-256.
    pub(crate) fn get(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, [u8; 32])> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(component) = loaded.get(&hash) {
            self.from_memory.fetch_add(1, Ordering::Relaxed);
            return Ok((component.clone(), hash));
        }
        let path = self.artifact_path(&hash);
        let component = match path.as_deref().and_then(|p| self.read_artifact(engine, p)) {
            Some(component) => {
                self.from_disk.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let component = Component::new(engine, bytes)?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                if let Some(path) = &path {
                    self.write_artifact(&component, path);
                }
                component
            }
        };
        loaded.insert(hash, component.clone());
        Ok((component, hash))
    }

    /// Removes artifacts of components not in `in_use`, oldest first, until
    /// the directory holds at most `cap` bytes; forgets them in memory too.
    /// Returns how many were removed and the bytes left.
    pub(crate) fn prune(&self, in_use: &[[u8; 32]], cap: u64) -> (usize, u64) {
        let Some(dir) = &self.dir else {
            return (0, 0);
        };
        let keep: Vec<PathBuf> = in_use
            .iter()
            .filter_map(|h| self.artifact_path(h))
            .collect();
        let mut artifacts: Vec<(std::time::SystemTime, u64, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
        artifacts.sort();
        let mut removed = 0;
        for (_, len, path) in artifacts {
            if total <= cap {
                break;
            }
            if keep.contains(&path) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                removed += 1;
            }
        }
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|hash, _| in_use.contains(hash));
        (removed, total)
    }

    fn artifact_path(&self, hash: &[u8; 32]) -> Option<PathBuf> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(hash)
            .chain_update(self.engine_key)
            .finalize()
            .into();
        Some(
            self.dir
                .as_ref()?
                .join(format!("{}.cwasm", hex::encode(key))),
        )
    }

    fn read_artifact(&self, engine: &Engine, path: &Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the artifact was written by `write_artifact` below from a
        // component this engine configuration compiled (the key includes the
        // engine's compatibility hash), into a directory only this user can
        // write. wasmtime additionally checks the header and refuses an
        // artifact from another version or configuration.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled artifact");
                None
            }
        }
    }

    /// Best effort: a failed write only costs a compile at the next start.
    fn write_artifact(&self, component: &Component, path: &Path) {
        let result = component
            .serialize()
            .map_err(anyhow::Error::from)
            .and_then(|bytes| write_atomically(path, &bytes));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled component");
        }
    }
}

/// Writes to a temporary file beside `path` and renames it into place, so a
/// reader (another process starting at the same time) never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    Ok(())
}

/// Whether `dir` may hold native code this process will run: a directory
/// (not a link to one) owned by this user, writable by no one else.
fn trusted(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: &str| Err(std::io::Error::other(why.to_owned()));
    if !meta.is_dir() {
        return refuse("it is not a directory (a symbolic link is not trusted)");
    }
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return refuse("it belongs to another user");
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return refuse("others may write to it; chmod go-w it to use it");
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Feeds `Hash` input into SHA-256, so the engine key is stable across runs
/// (unlike `DefaultHasher`, whose algorithm may change between Rust versions).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is used")
    }
}

/// The default cache directory: `$RAWALITE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/rawalite`, else `~/.cache/rawalite`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RAWALITE_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("rawalite"))
}
