//! Backups of a data directory, taken while `serve` keeps serving, and
//! their restore.
//!
//! An archive is a gzip-compressed tar: first `BACKUP.json` (format,
//! time, this binary's version, the migrations applied, and each file's
//! size and SHA-256), then `rawalite.db`, a consistent snapshot of the
//! database (`VACUUM INTO`, which reads one transaction's view while
//! writers carry on), then every other file of the data directory: the
//! roots in their usual places. Each root file is whole (files are
//! replaced atomically); the set of files is read one after another, not
//! at one instant.
//!
//! A restore unpacks beside the data directory, checks every checksum,
//! `PRAGMA integrity_check` and that this binary knows every migration the
//! database has, then swaps directories with two renames and keeps the one
//! it replaced as `<data>.replaced-<time>`.

use crate::capabilities::paths::TEMP_PREFIX;
use crate::database::{Database, MigrationState, migration_state};
use anyhow::{Context, Result, bail};
use rusqlite::OpenFlags;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The archive's table of contents.
pub const CONTENTS: &str = "BACKUP.json";
const DATABASE: &str = "rawalite.db";
/// Names in a data directory that are never copied: the live database
/// (its snapshot is), `serve`'s lock, and a crash's temporary files.
const SKIPPED: &[&str] = &["rawalite.db", "rawalite.db-wal", "rawalite.db-shm", LOCK];
/// The directories a backup and a restore work in, beside their target;
/// a crash may leave one (`rawalite doctor` reports them).
pub const STAGING_PREFIXES: [&str; 2] = [".rawalite-backup-", ".rawalite-restore-"];

#[derive(Serialize, Deserialize)]
pub struct Contents {
    pub format: u32,
    /// Unix seconds.
    pub created_at: u64,
    pub rawalite: String,
    pub migrations: Vec<String>,
    /// Every directory, so empty ones come back too.
    pub directories: Vec<String>,
    pub files: Vec<Entry>,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Writes a backup of `data_dir` to `dest` (through `dest.partial`, renamed
/// when complete); `progress` hears what is being done.
pub fn backup(data_dir: &Path, dest: &Path, progress: &mut dyn FnMut(&str)) -> Result<Contents> {
    // Read as it is, without migrating: a backup takes whatever is there.
    crate::database::init()?;
    let live = data_dir.join(DATABASE);
    if !live.is_file() {
        bail!("there is no database at {}", live.display());
    }
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIXES[0])
        .tempdir_in(
            dest.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .context("cannot create a staging directory beside the backup")?;
    let snapshot = staging.path().join(DATABASE);
    progress("snapshot of the database (VACUUM INTO)");
    let conn = rusqlite::Connection::open_with_flags(&live, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(crate::database::BUSY_TIMEOUT)?;
    conn.execute("VACUUM INTO ?", [snapshot.to_string_lossy()])
        .context("taking a snapshot of the database")?;
    let migrations = applied_migrations(&snapshot)?;
    drop(conn);

    let mut files = vec![(DATABASE.to_owned(), snapshot.clone())];
    let mut directories = Vec::new();
    collect(data_dir, data_dir, &mut files, &mut directories)?;
    let mut entries = Vec::new();
    for (path, source) in &files {
        let (size, sha256) = checksum(source)?;
        entries.push(Entry {
            path: path.clone(),
            size,
            sha256,
        });
    }
    let contents = Contents {
        format: 1,
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        rawalite: env!("CARGO_PKG_VERSION").to_owned(),
        migrations,
        directories,
        files: entries,
    };
    progress(&format!("writing {} file(s)", files.len()));
    let partial = dest.with_extension("partial");
    let out =
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let json = serde_json::to_vec_pretty(&contents)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(contents.created_at);
    header.set_cksum();
    tar.append_data(&mut header, CONTENTS, &json[..])?;
    for (path, source) in &files {
        tar.append_path_with_name(source, path)
            .with_context(|| format!("adding {path}"))?;
    }
    let file = tar.into_inner()?.finish()?;
    file.sync_all()?;
    std::fs::rename(&partial, dest)?;
    Ok(contents)
}

/// Every file under `dir` but the skipped ones, as (path in the archive,
/// path on disk), and every directory.
fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
    directories: &mut Vec<String>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        if (dir == root && SKIPPED.contains(&name.as_str())) || name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let relative = path.strip_prefix(root)?.to_string_lossy().into_owned();
        if kind.is_dir() {
            directories.push(relative);
            collect(root, &path, out, directories)?;
        } else if kind.is_file() {
            out.push((relative, path));
        }
        // Symlinks are not followed: a root cannot hold one that leads out.
    }
    Ok(())
}

fn checksum(path: &Path) -> Result<(u64, String)> {
    let mut file = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 << 10];
    let mut size = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn applied_migrations(db: &Path) -> Result<Vec<String>> {
    let conn = rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(crate::database::applied_migrations(&conn)?)
}

/// The file names scheduled backups get: `rawalite-20261126T183000Z.tar.gz`.
const SCHEDULED_PREFIX: &str = "rawalite-";
const SCHEDULED_SUFFIX: &str = ".tar.gz";

/// The scheduled backups in `dir`, oldest first.
pub fn scheduled(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SCHEDULED_PREFIX) && n.ends_with(SCHEDULED_SUFFIX))
        })
        .collect();
    // The names sort by time.
    found.sort();
    found
}

/// One scheduled backup into `dir`, then the oldest removed so that `keep`
/// remain. Returns the new archive.
pub fn take_scheduled(data_dir: &Path, dir: &Path, keep: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the backup directory {}", dir.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let dest = dir.join(format!(
        "{SCHEDULED_PREFIX}{}{SCHEDULED_SUFFIX}",
        crate::utc::compact(now)
    ));
    backup(data_dir, &dest, &mut |_| {})?;
    let all = scheduled(dir);
    for old in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_file(old)
            .with_context(|| format!("removing the old backup {}", old.display()))?;
    }
    Ok(dest)
}

/// Refuses a backup directory inside the data directory (each backup
/// would hold the ones before) or a root (guests could read or fill it).
pub fn check_schedule_dir(dir: &Path, data_dir: &Path, roots: &[PathBuf]) -> Result<()> {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let dir = resolve(dir);
    if dir.starts_with(resolve(data_dir)) {
        bail!(
            "[app.backup] dir {} lies inside the data directory: each backup would hold the ones before; put it beside",
            dir.display()
        );
    }
    for root in roots {
        let root = resolve(root);
        if dir.starts_with(&root) || root.starts_with(&dir) {
            bail!(
                "[app.backup] dir {} overlaps the root at {}: guests must not reach the backups",
                dir.display(),
                root.display()
            );
        }
    }
    Ok(())
}

/// Checks the archive `src` and makes it the data directory `data_dir`,
/// keeping the directory it replaces; returns where that went (if there
/// was one) and the archive's contents.
pub fn restore(
    src: &Path,
    data_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(Option<PathBuf>, Contents)> {
    if data_dir.exists() {
        let lock = DataLock::try_acquire(data_dir)?;
        if lock.is_none() {
            bail!(
                "`rawalite serve` is running on {}: stop it first, then restore",
                data_dir.display()
            );
        }
    }
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIXES[1])
        .tempdir_in(parent)?;
    progress(&format!("unpacking {}", src.display()));
    let contents = unpack(src, staging.path())?;
    progress("checking checksums, the database's integrity and its migrations");
    for entry in &contents.files {
        let (size, sha256) = checksum(&staging.path().join(&entry.path))
            .with_context(|| format!("{} is listed but missing", entry.path))?;
        if size != entry.size || sha256 != entry.sha256 {
            bail!(
                "{} does not match its checksum: the archive is damaged",
                entry.path
            );
        }
    }
    let db = staging.path().join(DATABASE);
    {
        crate::database::init()?;
        let conn = rusqlite::Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if integrity != "ok" {
            bail!("the database in the archive fails its integrity check: {integrity}");
        }
    }
    let conn = rusqlite::Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    if let MigrationState::Unknown(newer) = migration_state(&conn)? {
        bail!(
            "the archive's database has migration {newer} applied, which this rawalite does not know; restore it with a newer rawalite"
        );
    }
    drop(conn);
    // Applies the migrations an older backup lacks.
    Database::open(staging.path()).context("the archive's database cannot be used")?;

    let restored = staging.keep();
    let replaced = if data_dir.exists() {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!(
            "{}.replaced-{stamp}",
            data_dir.file_name().unwrap_or_default().to_string_lossy()
        );
        let aside = parent.join(name);
        std::fs::rename(data_dir, &aside)
            .with_context(|| format!("moving {} aside", data_dir.display()))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&restored, data_dir)
        .with_context(|| format!("moving the restored data to {}", data_dir.display()))?;
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok((replaced, contents))
}

/// Unpacks `src` into `dir`: the table of contents first, then exactly the
/// files it lists, each a plain file at a relative path.
fn unpack(src: &Path, dir: &Path) -> Result<Contents> {
    let file = File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut entries = archive
        .entries()
        .context("not a RawaLite backup (a .tar.gz)")?;
    let mut first = entries
        .next()
        .context("the archive is empty")?
        .context("not a RawaLite backup (a .tar.gz)")?;
    if first.path()?.as_os_str() != CONTENTS {
        bail!("not a RawaLite backup: it does not start with {CONTENTS}");
    }
    let mut json = Vec::new();
    first.by_ref().take(1 << 20).read_to_end(&mut json)?;
    let contents: Contents =
        serde_json::from_slice(&json).context("the archive's BACKUP.json cannot be read")?;
    if contents.format != 1 {
        bail!(
            "backup format {} is not one this rawalite reads",
            contents.format
        );
    }
    let listed: std::collections::HashSet<&str> =
        contents.files.iter().map(|e| e.path.as_str()).collect();
    for directory in &contents.directories {
        if !Path::new(directory)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            bail!(
                "the archive lists the directory `{directory}`, which is not a plain relative path"
            );
        }
        std::fs::create_dir_all(dir.join(directory))?;
    }
    for entry in entries {
        let mut entry = entry.context("the archive is damaged")?;
        let path = entry.path()?.into_owned();
        let name = path.to_string_lossy().into_owned();
        if !entry.header().entry_type().is_file()
            || !listed.contains(name.as_str())
            || !path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            bail!("the archive holds `{name}`, which its BACKUP.json does not list as a file");
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = File::create(&target)?;
        std::io::copy(&mut entry, &mut out)?;
        out.sync_all()?;
    }
    Ok(contents)
}

/// The name of the lock `serve` holds in its data directory.
pub const LOCK: &str = ".serve.lock";

/// An exclusive lock on a data directory: `serve` holds one while it runs,
/// and `restore` refuses when it cannot take it.
pub struct DataLock {
    // Held, not read: closing the file releases the lock.
    _file: File,
}

impl DataLock {
    /// The lock, or `None` when another process holds it.
    pub fn try_acquire(data_dir: &Path) -> Result<Option<Self>> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(LOCK))?;
        // SAFETY: flock on a descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        Ok(locked.then_some(DataLock { _file: file }))
    }
}
