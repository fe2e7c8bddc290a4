//! What lives in a data directory besides the app's own files, and how it
//! is made: the lock `serve` holds, the prefixes of files a crash may leave
//! (temporary files of roots, staging directories of backups), and
//! directories only their owner may read. Below everything that writes
//! there: the database, roots, backups.

use anyhow::Result;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Temporary files start with this; they are never listed, never counted,
/// never valid in a guest's path, and swept away when the root is opened.
pub const TEMP_PREFIX: &str = ".rawalite-tmp-";

/// The directories a backup and a restore work in, beside their target;
/// a crash may leave one (`rawalite doctor` reports them).
pub const STAGING_PREFIXES: [&str; 2] = [".rawalite-backup-", ".rawalite-restore-"];

/// Creates the data directory `dir` (owner-only: it holds the database and
/// every password hash), with an error that names it.
pub fn create(dir: &Path) -> Result<()> {
    use anyhow::Context as _;
    create_private_dir(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// Creates `dir` (and what is missing above it) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The name of the lock `serve` holds in its data directory.
pub const LOCK: &str = ".serve.lock";

/// A lock on a data directory: `serve` holds one while it runs (shared
/// among hosts on PostgreSQL, which may share the directory; exclusive on
/// SQLite), and `restore` refuses when it cannot take it exclusively.
pub struct DataLock {
    // Held, not read: closing the file releases the lock.
    _file: File,
}

impl DataLock {
    /// The lock, or `None` when another process holds it in a way that
    /// excludes this one.
    pub fn try_acquire(data_dir: &Path, shared: bool) -> Result<Option<Self>> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(data_dir.join(LOCK))?;
        // SAFETY: flock on a descriptor this function owns.
        let mode = if shared { libc::LOCK_SH } else { libc::LOCK_EX };
        let locked = unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) } == 0;
        Ok(locked.then_some(DataLock { _file: file }))
    }
}
