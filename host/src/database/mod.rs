//! The app's database: SQLite, `<data>/rawalite.db`, opened by the host
//! only (WAL, foreign keys, busy timeout) and migrated at every start from
//! the migrations embedded in the binary; or PostgreSQL ([`postgres`]),
//! migrated by `rawalite migrate` only. [`Backend`] is which one, [`url`]
//! where a PostgreSQL URL comes from. Guests reach either only through the
//! `db` capability, on connections of their own (on SQLite their memory is
//! charged to the guest call that uses it, [`memory`]).

pub mod memory;
pub mod postgres;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The migrations, in order. Adding one is a new file in `migrations/` and
/// one line here (a unit test checks that the two agree).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../../migrations/0001_init.sql"),
    ),
    (
        "0002_session_client",
        include_str!("../../../migrations/0002_session_client.sql"),
    ),
    (
        "0003_sign_in_limits",
        include_str!("../../../migrations/0003_sign_in_limits.sql"),
    ),
];

/// The migrations this binary knows, by file name (`0001_init`).
pub fn known_migrations() -> impl Iterator<Item = &'static str> {
    MIGRATIONS.iter().map(|(name, _)| *name)
}

/// The migrations applied to the database of `conn`, by file name.
pub fn applied_migrations(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT version, name FROM refinery_schema_history ORDER BY version")?;
    let names = stmt.query_map([], |r| {
        Ok(format!(
            "{:04}_{}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?
        ))
    })?;
    names.collect()
}

/// How a database's migrations compare with the ones this binary knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Exactly the migrations this binary knows.
    Current,
    /// This many are not applied yet; `migrate` or the next start applies them.
    Pending(usize),
    /// It has this one applied, which this binary does not know: a newer
    /// rawalite wrote the database.
    Unknown(String),
}

/// Where the database of `conn` stands against this binary's migrations.
pub fn migration_state(conn: &Connection) -> rusqlite::Result<MigrationState> {
    Ok(compare(&applied_migrations(conn)?, known_migrations()))
}

/// Where `applied` migrations stand against the `known` ones.
fn compare<'a>(applied: &[String], known: impl Iterator<Item = &'a str>) -> MigrationState {
    let known: Vec<&str> = known.collect();
    match applied.iter().find(|m| !known.contains(&m.as_str())) {
        Some(newer) => MigrationState::Unknown(newer.clone()),
        None if applied.len() == known.len() => MigrationState::Current,
        None => MigrationState::Pending(known.len() - applied.len()),
    }
}

/// Where an app's data lives: SQLite in its data directory, or a
/// PostgreSQL database.
#[derive(Clone)]
pub enum Backend {
    Sqlite(std::sync::Arc<Database>),
    Postgres(std::sync::Arc<postgres::Postgres>),
}

impl Backend {
    /// Where it is, for people (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite(db) => db.path().display().to_string(),
            Backend::Postgres(pg) => pg.url().to_string(),
        }
    }

    /// Where it stands against this binary's migrations. Blocks.
    pub fn migration_state(&self) -> Result<MigrationState> {
        match self {
            Backend::Sqlite(db) => {
                let conn = db.connect(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                Ok(migration_state(&conn)?)
            }
            Backend::Postgres(pg) => pg.migration_state(),
        }
    }

    /// Whether this host should run job `name` now: on PostgreSQL, for the
    /// one host that claims this interval of `every` (the others find it
    /// claimed); on SQLite, which one host serves, always. Blocks.
    pub fn claim(&self, name: &str, every: std::time::Duration) -> Result<bool> {
        match self {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(pg) => pg.claim(name, every),
        }
    }

    /// Its size in bytes (for SQLite the file and its WAL). Blocks.
    pub fn size(&self) -> u64 {
        match self {
            Backend::Sqlite(db) => {
                let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
                size(db.path().to_owned()) + size(db.path().with_extension("db-wal"))
            }
            Backend::Postgres(pg) => pg.size().unwrap_or(0),
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

/// Tables that belong to the host. No grant may name them, whatever the
/// manifest says; names starting with `sqlite_` are SQLite's own.
pub const HOST_TABLES: &[&str] = &[
    "users",
    "sessions",
    "sign_in_limits",
    "refinery_schema_history",
];

/// The app's tables, each with its columns.
pub type Tables = BTreeMap<String, BTreeSet<String>>;

/// Whether `table` belongs to the host (or to SQLite).
pub fn is_host_table(table: &str) -> bool {
    let table = table.to_ascii_lowercase();
    HOST_TABLES.contains(&table.as_str()) || table.starts_with("sqlite_")
}

/// How long a connection waits for a lock held by another one.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database file of a data directory.
pub struct Database {
    path: PathBuf,
}

/// A migration that `open` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
}

impl Database {
    /// Opens (creating the data directory and the file if missing) and
    /// migrates the database of `data_dir`. Returns the migrations applied.
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<Applied>)> {
        init()?;
        // The directory and the file hold every password hash: readable by
        // their owner only. SQLite gives its -wal and -shm the file's mode.
        crate::data_dir::create_private_dir(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let db = Database {
            path: data_dir.join("rawalite.db"),
        };
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&db.path)
            .with_context(|| format!("cannot create {}", db.path.display()))?;
        let mut conn = Connection::open_with_flags(
            &db.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {}", db.path.display()))?;
        // WAL is a property of the file: set once, every connection gets it.
        conn.pragma_update(None, "journal_mode", "wal")?;
        configure(&conn)?;
        let applied = migrate(&mut conn)?;
        Ok((db, applied))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection with the host's settings. The file must exist.
    pub fn connect(&self, flags: OpenFlags) -> rusqlite::Result<Connection> {
        let conn =
            Connection::open_with_flags(&self.path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        configure(&conn)?;
        Ok(conn)
    }

    /// The app's tables (not the host's, not SQLite's), each with its
    /// columns (lower-cased, as SQLite compares them).
    pub fn app_tables(&self) -> Result<Tables> {
        let conn = self.connect(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut stmt = conn.prepare(
            "SELECT m.name, lower(p.name) FROM sqlite_schema m LEFT JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table'",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
        })?;
        let mut tables = Tables::new();
        for row in rows {
            let (table, column) = row?;
            if !is_host_table(&table) {
                tables.entry(table).or_default().extend(column);
            }
        }
        Ok(tables)
    }
}

/// Prepares SQLite for this process: the host's allocator, which charges a
/// guest's statements to its budget. `Database::open` does it; anything
/// else that opens SQLite in the same process (a test's own connection)
/// must call this first.
pub fn init() -> Result<()> {
    memory::install().map_err(anyhow::Error::msg)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "foreign_keys", true)?;
    // FULL: a transaction the host acknowledged survives a power cut too.
    conn.pragma_update(None, "synchronous", "full")?;
    conn.busy_timeout(BUSY_TIMEOUT)
}

fn migrate(conn: &mut Connection) -> Result<Vec<Applied>> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(file, sql)| {
            refinery::Migration::unapplied(&refinery_name(file)?, sql).map_err(Into::into)
        })
        .collect::<Result<Vec<_>>>()?;
    let report = refinery::Runner::new(&migrations)
        .set_grouped(false)
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run(conn)
        .map_err(migration_error)?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| Applied { name: file_name(m) })
        .collect())
}

/// What a failed migration means, with what to do.
fn migration_error(e: refinery::Error) -> anyhow::Error {
    match e.kind() {
        refinery::error::Kind::DivergentVersion(applied, _) => anyhow::anyhow!(
            "migration {} was changed after it was applied to this database; restore migrations/{}.sql and add a new migration instead",
            file_name(applied),
            file_name(applied)
        ),
        refinery::error::Kind::MissingVersion(applied) => anyhow::anyhow!(
            "this database has migration {} applied, which this rawalite does not know; use a newer rawalite",
            file_name(applied)
        ),
        _ => anyhow::anyhow!("migrating the database failed: {e}"),
    }
}

/// `0001_init` → `V1__init`, the form refinery parses.
fn refinery_name(file: &str) -> Result<String> {
    let Some((number, name)) = file.split_once('_') else {
        bail!("migration `{file}` must be named NNNN_name");
    };
    let version: u32 = number
        .parse()
        .with_context(|| format!("migration `{file}` must start with a number"))?;
    Ok(format!("V{version}__{name}"))
}

/// `V1__init` → `0001_init`, the file name people see.
fn file_name(m: &refinery::Migration) -> String {
    format!("{:04}_{}", m.version(), m.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".sql"))
            .map(|f| f.trim_end_matches(".sql").to_owned())
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(files, embedded);
        for (i, name) in embedded.iter().enumerate() {
            assert!(name.starts_with(&format!("{:04}_", i + 1)), "{name}");
        }
    }

    #[test]
    fn names_round_trip_through_refinery() {
        let m = refinery::Migration::unapplied(&refinery_name("0001_init").unwrap(), "").unwrap();
        assert_eq!(file_name(&m), "0001_init");
    }

    #[test]
    fn host_tables_include_sqlite_internals() {
        assert!(is_host_table("users"));
        assert!(is_host_table("SESSIONS"));
        assert!(is_host_table("sqlite_schema"));
        assert!(!is_host_table("customers"));
    }
}
