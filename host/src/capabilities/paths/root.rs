//! One named root: a cap-std `Dir` and the file operations on it. Every
//! path is validated (relative, plain segments, bounded) and then resolved
//! by cap-std, so `..`, absolute paths and symlinks cannot leave the root.
//! Writes are atomic: a temporary file in the target's directory, written,
//! fsynced, renamed over the target, and the directory fsynced.
//!
//! The root keeps its own [`Usage`]: measured once when it is opened, then
//! updated by every change the host makes, so checking a quota costs no
//! walk of the tree. Changes are serialized on it, and a change waits for
//! the lock only until its request's deadline. A root other hosts write
//! too keeps its usage in the database they share ([`SharedUsage`]), where
//! changes on every host take turns.

use cap_std::fs::{Dir, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::data_dir::TEMP_PREFIX;

const MAX_PATH_BYTES: usize = 1024;
const MAX_SEGMENTS: usize = 32;
/// What every entry costs at least: a file system block. A directory, an
/// empty file or a link costs this much; a file its size when larger.
pub const BLOCK: u64 = 4096;

/// A file or directory in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified_ms: u64,
}

/// Why an operation failed, before it becomes a guest error.
#[derive(Debug)]
pub enum RootError {
    /// The path is malformed; says why.
    BadPath(String),
    NotFound,
    /// cap-std refused to follow the path out of the root.
    Escapes,
    IsDirectory,
    NotDirectory,
    Exists,
    NotEmpty,
    /// The write would take the root past `quota` bytes.
    Quota {
        quota: u64,
        would_be: u64,
    },
    TooLarge {
        limit: u64,
    },
    /// The change would take the root past `limit` entries.
    TooManyEntries {
        limit: u64,
    },
    /// The directory has more than `limit` entries to list.
    TooManyToList {
        limit: u64,
    },
    /// Another change held the root until the request's deadline.
    Busy,
    /// The usage hosts share could not be read or written; says why.
    Shared(String),
    /// The request's deadline came before the write was done.
    Deadline,
    /// The disk is full, or a file size limit was reached: nothing written.
    NoSpace,
    Io(io::Error),
}

impl From<io::Error> for RootError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => RootError::NotFound,
            io::ErrorKind::PermissionDenied if e.to_string().contains("outside") => {
                RootError::Escapes
            }
            io::ErrorKind::IsADirectory => RootError::IsDirectory,
            io::ErrorKind::NotADirectory => RootError::NotDirectory,
            io::ErrorKind::AlreadyExists => RootError::Exists,
            io::ErrorKind::DirectoryNotEmpty => RootError::NotEmpty,
            io::ErrorKind::StorageFull
            | io::ErrorKind::FileTooLarge
            | io::ErrorKind::QuotaExceeded => RootError::NoSpace,
            _ => RootError::Io(e),
        }
    }
}

/// What a root holds, as quotas count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Each entry's cost: its size, and at least [`BLOCK`].
    pub bytes: u64,
    /// Files, directories and links, at every depth.
    pub entries: u64,
}

/// What one guest may make of a root: the most bytes and entries it may
/// hold after a change, and the largest file.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub quota: u64,
    pub entries: u64,
    pub max_file: u64,
    /// When to stop waiting for another change to finish.
    pub deadline: Instant,
}

/// What an entry of `len` bytes costs.
fn cost(len: u64) -> u64 {
    len.max(BLOCK)
}

/// How a shared root's change is made: given the usage every host left
/// and the instant its file work must end by, the usage after it.
pub type Change<'a> = Box<dyn FnOnce(Usage, Instant) -> Result<Usage, RootError> + 'a>;

/// A root's usage kept where every host that shares the root sees it
/// (`database/postgres/root_usage.rs`).
pub trait SharedUsage: Send + Sync {
    /// Runs `change` with the usage every host has left, and keeps the
    /// usage it returns (nothing when it fails). Every other host's change
    /// of this root waits meanwhile; this one waits for theirs until
    /// `deadline`. `change` must end its file work by the instant it gets:
    /// `hold` after the lock is had, at most, so the lock is held for
    /// about that long however long the request may take.
    fn change(
        &self,
        deadline: Instant,
        hold: Duration,
        change: Change<'_>,
    ) -> Result<Usage, RootError>;
}

/// A root of the PATHS registry.
pub struct Root {
    dir: Dir,
    /// Changes are serialized on the usage, so the quota check and the
    /// change it allows cannot interleave with another. (On a shared root,
    /// the usage as this host last saw it.)
    usage: parking_lot::Mutex<Usage>,
    /// Where the usage every host sees is kept, for a shared root.
    shared: Option<Box<dyn SharedUsage>>,
}

impl Root {
    /// Opens (creating it if missing) the directory at `path`, sweeps away
    /// temporary files a crash left behind, and measures what it holds.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_with(path, None)
    }

    /// [`Root::open`] for a directory other hosts may be writing in at the
    /// same time (a data directory on a shared volume), its usage kept in
    /// `shared`. It is measured under the lock other hosts' changes take,
    /// and only temporary files older than [`IN_FLIGHT`] are swept: a
    /// younger one may be the write of a host that lost its connection to
    /// the database and with it the lock.
    pub fn open_shared(path: &Path, shared: Box<dyn SharedUsage>) -> io::Result<Self> {
        Self::open_with(path, Some(shared))
    }

    fn open_with(path: &Path, shared: Option<Box<dyn SharedUsage>>) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let usage = match &shared {
            None => sweep_and_measure(&dir, false)?,
            Some(shared) => {
                let measure = Box::new(|_, _| Ok(sweep_and_measure(&dir, true)?));
                shared
                    .change(Instant::now() + MEASURE_WAIT, MEASURE_WAIT, measure)
                    .map_err(|e| {
                        io::Error::other(format!(
                            "cannot measure it under the lock other hosts share: {e:?}"
                        ))
                    })?
            }
        };
        Ok(Root {
            dir,
            usage: parking_lot::Mutex::new(usage),
            shared,
        })
    }

    /// What the root holds now (on a shared root, as this host last saw it).
    pub fn usage(&self) -> Usage {
        *self.usage.lock()
    }

    /// The contents of the file at `path`, if it has at most `limit` bytes.
    /// Reads no more than that, even if the file grows meanwhile.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, RootError> {
        let path = check_path(path)?;
        let meta = self.dir.metadata(path)?;
        if meta.is_dir() {
            return Err(RootError::IsDirectory);
        }
        if meta.len() > limit {
            return Err(RootError::TooLarge { limit });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        self.dir
            .open(path)?
            .take(limit + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(RootError::TooLarge { limit });
        }
        Ok(bytes)
    }

    /// Opens the file at `path` for reading, with its metadata: for a file
    /// the host serves to a client.
    pub fn open_file(&self, path: &str) -> Result<(std::fs::File, std::fs::Metadata), RootError> {
        let path = check_path(path)?;
        let file = self.dir.open(path)?.into_std();
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(RootError::IsDirectory);
        }
        Ok((file, meta))
    }

    /// The length and modification time of the file at `path`.
    pub fn stat(&self, path: &str) -> Result<(u64, std::time::SystemTime), RootError> {
        let meta = self.dir.metadata(check_path(path)?)?;
        if meta.is_dir() {
            return Err(RootError::IsDirectory);
        }
        Ok((meta.len(), meta.modified()?.into_std()))
    }

    /// Runs `change` with what the root holds, once the root's other
    /// changes (on every host sharing it) are done, waiting no later than
    /// `deadline`; keeps the usage it returns. `change` gets the instant
    /// its file work must end by: on a shared root, [`HOLD`] after the
    /// lock every host waits on is had, at most.
    fn change<T>(
        &self,
        deadline: Instant,
        change: impl FnOnce(Usage, Instant) -> Result<(T, Usage), RootError>,
    ) -> Result<T, RootError> {
        let mut usage = self.usage.try_lock_until(deadline).ok_or(RootError::Busy)?;
        let (value, after) = match &self.shared {
            None => change(*usage, deadline)?,
            Some(shared) => {
                let mut value = None;
                let after = shared.change(
                    deadline,
                    HOLD,
                    Box::new(|usage, until| {
                        let (v, after) = change(usage, until)?;
                        value = Some(v);
                        Ok(after)
                    }),
                )?;
                (value.ok_or(RootError::Busy)?, after)
            }
        };
        *usage = after;
        Ok(value)
    }

    /// Replaces the file at `path` with `contents`, all or nothing, if the
    /// root stays within its bounds.
    pub fn write(&self, path: &str, contents: &[u8], bounds: &Bounds) -> Result<(), RootError> {
        let path = check_path(path)?;
        if contents.len() as u64 > bounds.max_file {
            return Err(RootError::TooLarge {
                limit: bounds.max_file,
            });
        }
        let (parent, name) = split_parent(path);
        self.change(bounds.deadline, |usage, until| {
            let dir = match parent {
                Some(parent) => self.dir.open_dir(parent)?,
                None => self.dir.try_clone()?,
            };
            // Follows a symlink inside the root; one that leads out is
            // refused here. A write never goes through a link: the rename
            // replaces the link itself.
            match dir.metadata(name) {
                Ok(meta) if meta.is_dir() => return Err(RootError::IsDirectory),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            // What the name costs now (a link it replaces costs a block).
            let old = match dir.symlink_metadata(name) {
                Ok(meta) if meta.is_file() => Some(cost(meta.len())),
                Ok(_) => Some(BLOCK),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            let after = Usage {
                bytes: usage.bytes - old.unwrap_or(0).min(usage.bytes)
                    + cost(contents.len() as u64),
                entries: usage.entries + u64::from(old.is_none()),
            };
            check(&after, bounds)?;
            write_atomically(&dir, name, contents, until)?;
            Ok(((), after))
        })
    }

    /// The entries of the directory at `path` (the root when empty), at
    /// most `limit` of them.
    pub fn list(&self, path: &str, limit: u64) -> Result<Vec<Entry>, RootError> {
        let dir = if path.is_empty() {
            self.dir.try_clone()?
        } else {
            let path = check_path(path)?;
            if !self.dir.metadata(path)?.is_dir() {
                return Err(RootError::NotDirectory);
            }
            self.dir.open_dir(path)?
        };
        let mut entries = Vec::new();
        for entry in dir.entries()? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            if entries.len() as u64 == limit {
                return Err(RootError::TooManyToList { limit });
            }
            // Follows symlinks inside the root; one that leads out is skipped.
            let Ok(meta) = dir.metadata(&name) else {
                continue;
            };
            entries.push(Entry {
                name,
                is_dir: meta.is_dir(),
                size: if meta.is_dir() { 0 } else { meta.len() },
                modified_ms: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Removes a file, or a directory that is empty.
    pub fn remove(&self, path: &str, deadline: Instant) -> Result<(), RootError> {
        let path = check_path(path)?;
        self.change(deadline, |usage, _| {
            let meta = self.dir.symlink_metadata(path)?;
            if meta.is_dir() {
                self.dir.remove_dir(path)?;
            } else {
                self.dir.remove_file(path)?;
            }
            let freed = if meta.is_file() {
                cost(meta.len())
            } else {
                BLOCK
            };
            let after = Usage {
                bytes: usage.bytes.saturating_sub(freed),
                entries: usage.entries.saturating_sub(1),
            };
            Ok(((), after))
        })
    }

    /// Creates a directory, if the root stays within its bounds.
    pub fn create_dir(&self, path: &str, bounds: &Bounds) -> Result<(), RootError> {
        let path = check_path(path)?;
        self.change(bounds.deadline, |usage, _| {
            let after = Usage {
                bytes: usage.bytes + BLOCK,
                entries: usage.entries + 1,
            };
            check(&after, bounds)?;
            self.dir.create_dir(path)?;
            Ok(((), after))
        })
    }
}

/// Whether a root holding `after` is within `bounds`.
fn check(after: &Usage, bounds: &Bounds) -> Result<(), RootError> {
    if after.bytes > bounds.quota {
        return Err(RootError::Quota {
            quota: bounds.quota,
            would_be: after.bytes,
        });
    }
    if after.entries > bounds.entries {
        return Err(RootError::TooManyEntries {
            limit: bounds.entries,
        });
    }
    Ok(())
}

/// Checks a guest's path: relative, plain segments only, bounded. These
/// checks give clear errors; safety comes from cap-std.
fn check_path(path: &str) -> Result<&str, RootError> {
    let bad = |why: &str| Err(RootError::BadPath(why.to_owned()));
    if path.is_empty() {
        return bad("the path is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("the path is longer than 1024 bytes");
    }
    if path.chars().any(char::is_control) {
        return bad("the path contains a control character");
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return bad("the path must be relative to the root");
    }
    if path.contains('\\') {
        return bad("use `/` to separate path segments");
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return bad("the path has more than 32 segments");
    }
    for segment in segments {
        match segment {
            "" => return bad("the path has an empty segment"),
            "." | ".." => return bad("`.` and `..` are not allowed in a path"),
            s if s.starts_with(TEMP_PREFIX) => {
                return bad("names starting with `.rawalite-tmp-` are reserved");
            }
            _ => {}
        }
    }
    Ok(path)
}

fn split_parent(path: &str) -> (Option<&str>, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, path),
    }
}

/// How long a change of a shared root may write while every host's changes
/// of it wait: a file is written at disk speed, so a write that takes
/// longer is stuck (or its host stopped), and the others go on.
const HOLD: std::time::Duration = std::time::Duration::from_secs(2);

/// How much is written between two looks at the deadline.
const WRITE_CHUNK: usize = 1 << 20;

/// Writes `contents` to a temporary file, syncs it and renames it over
/// `name`. A write still going at `deadline` stops (between chunks) and
/// leaves the old file as it was.
fn write_atomically(
    dir: &Dir,
    name: &str,
    contents: &[u8],
    deadline: Instant,
) -> Result<(), RootError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let temp = format!("{TEMP_PREFIX}{:016x}", rand_suffix());
    let result = (|| {
        let mut file = dir.open_with(&temp, &options)?;
        for chunk in contents.chunks(WRITE_CHUNK) {
            if Instant::now() >= deadline {
                return Err(RootError::Deadline);
            }
            file.write_all(chunk)?;
        }
        file.sync_all()?;
        dir.rename(&temp, dir, name)?;
        // The rename is durable only once the directory is. (A `Dir` may be
        // an O_PATH descriptor, which cannot be synced: open it for reading.)
        dir.open_with(".", OpenOptions::new().read(true))?
            .sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp);
    }
    result
}

/// A suffix no other writer of this process or another one will pick.
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// How old a temporary file in a shared root must be before a host that
/// starts removes it: longer than any request may run (`timeout_ms` is at
/// most 600,000), with a margin.
pub(super) const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(11 * 60);

/// How long opening a shared root waits for other hosts' changes.
const MEASURE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Removes the temporary files a crash left in `dir` and below (in a
/// `shared` root only those older than [`IN_FLIGHT`]), and measures what
/// is left. Links are counted, never followed.
fn sweep_and_measure(dir: &Dir, shared: bool) -> io::Result<Usage> {
    let mut usage = Usage::default();
    for entry in dir.entries()? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_file() && entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let abandoned = !shared
                || entry
                    .metadata()?
                    .modified()
                    .is_ok_and(|at| at.into_std().elapsed().is_ok_and(|age| age > IN_FLIGHT));
            if abandoned {
                let _ = dir.remove_file(entry.file_name());
            }
            continue;
        }
        usage.entries += 1;
        if kind.is_dir() {
            let inner = sweep_and_measure(&entry.open_dir()?, shared)?;
            usage.bytes += BLOCK + inner.bytes;
            usage.entries += inner.entries;
        } else if kind.is_file() {
            usage.bytes += cost(entry.metadata()?.len());
        } else {
            usage.bytes += BLOCK;
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests;
