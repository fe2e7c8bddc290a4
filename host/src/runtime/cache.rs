//! Compiled components, kept in memory for the process and on disk across
//! restarts. The key is the component's SHA-256 together with the engine's
//! compatibility hash (wasmtime version, target, settings), so a changed
//! component or engine configuration never loads a stale artifact.
//!
//! The directory is trusted like the binary itself: wasmtime runs what it
//! finds there as native code. It is created with mode 0700, and used only
//! if it is a real directory owned by this user that no one else may write,
//! under directories only root or this user may change (a sticky one like
//! `/tmp` is fine); otherwise the cache stays in memory and the log says
//! why. It is opened once; each artifact is opened relative to it without
//! following a link, and used only if it is a plain file of this user's
//! that no one else may read or write, with one link, whose header names
//! the component it was compiled from and the SHA-256 of what follows.

use crate::data_dir::create_private_dir;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
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

/// What starts every artifact: a tag, the SHA-256 of the component it was
/// compiled from, and the SHA-256 of the serialized component after it.
const MAGIC: &[u8; 8] = b"RWLCWSM1";
const HEADER: usize = MAGIC.len() + 32 + 32;

/// The cache directory: where it is, and the directory itself, opened once.
struct Dir {
    path: PathBuf,
    file: std::fs::File,
}

pub(crate) struct ComponentCache {
    dir: Option<Dir>,
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
        let dir = dir.and_then(|path| {
            match create_private_dir(&path).and_then(|()| open_trusted(&path)) {
                Ok(file) => Some(Dir { path, file }),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "compile cache disabled");
                    None
                }
            }
        });
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
        if let Some(component) = self.cached(engine, &hash) {
            return Ok((component, hash));
        }
        // Not under the lock: `serve` compiles several guests at once.
        let component = Component::new(engine, bytes)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        self.write_artifact(&component, &hash);
        self.lock().insert(hash, component.clone());
        Ok((component, hash))
    }

    /// [`ComponentCache::get`] when the memory or the disk cache has
    /// `bytes` compiled (milliseconds); `None` when it would compile.
    pub(crate) fn get_if_compiled(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Option<(Component, [u8; 32])> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        self.cached(engine, &hash)
            .map(|component| (component, hash))
    }

    /// The component of `hash` from memory, else from disk.
    fn cached(&self, engine: &Engine, hash: &[u8; 32]) -> Option<Component> {
        if let Some(component) = self.lock().get(hash) {
            self.from_memory.fetch_add(1, Ordering::Relaxed);
            return Some(component.clone());
        }
        let component = self.read_artifact(engine, hash)?;
        self.from_disk.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(*hash, component.clone());
        Some(component)
    }

    /// Whether `bytes` are compiled already, in memory or on disk: loading
    /// them takes milliseconds rather than seconds.
    pub(crate) fn has(&self, bytes: &[u8]) -> bool {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        self.lock().contains_key(&hash)
            || self
                .dir
                .as_ref()
                .is_some_and(|dir| dir.path.join(self.artifact_name(&hash)).is_file())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
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
            .map(|h| dir.path.join(self.artifact_name(h)))
            .collect();
        let mut artifacts: Vec<(std::time::SystemTime, u64, PathBuf)> =
            std::fs::read_dir(&dir.path)
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
        self.lock().retain(|hash, _| in_use.contains(hash));
        (removed, total)
    }

    /// The file name of the artifact of the component with SHA-256 `hash`.
    fn artifact_name(&self, hash: &[u8; 32]) -> String {
        let key: [u8; 32] = Sha256::new()
            .chain_update(hash)
            .chain_update(self.engine_key)
            .finalize()
            .into();
        format!("{}.cwasm", hex::encode(key))
    }

    /// The cached artifact of the component with SHA-256 `hash`, if there
    /// is one that can be trusted.
    fn read_artifact(&self, engine: &Engine, hash: &[u8; 32]) -> Option<Component> {
        let dir = self.dir.as_ref()?;
        let name = self.artifact_name(hash);
        let unusable = |why: &dyn std::fmt::Display| {
            tracing::warn!(artifact = %name, why = %why, "ignoring a compiled artifact; compiling instead");
            None
        };
        let mut file = match open_artifact(&dir.file, &name) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(e) => return unusable(&e),
        };
        if let Err(why) = private_file(&file) {
            return unusable(&why);
        }
        let mut bytes = Vec::new();
        if let Err(e) = file.read_to_end(&mut bytes) {
            return unusable(&e);
        }
        let Some((header, payload)) = bytes.split_at_checked(HEADER) else {
            return unusable(&"it is too short");
        };
        let digest: [u8; 32] = Sha256::digest(payload).into();
        if &header[..MAGIC.len()] != MAGIC
            || header[MAGIC.len()..MAGIC.len() + 32] != hash[..]
            || header[MAGIC.len() + 32..] != digest[..]
        {
            return unusable(&"it was not compiled from this component, or it changed since");
        }
        // SAFETY: the artifact was written by `write_artifact` below from a
        // component this engine configuration compiled (the key includes the
        // engine's compatibility hash), is bound to this component by its
        // header and checksum, and was read from a private file in a
        // directory only this user can write. wasmtime additionally checks
        // its own header and refuses another version or configuration.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(component) => Some(component),
            Err(e) => unusable(&e),
        }
    }

    /// Best effort: a failed write only costs a compile at the next start.
    fn write_artifact(&self, component: &Component, hash: &[u8; 32]) {
        let Some(dir) = &self.dir else {
            return;
        };
        let path = dir.path.join(self.artifact_name(hash));
        let result = component
            .serialize()
            .map_err(anyhow::Error::from)
            .and_then(|payload| {
                let mut bytes = Vec::with_capacity(HEADER + payload.len());
                bytes.extend_from_slice(MAGIC);
                bytes.extend_from_slice(hash);
                bytes.extend_from_slice(&Sha256::digest(&payload));
                bytes.extend_from_slice(&payload);
                write_atomically(&path, &bytes)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled component");
        }
    }
}

/// Opens `name` in `dir` for reading, never through a link; `None` when
/// there is no such file.
fn open_artifact(dir: &std::fs::File, name: &str) -> std::io::Result<Option<std::fs::File>> {
    let name = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: a live directory descriptor and a NUL-terminated name; the
    // descriptor returned is ours to own.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(Some(unsafe { std::fs::File::from_raw_fd(fd) }))
}

/// Whether an opened artifact is a plain file of this user's, readable and
/// writable by no one else, with no other name.
fn private_file(file: &std::fs::File) -> Result<(), &'static str> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|_| "it cannot be read")?;
    if !meta.is_file() {
        return Err("it is not a plain file");
    }
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err("it belongs to another user");
    }
    if meta.mode() & 0o077 != 0 {
        return Err("others may read or write it");
    }
    if meta.nlink() != 1 {
        return Err("it has another name (a hard link)");
    }
    Ok(())
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

/// Opens `dir` if it may hold native code this process will run: a
/// directory (not a link to one) owned by this user, writable by no one
/// else, whose every ancestor belongs to root or this user and is writable
/// by no one else unless sticky (so no one else can rename it away).
fn open_trusted(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let refuse = |why: String| Err(std::io::Error::other(why));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|e| {
            std::io::Error::other(format!(
                "it cannot be opened as a directory (a symbolic link is not trusted): {e}"
            ))
        })?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return refuse("it belongs to another user".into());
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return refuse("others may write to it; chmod go-w it to use it".into());
    }
    for ancestor in std::fs::canonicalize(dir)?.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)?;
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if (meta.uid() != 0 && meta.uid() != me) || (mode & 0o022 != 0 && !sticky) {
            return refuse(format!(
                "{} above it may be changed by another user",
                ancestor.display()
            ));
        }
    }
    Ok(file)
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
