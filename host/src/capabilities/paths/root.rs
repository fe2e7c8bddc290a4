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
//! too keeps its usage in PostgreSQL ([`SharedUsage`]), where changes on
//! every host take turns.

use super::shared::SharedUsage;
use cap_std::fs::{Dir, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Instant, UNIX_EPOCH};

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

/// A root of the PATHS registry.
pub struct Root {
    dir: Dir,
    /// Changes are serialized on the usage, so the quota check and the
    /// change it allows cannot interleave with another. (On a shared root,
    /// the usage as this host last saw it.)
    usage: parking_lot::Mutex<Usage>,
    /// Where the usage every host sees is kept, for a shared root.
    shared: Option<SharedUsage>,
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
    pub fn open_shared(path: &Path, shared: SharedUsage) -> io::Result<Self> {
        Self::open_with(path, Some(shared))
    }

    fn open_with(path: &Path, shared: Option<SharedUsage>) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let usage = match &shared {
            None => sweep_and_measure(&dir, false)?,
            Some(shared) => {
                shared
                    .change(Instant::now() + MEASURE_WAIT, MEASURE_WAIT, |_, _| {
                        let usage = sweep_and_measure(&dir, true)?;
                        Ok((usage, usage))
                    })
                    .map_err(|e| {
                        io::Error::other(format!(
                            "cannot measure it under the lock other hosts share: {e:?}"
                        ))
                    })?
                    .0
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

    /// Opens the file at `path` for reading, with its length: for a file
    /// the host streams to a client rather than holds.
    pub fn open_file(&self, path: &str) -> Result<(std::fs::File, u64), RootError> {
        let path = check_path(path)?;
        let file = self.dir.open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(RootError::IsDirectory);
        }
        Ok((file.into_std(), meta.len()))
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
            Some(shared) => shared.change(deadline, HOLD, change)?,
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
pub const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(11 * 60);

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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn bounds(quota: u64, entries: u64) -> Bounds {
        Bounds {
            quota,
            entries,
            max_file: 1 << 20,
            deadline: Instant::now() + Duration::from_secs(10),
        }
    }

    #[test]
    fn a_shared_root_keeps_temporary_files_another_host_may_be_writing() {
        let dir = tempfile::tempdir().unwrap();
        let young = dir.path().join(format!("{TEMP_PREFIX}young"));
        let old = dir.path().join(format!("{TEMP_PREFIX}old"));
        std::fs::write(&young, b"in flight").unwrap();
        std::fs::write(&old, b"abandoned").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - IN_FLIGHT - Duration::from_secs(60))
            .unwrap();
        let shared = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        let usage = sweep_and_measure(&shared, true).unwrap();
        assert!(young.exists(), "a write in flight elsewhere was swept");
        assert!(!old.exists(), "an abandoned one stayed");
        assert_eq!(usage, Usage::default(), "neither is counted");
        Root::open(dir.path()).unwrap();
        assert!(!young.exists(), "one host alone sweeps every one");
    }

    #[test]
    fn every_entry_costs_a_block_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let b = bounds(1 << 20, 100);
        root.write("a", b"x", &b).unwrap();
        root.create_dir("d", &b).unwrap();
        root.write("d/big", &[7; 10_000], &b).unwrap();
        let usage = root.usage();
        assert_eq!(
            usage,
            Usage {
                bytes: BLOCK + BLOCK + 10_000,
                entries: 3
            }
        );
        // A fresh walk agrees with what the writes kept.
        assert_eq!(Root::open(dir.path()).unwrap().usage(), usage);
        root.remove("d/big", b.deadline).unwrap();
        assert_eq!(
            root.usage(),
            Usage {
                bytes: 2 * BLOCK,
                entries: 2
            }
        );
    }

    #[test]
    fn directories_are_held_to_the_quota_and_the_entry_bound() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let small = bounds(3 * BLOCK, 100);
        for i in 0..3 {
            root.create_dir(&format!("d{i}"), &small).unwrap();
        }
        assert!(matches!(
            root.create_dir("d3", &small),
            Err(RootError::Quota { .. })
        ));
        let few = bounds(1 << 20, 4);
        root.write("f", b"", &few).unwrap();
        assert!(matches!(
            root.write("g", b"", &few),
            Err(RootError::TooManyEntries { limit: 4 })
        ));
        assert!(matches!(
            root.list("", 3),
            Err(RootError::TooManyToList { limit: 3 })
        ));
    }

    #[test]
    fn a_write_stops_at_its_deadline_and_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut b = bounds(64 << 20, 100);
        b.max_file = 64 << 20;
        root.write("f", b"old", &b).unwrap();
        b.deadline = Instant::now();
        let big = vec![1u8; 4 << 20];
        assert!(matches!(
            root.write("f", &big, &b),
            Err(RootError::Deadline)
        ));
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert_eq!(
            root.usage(),
            Usage {
                bytes: BLOCK,
                entries: 1
            }
        );
    }

    #[test]
    fn a_change_waits_for_the_root_only_until_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let held = root.usage.lock();
        let mut b = bounds(1 << 20, 100);
        b.deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(root.write("a", b"x", &b), Err(RootError::Busy)));
        assert!(matches!(root.remove("a", b.deadline), Err(RootError::Busy)));
        drop(held);
        b.deadline = Instant::now() + Duration::from_secs(10);
        root.write("a", b"x", &b).unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u8, usize),
        Mkdir(u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u8, 0..20_000usize).prop_map(|(n, len)| Op::Write(n, len)),
            (0..6u8).prop_map(Op::Mkdir),
            (0..6u8).prop_map(Op::Remove),
        ]
    }

    /// `d2/f4`-style names: files at the top or in one of the directories.
    fn name(n: u8) -> String {
        if n.is_multiple_of(2) {
            format!("f{n}")
        } else {
            format!("d{}/f{n}", n % 3)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// A path the check lets through is plain: relative, made of normal
        /// segments only, bounded, free of control characters.
        #[test]
        fn accepted_paths_are_plain(path in prop_oneof![".{0,80}", "[a./\\\\]{0,12}"]) {
            if let Ok(p) = check_path(&path) {
                let components: Vec<_> = Path::new(p).components().collect();
                prop_assert!(components.iter().all(|c| matches!(c, std::path::Component::Normal(_))), "{:?}", p);
                prop_assert!(components.len() <= MAX_SEGMENTS && p.len() <= MAX_PATH_BYTES);
                prop_assert!(!p.chars().any(char::is_control) && !p.contains('\\'));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// No path, however it is put together, reads a file outside the
        /// root, through `..` or through a link that leads out.
        #[test]
        fn no_path_reads_outside_the_root(pieces in prop::collection::vec(
            prop::sample::select(vec!["..", ".", "out", "in", "secret", "a", "/", "\\", "//"]), 1..8)
        ) {
            let (_dir, root) = escape_fixture();
            let path = pieces.concat();
            if let Ok(bytes) = root.read(&path, 1 << 20) {
                prop_assert_ne!(bytes, b"top secret".to_vec(), "{} escaped", path);
            }
        }
    }

    /// A root holding `a`, a link `in` to its own `a`, and a link `out` to a
    /// directory beside it that holds `secret`.
    fn escape_fixture() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"top secret").unwrap();
        let inside = dir.path().join("root");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("a"), b"fine").unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("out")).unwrap();
        std::os::unix::fs::symlink("a", inside.join("in")).unwrap();
        let root = Root::open(&inside).unwrap();
        (dir, root)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the guest does, the usage the root keeps is what a
        /// fresh walk of the directory finds, and never past the bounds.
        #[test]
        fn kept_usage_matches_a_fresh_walk(ops in prop::collection::vec(op(), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::open(dir.path()).unwrap();
            let b = bounds(64 << 10, 8);
            for op in ops {
                let _ = match op {
                    Op::Write(n, len) => root.write(&name(n), &vec![1; len], &b),
                    Op::Mkdir(n) => root.create_dir(&format!("d{}", n % 3), &b),
                    Op::Remove(n) => root.remove(&name(n), b.deadline)
                        .or_else(|_| root.remove(&format!("d{}", n % 3), b.deadline)),
                };
                let kept = root.usage();
                prop_assert!(kept.bytes <= b.quota && kept.entries <= b.entries, "{:?}", kept);
                prop_assert_eq!(kept, Root::open(dir.path()).unwrap().usage());
            }
        }
    }

    fn bad(path: &str) -> String {
        match check_path(path) {
            Err(RootError::BadPath(why)) => why,
            other => panic!("{path:?} passed: {other:?}"),
        }
    }

    #[test]
    fn plain_relative_paths_pass() {
        for path in [
            "a.txt",
            "exports/2026/11/invoice-42.csv",
            "ünïcödé name.txt",
        ] {
            assert!(check_path(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn malformed_paths_are_refused_with_a_reason() {
        assert!(bad("").contains("empty"));
        assert!(bad("/etc/passwd").contains("relative"));
        assert!(bad("../../etc/passwd").contains("`..`"));
        assert!(bad("a/../../x").contains("`..`"));
        assert!(bad("a//b").contains("empty segment"));
        assert!(bad("a/").contains("empty segment"));
        assert!(bad("a\0b").contains("control"));
        assert!(bad("a\nb").contains("control"));
        assert!(bad(&"x".repeat(2000)).contains("1024"));
        assert!(bad(&vec!["a"; 33].join("/")).contains("32 segments"));
        assert!(bad("a\\..\\b").contains("`/`"));
        assert!(bad(".rawalite-tmp-1234").contains("reserved"));
    }
}
