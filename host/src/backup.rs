//! Backups of a data directory, taken while `serve` keeps serving, and
//! their restore.
//!
//! An archive is a gzip-compressed tar: first `BACKUP.json` (format,
//! time, this binary's version, the migrations applied, and each file's
//! size and SHA-256), then `rawalite.db`, a consistent snapshot of the
//! database (`VACUUM INTO`, which reads one transaction's view while
//! writers carry on), then every other file of the data directory: the
//! roots in their usual places. Each root file is pinned first (a hard
//! link, or a copy where links cannot be made): guests replace files by
//! renaming a new one over them, so the pinned version never changes, and
//! its checksum and its bytes in the archive are of the same version.
//!
//! A restore unpacks beside the data directory, writing no entry past the
//! size BACKUP.json gives it and checking each checksum as it goes, checks
//! `PRAGMA integrity_check` and that this binary knows every migration the
//! database has, then swaps directories with two renames and keeps the one
//! it replaced as `<data>.replaced-<time>`. It holds the data directory's
//! lock throughout, and the new directory's lock from before it is moved
//! into place, so no `serve` starts on either meanwhile.

use crate::data_dir::{DataLock, LOCK, STAGING_PREFIXES, TEMP_PREFIX, create_private_dir};
use crate::database::MigrationState;
use crate::database::sqlite::{ReadOnly, Sqlite};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The archive's table of contents.
pub const CONTENTS: &str = "BACKUP.json";
const DATABASE: &str = "rawalite.db";
/// Names in a data directory that are never copied: the live database
/// (its snapshot is) and `serve`'s lock. Temporary and staging files are
/// skipped by their prefixes.
const SKIPPED: &[&str] = &["rawalite.db", "rawalite.db-wal", "rawalite.db-shm", LOCK];

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

/// Writes a backup of `data_dir` to `dest` (through a private temporary
/// file beside it, renamed when complete); `progress` hears what is being
/// done. The archive is readable by its owner only: it holds every
/// password hash.
pub fn backup(data_dir: &Path, dest: &Path, progress: &mut dyn FnMut(&str)) -> Result<Contents> {
    let live = data_dir.join(DATABASE);
    if !live.is_file() {
        bail!("there is no database at {}", live.display());
    }
    let dest_dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIXES[0])
        .tempdir_in(dest_dir)
        .context("cannot create a staging directory beside the backup")?;
    let snapshot = staging.path().join(DATABASE);
    progress("snapshot of the database (VACUUM INTO)");
    // Read as it is, without migrating: a backup takes whatever is there.
    ReadOnly::open(&live)?.snapshot(&snapshot)?;
    let migrations = ReadOnly::open(&snapshot)?.applied_migrations()?;

    let mut found = Vec::new();
    let mut directories = Vec::new();
    collect(data_dir, data_dir, &mut found, &mut directories)?;
    // Pinned on the data directory's own file system, where links work
    // (or, in a data directory we may not write, as copies).
    let pinned = tempfile::Builder::new()
        .prefix(STAGING_PREFIXES[0])
        .tempdir_in(data_dir)
        .or_else(|_| tempfile::tempdir_in(staging.path()))
        .context("cannot create a staging directory")?;
    let mut files = vec![(DATABASE.to_owned(), snapshot.clone())];
    for (i, (path, source)) in found.into_iter().enumerate() {
        let copy = pinned.path().join(i.to_string());
        pin(&source, &copy).with_context(|| format!("reading {path}"))?;
        files.push((path, copy));
    }
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
    // A fresh file of our own (0600, never through a link someone planted).
    let partial = tempfile::Builder::new()
        .prefix(".rawalite-partial-")
        .tempfile_in(dest_dir)
        .with_context(|| format!("cannot create a file in {}", dest_dir.display()))?;
    let gz = flate2::write::GzEncoder::new(partial.as_file(), flate2::Compression::default());
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
    tar.into_inner()?.finish()?;
    partial.as_file().sync_all()?;
    partial
        .persist(dest)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(contents)
}

/// Keeps the version of `source` there is now at `copy`: a hard link to it,
/// or where that cannot be made, a copy read from one open file.
fn pin(source: &Path, copy: &Path) -> Result<()> {
    if std::fs::hard_link(source, copy).is_ok() {
        return Ok(());
    }
    let mut from = File::open(source)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(copy)?;
    std::io::copy(&mut from, &mut to)?;
    Ok(())
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
        if (dir == root && SKIPPED.contains(&name.as_str())) || temporary(&name) {
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

/// A root's temporary file, or a backup's or restore's staging directory.
fn temporary(name: &str) -> bool {
    std::iter::once(TEMP_PREFIX)
        .chain(STAGING_PREFIXES)
        .any(|prefix| name.starts_with(prefix))
}

fn checksum(path: &Path) -> Result<(u64, String)> {
    let mut hashing = Hashing::new(std::io::sink());
    let size = std::io::copy(&mut File::open(path)?, &mut hashing)?;
    Ok((size, hashing.finish()))
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
    create_private_dir(dir)
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
/// The directory is created first, so that what is compared is where it
/// really is, not how its path is spelled.
pub fn check_schedule_dir(dir: &Path, data_dir: &Path, roots: &[PathBuf]) -> Result<()> {
    create_private_dir(dir)
        .with_context(|| format!("cannot create the backup directory {}", dir.display()))?;
    let resolve = |p: &Path| {
        std::fs::canonicalize(p).with_context(|| format!("cannot resolve {}", p.display()))
    };
    let dir = resolve(dir)?;
    if dir.starts_with(resolve(data_dir)?) {
        bail!(
            "[app.backup] dir {} lies inside the data directory: each backup would hold the ones before; put it beside",
            dir.display()
        );
    }
    for root in roots {
        let Ok(root) = resolve(root) else {
            continue;
        };
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
    // Held until the swap is done: no `serve` starts on the old directory.
    let _old_lock = if data_dir.exists() {
        let lock = DataLock::try_acquire(data_dir, false)?;
        if lock.is_none() {
            bail!(
                "`rawalite serve` is running on {}: stop it first, then restore",
                data_dir.display()
            );
        }
        lock
    } else {
        None
    };
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIXES[1])
        .tempdir_in(parent)?;
    // Taken before the directory is moved into place, so a `serve` that
    // starts on the new directory at once waits for the restore to end.
    let _new_lock = DataLock::try_acquire(staging.path(), false)?;
    progress(&format!("unpacking {}", src.display()));
    let contents = unpack(src, staging.path(), parent)?;
    progress("checking the database's integrity and its migrations");
    let db = staging.path().join(DATABASE);
    {
        let archived = ReadOnly::open(&db)?;
        let integrity = archived.integrity()?;
        if integrity != "ok" {
            bail!("the database in the archive fails its integrity check: {integrity}");
        }
        if let MigrationState::Unknown(newer) = archived.migration_state()? {
            bail!(
                "the archive's database has migration {newer} applied, which this rawalite does not know; restore it with a newer rawalite"
            );
        }
    }
    // Applies the migrations an older backup lacks.
    Sqlite::open(staging.path()).context("the archive's database cannot be used")?;

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

/// Whether `path` may be a file of a data directory in an archive: a plain
/// relative path, and not one of the files a backup never writes (the
/// live database's journals, the lock, temporary and staging files).
fn restorable(path: &str) -> bool {
    let plain = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    let reserved = SKIPPED.contains(&path) && path != DATABASE;
    let temporary = Path::new(path)
        .components()
        .any(|c| temporary(&c.as_os_str().to_string_lossy()));
    plain && !reserved && !temporary
}

/// Unpacks `src` into `dir`: the table of contents first, then exactly the
/// files it lists, each a plain file at a relative path, no larger than
/// listed and checked against its checksum as it is written. `room` is
/// where the free space for it is checked.
fn unpack(src: &Path, dir: &Path, room: &Path) -> Result<Contents> {
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
    let mut listed = std::collections::HashMap::new();
    for entry in &contents.files {
        if !restorable(&entry.path) {
            bail!(
                "the archive lists `{}`, which is not a file a backup holds",
                entry.path
            );
        }
        if listed.insert(entry.path.as_str(), entry).is_some() {
            bail!("the archive lists `{}` twice", entry.path);
        }
    }
    if !listed.contains_key(DATABASE) {
        bail!("the archive holds no {DATABASE}");
    }
    // Sizes come from the archive: a sum that wraps would pass any check.
    let total = contents
        .files
        .iter()
        .try_fold(0u64, |total, e| total.checked_add(e.size));
    let free = free_space(room)?;
    match total {
        Some(total) if total <= free => {}
        Some(total) => bail!(
            "the archive's files take {}, more than the {} free beside {}",
            bytesize::ByteSize(total),
            bytesize::ByteSize(free),
            dir.display()
        ),
        None => bail!(
            "the archive's files add up to more than 16 EiB: the archive is damaged or forged"
        ),
    }
    for directory in &contents.directories {
        if !restorable(directory) {
            bail!(
                "the archive lists the directory `{directory}`, which is not a plain relative path"
            );
        }
        create_private_dir(&dir.join(directory))?;
    }
    let mut unpacked = HashSet::new();
    for entry in entries {
        let mut entry = entry.context("the archive is damaged")?;
        let path = entry.path()?.into_owned();
        let name = path.to_string_lossy().into_owned();
        let listing = listed.get(name.as_str());
        let Some(listing) = listing.filter(|_| entry.header().entry_type().is_file()) else {
            bail!("the archive holds `{name}`, which its BACKUP.json does not list as a file");
        };
        if !unpacked.insert(name.clone()) {
            bail!("the archive holds `{name}` twice");
        }
        if entry.header().size()? != listing.size {
            bail!("{name} is not the size BACKUP.json lists: the archive is damaged");
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            create_private_dir(parent)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)?;
        // Never more than listed: the size was checked, and take() holds
        // the copy to it whatever the entry really carries.
        let mut hashing = Hashing::new(&mut out);
        let copied = std::io::copy(&mut (&mut entry).take(listing.size), &mut hashing)?;
        let sha256 = hashing.finish();
        if copied != listing.size || sha256 != listing.sha256 {
            bail!("{name} does not match its checksum: the archive is damaged");
        }
        out.sync_all()?;
    }
    if let Some(missing) = listed.keys().find(|p| !unpacked.contains(**p)) {
        bail!("{missing} is listed in BACKUP.json but missing from the archive");
    }
    Ok(contents)
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes free for an unprivileged writer on the file system of `dir`.
fn free_space(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs writes into `stat`, which it owns; `path` is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot read the free space of {}", dir.display()));
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}
