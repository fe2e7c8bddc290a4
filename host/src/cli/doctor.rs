//! `rawalite doctor`: checks a data directory without changing it and
//! says what to do about each problem.

use super::{DataArgs, Exit};
use anyhow::Result;
use clap::Args;
use rawalite_host::capabilities::paths::BLOCK;
use rawalite_host::data_dir::{DataLock, STAGING_PREFIXES, TEMP_PREFIX};
use rawalite_host::database::MigrationState;
use rawalite_host::database::postgres::{DatabaseUrl, Postgres};
use rawalite_host::database::sqlite::{ReadOnly, known_migrations};
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{self, Runtime};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Check a data directory: its permissions, the database's integrity and
/// migrations, temporary files a crash left, each root's use of its
/// quota, the scheduled backups, whether every guest is compiled
/// already (else `serve` answers its route 503 at first), and whether swap
/// can reach `serve`'s memory (which decides how it resets a sandbox).
/// Changes nothing (but may create the
/// lock file `serve` holds). Exit codes: 0 nothing failed (warnings
/// allowed), 1 something failed.
#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    data: DataArgs,
}

/// What one check found.
enum Finding {
    Ok(String),
    Warn(String),
    Fail(String),
}

pub fn run(args: DoctorArgs) -> Result<Exit> {
    let dir = args.data.dir()?;
    let manifest = if args.data.manifest.is_file() {
        Some(Manifest::load(&args.data.manifest)?)
    } else {
        None
    };
    let mut findings = match args.data.url()? {
        Some(url) => postgres(&url, &dir, manifest.as_ref()),
        None => check(&dir, manifest.as_ref()),
    };
    findings.push(swap());
    let mut failed = false;
    for finding in &findings {
        match finding {
            Finding::Ok(text) => println!("ok    {text}"),
            Finding::Warn(text) => println!("WARN  {text}"),
            Finding::Fail(text) => {
                failed = true;
                println!("FAIL  {text}");
            }
        }
    }
    Ok(if failed { Exit::Refused } else { Exit::Ok })
}

/// How `serve` on this machine resets a sandbox for the next request.
fn swap() -> Finding {
    let swap = runtime::Swap::of_this_process();
    if swap.is_on() {
        Finding::Warn(format!(
            "{}: `serve` resets each sandbox without PAGEMAP_SCAN, which misses pages swapped out \
             (correct, but a hello takes ~3x as long); give it no swap for the faster reset \
             (systemd: MemorySwapMax=0; cgroup: memory.swap.max = 0)",
            swap.why()
        ))
    } else {
        Finding::Ok(format!(
            "{}: `serve` resets each sandbox with PAGEMAP_SCAN where the kernel has it",
            swap.why()
        ))
    }
}

fn check(dir: &Path, manifest: Option<&Manifest>) -> Vec<Finding> {
    let mut found = Vec::new();
    let Ok(meta) = std::fs::metadata(dir) else {
        found.push(Finding::Fail(format!(
            "{} does not exist: `rawalite migrate --data {0}` creates it (so does `serve`)",
            dir.display()
        )));
        return found;
    };
    found.push(private(dir, meta.permissions().mode(), "700"));
    for name in ["rawalite.db", "rawalite.db-wal"] {
        if let Ok(meta) = std::fs::metadata(dir.join(name)) {
            found.push(private(&dir.join(name), meta.permissions().mode(), "600"));
        }
    }
    found.push(match DataLock::try_acquire(dir, false) {
        Ok(Some(_)) => Finding::Ok("no `serve` is running on it".into()),
        Ok(None) => Finding::Ok("`serve` is running on it".into()),
        Err(e) => Finding::Warn(format!("cannot check for a running `serve`: {e}")),
    });
    database(dir, &mut found);
    temporary_files(dir, &mut found);
    if let Some(manifest) = manifest {
        roots(dir, manifest, &mut found);
        backups(manifest, &mut found);
        compiled(manifest, &mut found);
    }
    found
}

/// Whether every guest is in the compile cache: one that is not compiles
/// after `serve` starts, its route answering 503 meanwhile.
fn compiled(manifest: &Manifest, found: &mut Vec<Finding>) {
    let Ok(runtime) = Runtime::new(runtime::default_cache_dir()) else {
        return;
    };
    let mut cold = Vec::new();
    for guest in &manifest.guests {
        match runtime.check(&guest.component) {
            Ok(true) => {}
            Ok(false) => cold.push(guest.name.as_str()),
            Err(e) => found.push(Finding::Warn(format!("guest `{}`: {e}", guest.name))),
        }
    }
    found.push(if cold.is_empty() {
        Finding::Ok("every guest is compiled (the compile cache is warm)".into())
    } else {
        Finding::Warn(format!(
            "not compiled yet: {}; `serve` answers their routes with 503 until it has compiled them: `rawalite compile` first",
            cold.join(", ")
        ))
    });
}

/// The checks for an app on PostgreSQL: the database answers, its
/// migrations are current, the guests' roles match the manifest, and the
/// data directory's roots.
fn postgres(url: &DatabaseUrl, dir: &Path, manifest: Option<&Manifest>) -> Vec<Finding> {
    let mut found = Vec::new();
    let pg = match Postgres::connect(url) {
        Ok(pg) => {
            found.push(Finding::Ok(format!("{url} answers")));
            pg
        }
        Err(e) => {
            found.push(Finding::Fail(format!(
                "{e:#}: is PostgreSQL running, and does the URL name its database and a role that may log in?"
            )));
            return found;
        }
    };
    found.push(match pg.migration_state() {
        Ok(MigrationState::Current) => Finding::Ok("migrations are current".into()),
        Ok(MigrationState::Pending(n)) => Finding::Fail(format!(
            "{n} migration(s) pending: `rawalite migrate --database {url}`"
        )),
        Ok(MigrationState::Unknown(newer)) => Finding::Fail(format!(
            "migration {newer} is applied but unknown to this rawalite: use a newer rawalite"
        )),
        Err(e) => Finding::Fail(format!("cannot read the migration history: {e:#}")),
    });
    if let Some(manifest) = manifest {
        found.push(
            match pg.grant_drift(rawalite_host::app::db_grants(manifest)) {
                Ok(drift) if drift.is_empty() => {
                    Finding::Ok("every guest's role has exactly its grant".into())
                }
                Ok(drift) => Finding::Fail(format!(
                    "{}: `rawalite migrate --database {url}` brings them in step",
                    drift.join("; ")
                )),
                Err(e) => Finding::Fail(format!("cannot read the guests' privileges: {e:#}")),
            },
        );
        reach(&pg, manifest, &mut found);
        compiled(manifest, &mut found);
        if dir.is_dir() {
            temporary_files(dir, &mut found);
            roots(dir, manifest, &mut found);
        }
    }
    found
}

/// Whether the guests' roles stay in the app's database: PUBLIC may
/// connect to any database unless revoked there, and a guest role's
/// password (derived from the secret every host has) would then open it.
fn reach(pg: &Postgres, manifest: &Manifest, found: &mut Vec<Finding>) {
    let guests: Vec<String> = rawalite_host::app::db_grants(manifest)
        .into_iter()
        .map(|(guest, _)| guest)
        .collect();
    if guests.is_empty() {
        return;
    }
    let url = pg.url();
    found.push(match pg.guest_reach(&guests) {
        Ok(others) if others.is_empty() => {
            Finding::Ok("the guests' roles may connect to the app's database only".into())
        }
        Ok(others) => Finding::Warn(format!(
            "the guests' roles may connect to other databases of the cluster: {}. Confine them in pg_hba.conf \
             (`host all +{}_guests all reject` after the app's lines; docs/DEPLOY.md), or \
             `REVOKE CONNECT ON DATABASE … FROM PUBLIC` in each",
            others.join(", "),
            url.database()
        )),
        Err(e) => Finding::Warn(format!("cannot read which databases the guests' roles reach: {e:#}")),
    });
}

fn database(dir: &Path, found: &mut Vec<Finding>) {
    let path = dir.join("rawalite.db");
    if !path.is_file() {
        found.push(Finding::Fail(format!(
            "there is no database at {}: `rawalite migrate` creates one, `rawalite restore` brings one back",
            path.display()
        )));
        return;
    }
    let conn = match ReadOnly::open(&path) {
        Ok(conn) => conn,
        Err(e) => {
            found.push(Finding::Fail(format!("{e:#}")));
            return;
        }
    };
    found.push(
        match conn.integrity() {
            Ok(ok) if ok == "ok" => Finding::Ok("the database passes its integrity check".into()),
            Ok(problem) => Finding::Fail(format!(
                "the database fails its integrity check ({problem}): restore the newest backup (`rawalite restore`)"
            )),
            Err(e) => Finding::Fail(format!("the integrity check could not run: {e}")),
        },
    );
    found.push(match conn.migration_state() {
        Ok(MigrationState::Current) => Finding::Ok(format!(
            "migrations are current ({})",
            known_migrations().last().unwrap_or("none")
        )),
        Ok(MigrationState::Pending(n)) => Finding::Warn(format!(
            "{n} migration(s) pending: `rawalite migrate` (or the next `serve`) applies them"
        )),
        Ok(MigrationState::Unknown(newer)) => Finding::Fail(format!(
            "migration {newer} is applied but unknown to this rawalite: use a newer rawalite"
        )),
        Err(e) => Finding::Fail(format!("cannot read the migration history: {e}")),
    });
}

/// Whether others may read or write `path`, which holds every password
/// hash, with the `chmod` that closes it.
fn private(path: &Path, mode: u32, chmod: &str) -> Finding {
    if mode & 0o077 != 0 {
        Finding::Warn(format!(
            "{} may be read or written by other users (mode {:o}): `chmod {chmod} {0}`",
            path.display(),
            mode & 0o777
        ))
    } else {
        Finding::Ok(format!("{} is private to its owner", path.display()))
    }
}

/// Temporary files a crash left: a root removes its own when it opens.
fn temporary_files(dir: &Path, found: &mut Vec<Finding>) {
    let mut left = Vec::new();
    walk(dir, &mut |path, _| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if std::iter::once(TEMP_PREFIX)
            .chain(STAGING_PREFIXES)
            .any(|prefix| name.starts_with(prefix))
        {
            left.push(path.display().to_string());
        }
    });
    found.push(if left.is_empty() {
        Finding::Ok("no temporary files left by a crash".into())
    } else {
        Finding::Warn(format!(
            "{} temporary file(s) left by a crash, e.g. {}: harmless and never shown to guests; `serve` removes those in roots when it starts",
            left.len(),
            left[0]
        ))
    });
}

/// Each root's use, counted as its quota counts it, against the smallest
/// quota any guest is granted on it.
fn roots(dir: &Path, manifest: &Manifest, found: &mut Vec<Finding>) {
    for (name, path) in &manifest.roots {
        let place = dir.join(path);
        if !place.is_dir() {
            found.push(Finding::Warn(format!(
                "root `{name}` ({}) does not exist yet: `serve` creates it",
                place.display()
            )));
            continue;
        }
        let mut bytes = 0;
        walk(&place, &mut |_, len| bytes += len.max(BLOCK));
        let quota = manifest
            .guests
            .iter()
            .filter_map(|g| g.paths.get(name))
            .filter_map(|grant| grant.quota.map(|q| q.0))
            .min();
        let used = bytesize::ByteSize(bytes);
        found.push(match quota {
            Some(quota) if bytes * 10 >= quota * 9 => Finding::Warn(format!(
                "root `{name}` holds {used} of its {} quota: raise `quota` under [guest.paths] or remove files",
                bytesize::ByteSize(quota)
            )),
            Some(quota) => Finding::Ok(format!(
                "root `{name}` holds {used} of its {} quota",
                bytesize::ByteSize(quota)
            )),
            None => Finding::Ok(format!("root `{name}` holds {used} (read-only, no quota)")),
        });
    }
}

fn backups(manifest: &Manifest, found: &mut Vec<Finding>) {
    let Some(schedule) = &manifest.backup else {
        found.push(Finding::Warn(
            "no scheduled backups: add [app.backup] to the manifest, or run `rawalite backup` from cron".into(),
        ));
        return;
    };
    let all = rawalite_host::backup::scheduled(&schedule.dir);
    for archive in &all {
        if let Ok(meta) = std::fs::metadata(archive)
            && meta.permissions().mode() & 0o077 != 0
        {
            found.push(private(archive, meta.permissions().mode(), "600"));
        }
    }
    let newest = all.last().cloned();
    let age = newest
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok()?.modified().ok()?.elapsed().ok());
    found.push(match (newest, age) {
        (Some(path), Some(age)) if age <= schedule.every * 2 => Finding::Ok(format!(
            "the newest backup is {} min old: {}",
            age.as_secs() / 60,
            path.display()
        )),
        (Some(path), _) => Finding::Warn(format!(
            "the newest backup, {}, is older than twice `every`: is `serve` running? its log says why a backup failed",
            path.display()
        )),
        (None, _) => Finding::Warn(format!(
            "no backup in {} yet: `serve` takes the first when it starts",
            schedule.dir.display()
        )),
    });
}

/// Calls `each` with every file under `dir` and its length; does not
/// follow symlinks.
fn walk(dir: &Path, each: &mut dyn FnMut(&Path, u64)) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => {
                each(&path, 0);
                walk(&path, each);
            }
            Ok(_) => each(&path, entry.metadata().map_or(0, |m| m.len())),
            Err(_) => {}
        }
    }
}
