//! One named root: a cap-std `Dir` and the file operations on it. Every
//! path is validated (relative, plain segments, bounded) and then resolved
//! by cap-std, so `..`, absolute paths and symlinks cannot leave the root.
//! Writes are atomic: a temporary file in the target's directory, written,
//! fsynced, renamed over the target, and the directory fsynced.

use cap_std::fs::{Dir, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// Temporary files start with this; they are never listed, never counted,
/// never valid in a guest's path, and swept away when the root is opened.
const TEMP_PREFIX: &str = ".rawalite-tmp-";
const MAX_PATH_BYTES: usize = 1024;
const MAX_SEGMENTS: usize = 32;

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
            _ => RootError::Io(e),
        }
    }
}

/// A root of the PATHS registry.
pub struct Root {
    dir: Dir,
    /// Writes and removals in one root are serialized so the quota check
    /// and the write it allows cannot interleave with another.
    changing: Mutex<()>,
}

impl Root {
    /// Opens (creating it if missing) the directory at `path` and sweeps
    /// away temporary files a crash left behind.
    pub fn open(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        sweep(&dir)?;
        Ok(Root {
            dir,
            changing: Mutex::new(()),
        })
    }

    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, RootError> {
        let path = check_path(path)?;
        let meta = self.dir.metadata(path)?;
        if meta.is_dir() {
            return Err(RootError::IsDirectory);
        }
        if meta.len() > limit {
            return Err(RootError::TooLarge { limit });
        }
        Ok(self.dir.read(path)?)
    }

    /// Replaces the file at `path` with `contents`, all or nothing, if the
    /// root stays within `quota` bytes.
    pub fn write(
        &self,
        path: &str,
        contents: &[u8],
        quota: u64,
        limit: u64,
    ) -> Result<(), RootError> {
        let path = check_path(path)?;
        if contents.len() as u64 > limit {
            return Err(RootError::TooLarge { limit });
        }
        let (parent, name) = split_parent(path);
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let dir = match parent {
            Some(parent) => self.dir.open_dir(parent)?,
            None => self.dir.try_clone()?,
        };
        // Follows a symlink inside the root; one that leads out is refused
        // here. A write never goes through a link: the rename replaces the
        // link itself.
        match dir.metadata(name) {
            Ok(meta) if meta.is_dir() => return Err(RootError::IsDirectory),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let old = match dir.symlink_metadata(name) {
            Ok(meta) if meta.is_file() => meta.len(),
            _ => 0,
        };
        let would_be = usage(&self.dir)? - old + contents.len() as u64;
        if would_be > quota {
            return Err(RootError::Quota { quota, would_be });
        }
        write_atomically(&dir, name, contents)
    }

    pub fn list(&self, path: &str) -> Result<Vec<Entry>, RootError> {
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
    pub fn remove(&self, path: &str) -> Result<(), RootError> {
        let path = check_path(path)?;
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        if self.dir.symlink_metadata(path)?.is_dir() {
            self.dir.remove_dir(path)?;
        } else {
            self.dir.remove_file(path)?;
        }
        Ok(())
    }

    pub fn create_dir(&self, path: &str) -> Result<(), RootError> {
        let path = check_path(path)?;
        self.dir.create_dir(path)?;
        Ok(())
    }

    /// The bytes of all files in the root.
    pub fn usage(&self) -> io::Result<u64> {
        usage(&self.dir)
    }
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

fn write_atomically(dir: &Dir, name: &str, contents: &[u8]) -> Result<(), RootError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let temp = format!("{TEMP_PREFIX}{:016x}", rand_suffix());
    let result = (|| {
        let mut file = dir.open_with(&temp, &options)?;
        file.write_all(contents)?;
        file.sync_all()?;
        dir.rename(&temp, dir, name)?;
        // The rename is durable only once the directory is. (A `Dir` may be
        // an O_PATH descriptor, which cannot be synced: open it for reading.)
        dir.open_with(".", OpenOptions::new().read(true))?
            .sync_all()
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp);
    }
    Ok(result?)
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

fn usage(dir: &Dir) -> io::Result<u64> {
    let mut total = 0;
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += usage(&entry.open_dir()?)?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

fn sweep(dir: &Dir) -> io::Result<()> {
    for entry in dir.entries()? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sweep(&entry.open_dir()?)?;
        } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = dir.remove_file(entry.file_name());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
