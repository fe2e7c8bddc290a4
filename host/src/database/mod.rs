//! The app's database and the one seam every backend sits behind. A
//! backend is a folder of its own, implementing the traits its consumers
//! own: the `db` capability's [`capabilities::db::Backend`] (a guest's
//! calls), the host's [`auth::store::Store`] (users, sessions, the
//! limiter's counts), the roots' [`capabilities::paths::SharedUsage`], and
//! [`Database`] here (what the rest of the host asks of a database).
//! [`open`] is the one place that chooses between them:
//!
//! - [`sqlite`]: `<data>/rawalite.db`, migrated at every start;
//! - [`postgres`]: a PostgreSQL database, migrated by `rawalite migrate`
//!   only, shared by several hosts.
//!
//! Nothing outside this folder names `rusqlite`, `tokio_postgres` or
//! `deadpool`; values cross the seam in the capabilities' own types. A
//! third backend is a third folder and one more arm in [`open`].
//!
//! [`capabilities::db::Backend`]: crate::capabilities::db::Backend
//! [`auth::store::Store`]: crate::auth::store::Store
//! [`capabilities::paths::SharedUsage`]: crate::capabilities::paths::SharedUsage

pub mod migrations;
pub mod postgres;
pub mod sqlite;

pub use migrations::{Applied, MigrationState};

use crate::auth::store::Store;
use crate::capabilities::db::portable::Schema;
use crate::capabilities::db::{self, DbGrant, DbLimits};
use crate::capabilities::paths::SharedUsage;
use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// An app's database, on whichever backend keeps it.
pub trait Database: Send + Sync {
    /// Where it is, for people (a PostgreSQL URL without its password).
    fn describe(&self) -> String;

    /// Where it stands against this binary's migrations. Blocks.
    fn migration_state(&self) -> Result<MigrationState>;

    /// The app's tables and their columns, which grants are checked
    /// against and the SQL check resolves names with. Blocks.
    fn schema(&self) -> Result<Schema>;

    /// The host's tables: users, sessions, the sign-in limiter's counts.
    fn store(&self) -> Result<Box<dyn Store>>;

    /// Guest `guest`'s `db` capability under `grant`: with `portable`,
    /// statements are checked against the portable subset where the
    /// backend would not need it.
    fn guest_db(
        &self,
        guest: &str,
        grant: Arc<DbGrant>,
        limits: DbLimits,
        schema: &Arc<Schema>,
        portable: bool,
    ) -> Box<dyn db::Backend>;

    /// Where the usage of root `root` is kept for every host that shares
    /// the data directory; `None` when this host is the database's only
    /// one, and keeps it in memory.
    fn shared_usage(&self, root: &str) -> Option<Box<dyn SharedUsage>>;

    /// Whether this host should run job `name` now: with several hosts on
    /// the database, for the one that claims this interval of `every`.
    /// Blocks.
    fn claim(&self, name: &str, every: Duration) -> Result<bool>;

    /// Its size in bytes. Blocks.
    fn size(&self) -> u64;

    /// Inserts `rows` into app table `table` in one transaction, as the
    /// host (a test case's fixtures): each row names the columns it gives;
    /// the others take their defaults. The caller has checked the names
    /// against [`Database::schema`]. Blocks.
    fn insert(&self, table: &str, rows: &[Vec<(String, db::Value)>]) -> Result<()>;

    /// Whether it lives in the data directory, so that a backup of the
    /// directory ([`crate::backup`]) holds it.
    fn in_data_dir(&self) -> bool;
}

/// The guests' grants a manifest (this file) gives.
pub struct Grants<'a> {
    pub manifest: &'a Path,
    pub guests: Vec<(String, DbGrant)>,
}

/// Opens the app's database: PostgreSQL at `url`, which must be migrated
/// already (and, given `grants`, its guests' roles in step with them:
/// that is `rawalite migrate`'s job, which nothing else does); else SQLite
/// in `data_dir`, created and migrated. Returns the migrations it applied.
pub fn open(
    url: Option<&postgres::DatabaseUrl>,
    data_dir: &Path,
    grants: Option<Grants<'_>>,
) -> Result<(Arc<dyn Database>, Vec<Applied>)> {
    let Some(url) = url else {
        let (database, applied) = sqlite::Sqlite::open(data_dir)?;
        return Ok((Arc::new(database), applied));
    };
    let pg = postgres::Postgres::connect(url)?;
    let fix =
        format!("run `rawalite migrate --database {url}` (with a role that may create roles)");
    match pg.migration_state()? {
        MigrationState::Current => {}
        MigrationState::Pending(n) => bail!("{url} has {n} migration(s) to apply: {fix}"),
        MigrationState::Unknown(newer) => bail!(
            "{url} has migration {newer} applied, which this rawalite does not know: use a newer rawalite"
        ),
    }
    if let Some(grants) = grants {
        let drift = pg.grant_drift(grants.guests)?;
        if !drift.is_empty() {
            bail!(
                "the guests' privileges in {url} are out of step with {}: {}; {fix}",
                grants.manifest.display(),
                drift.join("; ")
            );
        }
    }
    Ok((Arc::new(Arc::new(pg)), Vec::new()))
}

/// What `rawalite migrate` did.
pub struct Migrated {
    /// Where the database is, for people.
    pub database: String,
    pub applied: Vec<Applied>,
    /// What else it did (PostgreSQL's roles and privileges).
    pub notes: Vec<String>,
}

/// Brings the database up to date: SQLite in `data_dir`, created if
/// missing; or PostgreSQL at `url` (straight to the server, not through a
/// pooler), with a LOGIN role per guest whose privileges are its grant.
pub fn migrate(
    url: Option<&postgres::DatabaseUrl>,
    data_dir: &Path,
    guests: Vec<(String, DbGrant)>,
) -> Result<Migrated> {
    match url {
        Some(url) => {
            let pg = postgres::Postgres::connect(url.direct()?)?;
            let (applied, notes) = pg.migrate(guests)?;
            Ok(Migrated {
                database: url.to_string(),
                applied,
                notes,
            })
        }
        None => {
            let (database, applied) = sqlite::Sqlite::open(data_dir)?;
            Ok(Migrated {
                database: database.describe(),
                applied,
                notes: Vec::new(),
            })
        }
    }
}

/// The PostgreSQL URL to use, if any: `flag` (a command's `--database`),
/// else `RAWALITE_DATABASE_URL`, else `[app] database`.
pub fn url(
    flag: Option<&str>,
    manifest_database: Option<&str>,
) -> Result<Option<postgres::DatabaseUrl>> {
    let env = std::env::var("RAWALITE_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    flag.map(str::to_owned)
        .or(env)
        .or(manifest_database.map(str::to_owned))
        .map(|text| postgres::DatabaseUrl::parse(&text))
        .transpose()
}

/// `"name"`: an identifier in SQL, on either backend.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The app's tables, each with its columns.
pub type Tables = BTreeMap<String, BTreeSet<String>>;
