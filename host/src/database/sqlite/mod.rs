//! The app's database on SQLite: `<data>/rawalite.db`, opened by the host
//! only (WAL, foreign keys, busy timeout) and migrated at every start from
//! the migrations embedded in the binary. Guests reach it through
//! connections of their own ([`guest`]), whose memory is charged to the
//! guest call that uses it ([`memory`]); the host's tables are [`store`]'s.

pub mod guest;
pub mod memory;
pub mod store;

use super::migrations::{
    Applied, MigrationState, compare, file_name, migration_error, refinery_name,
};
use super::{Database, Tables};
use crate::auth::store::Store;
use crate::capabilities::db::is_host_table;
use crate::capabilities::db::portable::Schema;
use crate::capabilities::db::{self, DbGrant, DbLimits};
use crate::capabilities::paths::SharedUsage;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The migrations, in order. Adding one is a new file in `migrations/` and
/// one line here (a unit test checks that the two agree).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../../../migrations/0001_init.sql"),
    ),
    (
        "0002_session_client",
        include_str!("../../../../migrations/0002_session_client.sql"),
    ),
    (
        "0003_sign_in_limits",
        include_str!("../../../../migrations/0003_sign_in_limits.sql"),
    ),
];

/// The migrations this binary knows, by file name (`0001_init`).
pub fn known_migrations() -> impl Iterator<Item = &'static str> {
    MIGRATIONS.iter().map(|(name, _)| *name)
}

/// The migrations applied to the database of `conn`, by file name.
fn applied_migrations(conn: &Connection) -> rusqlite::Result<Vec<String>> {
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

/// Where the database of `conn` stands against this binary's migrations.
fn migration_state(conn: &Connection) -> rusqlite::Result<MigrationState> {
    Ok(compare(&applied_migrations(conn)?, known_migrations()))
}

/// How long a connection waits for a lock held by another one.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database file of a data directory.
#[derive(Clone)]
pub struct Sqlite {
    path: PathBuf,
}

impl Sqlite {
    /// Opens (creating the data directory and the file if missing) and
    /// migrates the database of `data_dir`. Returns the migrations applied.
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<Applied>)> {
        init()?;
        // The directory and the file hold every password hash: readable by
        // their owner only. SQLite gives its -wal and -shm the file's mode.
        crate::data_dir::create(data_dir)?;
        let db = Sqlite {
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

/// A database file read as it is, without migrating it: what a backup,
/// a restore and `doctor` look at.
pub struct ReadOnly(Connection);

impl ReadOnly {
    pub fn open(path: &Path) -> Result<Self> {
        init()?;
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(ReadOnly(conn))
    }

    /// SQLite's `integrity_check`: `ok`, or the first problem found.
    pub fn integrity(&self) -> Result<String> {
        Ok(self
            .0
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// The migrations applied, by file name.
    pub fn applied_migrations(&self) -> Result<Vec<String>> {
        Ok(applied_migrations(&self.0)?)
    }

    pub fn migration_state(&self) -> Result<MigrationState> {
        Ok(migration_state(&self.0)?)
    }

    /// Writes a consistent copy to `dest` (`VACUUM INTO`, one read
    /// transaction's view, while writers go on).
    pub fn snapshot(&self, dest: &Path) -> Result<()> {
        self.0
            .execute("VACUUM INTO ?", [dest.to_string_lossy()])
            .context("taking a snapshot of the database")?;
        Ok(())
    }
}

/// One host has the file: it keeps the roots' usage in memory, runs
/// every job, and its backups are the data directory's.
impl Database for Sqlite {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn migration_state(&self) -> Result<MigrationState> {
        let conn = self.connect(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(migration_state(&conn)?)
    }

    fn schema(&self) -> Result<Schema> {
        Ok(Schema {
            columns: self.app_tables()?.into_iter().collect(),
            identity: Default::default(),
        })
    }

    fn store(&self) -> Result<Box<dyn Store>> {
        Ok(Box::new(store::SqliteStore::new(self)?))
    }

    fn guest_db(
        &self,
        _guest: &str,
        grant: Arc<DbGrant>,
        limits: DbLimits,
        schema: &Arc<Schema>,
        portable: bool,
    ) -> Box<dyn db::Backend> {
        Box::new(guest::GuestSqlite::new(
            self.clone(),
            grant,
            limits,
            portable.then(|| schema.clone()),
        ))
    }

    fn shared_usage(&self, _root: &str) -> Option<Box<dyn SharedUsage>> {
        None
    }

    fn claim(&self, _name: &str, _every: Duration) -> Result<bool> {
        Ok(true)
    }

    /// The file and its WAL.
    fn size(&self) -> u64 {
        let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        size(self.path.clone()) + size(self.path.with_extension("db-wal"))
    }

    fn insert(&self, table: &str, rows: &[Vec<(String, db::Value)>]) -> Result<()> {
        use rusqlite::types::Value as Sql;
        let mut conn = self.connect(OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let transaction = conn.transaction()?;
        for row in rows {
            let columns: Vec<String> = row.iter().map(|(c, _)| super::quoted(c)).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                super::quoted(table),
                columns.join(", "),
                vec!["?"; row.len()].join(", ")
            );
            let values = row.iter().map(|(_, value)| match value {
                db::Value::Null => Sql::Null,
                db::Value::Integer(v) => Sql::Integer(*v),
                db::Value::Real(v) => Sql::Real(*v),
                db::Value::Text(v) => Sql::Text(v.clone()),
                db::Value::Blob(v) => Sql::Blob(v.clone()),
            });
            transaction.execute(&sql, rusqlite::params_from_iter(values))?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn in_data_dir(&self) -> bool {
        true
    }
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
}
