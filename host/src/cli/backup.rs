//! `rawalite backup DEST` and `rawalite restore SRC`: a data directory into
//! one archive while `serve` keeps serving, and back (see
//! [`rawalite_host::backup`]).

use super::{DataArgs, Exit};
use anyhow::{Result, bail};
use clap::Args;
use rawalite_host::backup;
use rawalite_host::manifest::Manifest;
use std::path::PathBuf;
use std::time::Instant;

/// Back up the database (a consistent snapshot, taken while `serve` keeps
/// serving and writing) and every file of the data directory, roots
/// included, into one `.tar.gz` with a SHA-256 for each file.
#[derive(Args)]
#[command(after_help = "Example:\n  rawalite backup backups/2026-11-26.tar.gz")]
pub struct BackupArgs {
    /// The archive to write (written beside, then renamed into place).
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

/// Restore a backup into the data directory: checks every checksum, the
/// database's integrity and that this rawalite knows its migrations (a
/// newer schema is refused), refuses while `serve` runs on the directory,
/// swaps it in and keeps the directory it replaced beside it.
#[derive(Args)]
pub struct RestoreArgs {
    /// The archive `rawalite backup` wrote.
    #[arg(value_name = "SRC")]
    src: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

/// `backup` and `restore` keep SQLite data directories. A PostgreSQL
/// database is PostgreSQL's to back up: saying so beats leaving it out.
fn refuse_postgres(data: &DataArgs, what: &str) -> Result<()> {
    if let Some(url) = data.url()? {
        bail!(
            "{url} is PostgreSQL: {what} with PostgreSQL's own tools (pg_dump, pg_restore, or your provider's backups), and the roots of the data directory with your file backups; then run `rawalite migrate` after a restore (README, \"Running on PostgreSQL\")"
        );
    }
    Ok(())
}

pub fn backup(args: BackupArgs) -> Result<Exit> {
    refuse_postgres(&args.data, "back it up")?;
    let data_dir = args.data.dir()?;
    if args.data.manifest.is_file() {
        // A root outside the data directory would be left out silently.
        let manifest = Manifest::load(&args.data.manifest)?;
        for (name, path) in &manifest.roots {
            let place = data_dir.join(path);
            if !place.starts_with(&data_dir)
                || path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                bail!(
                    "root `{name}` ({}) lies outside the data directory, and a backup holds only the data directory: back it up separately, or move it inside",
                    place.display()
                );
            }
        }
    }
    let started = Instant::now();
    let contents = backup::backup(&data_dir, &args.dest, &mut |step| eprintln!("==> {step}"))?;
    let size = std::fs::metadata(&args.dest)?.len();
    println!(
        "wrote {} ({}, {} files, migrations up to {}) in {:.1}s",
        args.dest.display(),
        bytesize::ByteSize(size),
        contents.files.len(),
        contents.migrations.last().map_or("none", String::as_str),
        started.elapsed().as_secs_f64()
    );
    Ok(Exit::Ok)
}

pub fn restore(args: RestoreArgs) -> Result<Exit> {
    refuse_postgres(&args.data, "restore it")?;
    let data_dir = args.data.dir()?;
    let started = Instant::now();
    let (replaced, contents) =
        backup::restore(&args.src, &data_dir, &mut |step| eprintln!("==> {step}"))?;
    println!(
        "restored {} files into {} in {:.1}s",
        contents.files.len(),
        data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(replaced) = replaced {
        println!(
            "the directory it replaced is kept at {}",
            replaced.display()
        );
    }
    Ok(Exit::Ok)
}
