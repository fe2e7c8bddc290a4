//! The host's database on PostgreSQL, for deployments past one machine:
//! the app's tables in schema `app`, the host's (users, sessions, the
//! limiter's counts) in schema `host`, which no guest role may use, and one
//! LOGIN role per guest whose privileges mirror its `[guest.db]` grant.
//!
//! `rawalite migrate` is the one deploy step ([`Postgres::migrate`]): under
//! an advisory lock it applies `migrations/postgres/`, revokes PUBLIC's
//! defaults, and creates or updates every guest's role and its GRANTs
//! (revoking what the manifest no longer grants). Everything else only
//! checks: `serve` refuses a database whose migrations or grants are out of
//! step with the binary and the manifest.
//!
//! A call awaits its work on the caller's runtime ([`Postgres::awaited`]:
//! a guest's `db` call, a signed-in request's session) or, synchronous,
//! waits for it on its thread ([`Postgres::run`]: the host's own calls,
//! off the async workers as every blocking host call is), with a small
//! tokio runtime of this module's own watching the sockets.

pub mod guest;
mod pool;
mod provision;
mod root_usage;
mod scratch;
pub mod store;
mod tls;
mod url;
mod value;

pub use pool::{Pool, PoolError, Pooled, describe};
pub use scratch::Scratch;
pub use url::DatabaseUrl;
pub use value::Value;

use super::migrations::{
    Applied, MigrationState, compare, file_name, migration_error, refinery_name,
};
use super::{Database, Tables};
use crate::auth::store::Store;
use crate::capabilities::db::portable::Schema;
use crate::capabilities::db::{self, DbGrant, DbLimits};
use crate::capabilities::paths::SharedUsage;
use anyhow::{Context, Result, bail};
use pool::{INLINE, poll_until, sweep};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_postgres::{Client, Config};

/// The migrations for PostgreSQL, in order: the first is the twin of
/// `migrations/` up to 0003; then what several hosts share, which only
/// PostgreSQL has: the sign-in counts as rows, jobs, roots' usage.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_several_hosts",
        include_str!("../../../../migrations/postgres/0002_several_hosts.sql"),
    ),
    (
        "0003_root_usage",
        include_str!("../../../../migrations/postgres/0003_root_usage.sql"),
    ),
];

/// The advisory lock `migrate` holds (an arbitrary constant: "RAWALITE").
const MIGRATE_LOCK: i64 = 0x5241_5741_4c49_5445;

/// What tells the server, on every connection, that its client is gone
/// although no word came (a paused VM, a cut network): TCP keepalives
/// from its side, and a look at the socket during long statements
/// (PostgreSQL 14 and later).
macro_rules! alive {
    () => {
        "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3 -c client_connection_check_interval=10s"
    };
}

/// The host's own connections: a transaction left idle (its host stopped
/// inside it) ends after 5 s, and no statement waits more than 4 s for a
/// lock, so a stopped host holds no lock another host waits on for long.
/// (The limiter's and the roots' transactions set tighter bounds of their
/// own.)
const HOST_OPTIONS: &str = concat!(
    "-c idle_in_transaction_session_timeout=5s -c lock_timeout=4s ",
    alive!()
);

/// `config` with `ours` after the options it has (so ours win).
fn with_options(config: &Config, ours: &str) -> Config {
    let mut config = config.clone();
    let options = match config.get_options() {
        Some(given) => format!("{given} {ours}"),
        None => ours.to_owned(),
    };
    config.options(&options);
    config
}

/// Connections one guest may hold at once on one host.
pub const GUEST_CONNECTIONS: usize = 8;
/// Connections the host itself holds for users and sessions.
const HOST_CONNECTIONS: usize = 8;

/// A PostgreSQL database of an app.
pub struct Postgres {
    url: DatabaseUrl,
    /// Taken only when dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// The host's own connections (the URL's role).
    host: Arc<Pool>,
    /// Every pool, for the sweep of idle and old connections.
    pools: Arc<Mutex<Vec<std::sync::Weak<Pool>>>>,
}

impl Postgres {
    /// Connects to `url` (checking that it answers); nothing is created.
    pub fn connect(url: &DatabaseUrl) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()
            .context("cannot start the PostgreSQL client")?;
        let host = Arc::new(Pool::new(
            url,
            url.config().clone(),
            HOST_OPTIONS,
            HOST_CONNECTIONS,
        ));
        let pools = Arc::new(Mutex::new(vec![Arc::downgrade(&host)]));
        runtime.spawn(sweep(pools.clone()));
        let postgres = Postgres {
            host,
            url: url.clone(),
            runtime: Some(runtime),
            pools,
        };
        let host = postgres.host.clone();
        postgres
            .run(async move {
                host.get(Instant::now() + std::time::Duration::from_secs(10))
                    .await
                    .map(drop)
            })
            .with_context(|| format!("cannot connect to {}", postgres.url))?;
        Ok(postgres)
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Runs `work` to its end on the calling thread, which sleeps while it
    /// waits; the database's runtime watches the sockets and timers and
    /// wakes it. Not a task of the runtime's: a round trip then costs one
    /// wake-up of the caller rather than a hand-off to a runtime thread and
    /// back. Blocks: on an async worker it waits a moment ([`INLINE`]) in
    /// place, then steps off the worker.
    pub fn run<T>(&self, work: impl Future<Output = T>) -> T {
        let runtime = self.runtime.as_ref().expect("taken only when dropped");
        // Unconstrained: a caller inside a runtime's task (a guest rendered
        // on its thread's runtime) must not spend that task's cooperative
        // budget here. Once spent, tokio's resources answer Pending and
        // leave the wake-up to that runtime's scheduler, which cannot run
        // until this returns: the call would wait for its deadline.
        let mut work = std::pin::pin!(tokio::task::unconstrained(work));
        let first = {
            let _context = runtime.enter();
            poll_until(work.as_mut(), Some(Instant::now() + INLINE))
        };
        // Longer than a moment: off the caller's async worker for the rest
        // (stepped off outside this runtime's context, so the worker's
        // replacement comes from the caller's runtime).
        first.unwrap_or_else(|| {
            crate::blocking::blocking(|| {
                let _context = runtime.enter();
                poll_until(work.as_mut(), None).expect("polled until done")
            })
        })
    }

    /// Awaits `work` on the caller's runtime: the caller's task (a guest's
    /// fiber, a request) waits, and on `serve`'s runtime the worker serves
    /// others meanwhile. It takes a connection that runtime watches where
    /// it can ([`Driver`]), so the answer wakes the caller's runtime itself;
    /// on a runtime of one thread (`rawalite render`, the tests, the bench)
    /// that is this very thread, with no other between it and the socket.
    /// Outside any runtime, [`Postgres::run`].
    pub async fn awaited<T>(&self, work: impl Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => work.await,
            Err(_) => self.run(work),
        }
    }

    /// The host's own connections.
    pub fn host(&self) -> Arc<Pool> {
        self.host.clone()
    }

    /// A pool of connections as the role of guest `guest`.
    pub fn guest_pool(&self, guest: &str) -> Arc<Pool> {
        let role = provision::guest_role(&self.url, guest);
        let mut config = self.url.config().clone();
        config.user(&role);
        if let Some(password) = provision::role_password(&role) {
            config.password(password);
        }
        // A guest's query runs alone, outside any BEGIN: read-only and
        // READ COMMITTED by default. Its writes begin `SERIALIZABLE READ
        // WRITE` explicitly. The settings that change how the server reads
        // a statement are pinned as the host's check reads it (a role's or
        // database's `ALTER … SET` could otherwise turn `'a\'` into the
        // start of a longer string); a connection's options outrank those.
        let ours = concat!(
            r"-c default_transaction_read_only=on -c default_transaction_isolation=read\ committed",
            " -c standard_conforming_strings=on -c backslash_quote=safe_encoding",
            " -c transform_null_equals=off -c search_path=app ",
            alive!(),
        );
        let pool = Arc::new(Pool::new(&self.url, config, ours, GUEST_CONNECTIONS));
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&pool));
        pool
    }

    /// Applies the migrations this binary has and brings every guest's
    /// role and privileges in step with `guests` (name → grant), under an
    /// advisory lock so that hosts running it at once take turns.
    pub fn migrate(
        &self,
        guests: Vec<(String, crate::capabilities::db::DbGrant)>,
    ) -> Result<(Vec<Applied>, Vec<String>)> {
        self.url.direct()?;
        let host = self.host.clone();
        let url = self.url.clone();
        self.run(async move {
            let mut client = host.connect_alone().await?;
            client
                .query("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
                .await
                .context("taking the migration lock")?;
            let result = async {
                client
                    .batch_execute(
                        "CREATE SCHEMA IF NOT EXISTS host; CREATE SCHEMA IF NOT EXISTS app; SET search_path = host",
                    )
                    .await
                    .context("creating the schemas `app` and `host`")?;
                let applied = run_migrations(&mut client).await?;
                let notes = provision::provision(&client, &url, &guests).await?;
                Ok::<_, anyhow::Error>((applied, notes))
            }
            .await;
            let _ = client
                .query("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
                .await;
            result
        })
    }

    /// Runs `sql` (statements without parameters) on a connection of its
    /// own: what must not run in a transaction (`CREATE DATABASE`).
    pub fn batch(&self, sql: &str) -> Result<()> {
        let host = self.host.clone();
        let sql = sql.to_owned();
        self.run(async move {
            let client = host.connect_alone().await?;
            client.batch_execute(&sql).await?;
            Ok(())
        })
    }

    /// Where the database stands against this binary's migrations.
    pub fn migration_state(&self) -> Result<MigrationState> {
        let host = self.host.clone();
        let applied = self.run(async move {
            let client = host.get(deadline()).await?;
            client
                .drive(async {
                    let exists: bool = client
                        .query_one(
                            "SELECT to_regclass('host.refinery_schema_history') IS NOT NULL",
                            &[],
                        )
                        .await?
                        .get(0);
                    if !exists {
                        return Ok::<_, anyhow::Error>(Vec::new());
                    }
                    let rows = client
                        .query(
                            "SELECT version, name FROM host.refinery_schema_history ORDER BY version",
                            &[],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|r| format!("{:04}_{}", r.get::<_, i32>(0), r.get::<_, String>(1)))
                        .collect())
                })
                .await
        })?;
        Ok(compare(&applied, MIGRATIONS.iter().map(|(n, _)| *n)))
    }

    /// What differs between the guests' roles and `guests`' grants: one
    /// line per difference; none when in step.
    pub fn grant_drift(
        &self,
        guests: Vec<(String, crate::capabilities::db::DbGrant)>,
    ) -> Result<Vec<String>> {
        let host = self.host.clone();
        let url = self.url.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            client.drive(provision::drift(&client, &url, &guests)).await
        })
    }

    /// The other databases of the cluster that a role of `guests` may
    /// connect to, as their privileges say (`pg_hba.conf` may still refuse
    /// it): a guest's password would open them too.
    pub fn guest_reach(&self, guests: &[String]) -> Result<Vec<String>> {
        let roles: Vec<String> = guests
            .iter()
            .map(|guest| provision::guest_role(&self.url, guest))
            .collect();
        let host = self.host.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let rows = client
                .drive(client.query(
                    "SELECT d.datname::text FROM pg_database d \
                     WHERE d.datallowconn AND d.datname <> current_database() \
                     AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = ANY($1) \
                                 AND has_database_privilege(r.oid, d.oid, 'CONNECT')) \
                     ORDER BY 1",
                    &[&roles],
                ))
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    /// The app's tables, each with its columns, and each one's identity
    /// column.
    pub fn app_tables(&self) -> Result<(Tables, HashMap<String, String>)> {
        let host = self.host.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let rows = client
                .drive(client.query(
                    "SELECT c.relname, a.attname, a.attidentity <> '' \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                     WHERE n.nspname = 'app' AND c.relkind IN ('r', 'v', 'p')",
                    &[],
                ))
                .await?;
            let mut tables = Tables::new();
            let mut identity = HashMap::new();
            for row in rows {
                let table: String = row.get(0);
                let column: Option<String> = row.get(1);
                if let Some(column) = &column
                    && row.get::<_, Option<bool>>(2) == Some(true)
                {
                    identity.insert(table.clone(), column.clone());
                }
                tables.entry(table).or_default().extend(column);
            }
            Ok((tables, identity))
        })
    }

    /// Whether this host claims the current interval of `every` for job
    /// `name`: true for exactly one of the hosts that ask within it.
    pub fn claim(&self, name: &str, every: std::time::Duration) -> Result<bool> {
        let host = self.host.clone();
        // A tenth of slack: hosts' timers of the same interval tick apart.
        let seconds = every.as_secs_f64() * 0.9;
        let name = name.to_owned();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let claimed = client
                .drive(client.execute(
                    "INSERT INTO host.jobs (name, last_run) VALUES ($1, clock_timestamp()) \
                     ON CONFLICT (name) DO UPDATE SET last_run = excluded.last_run \
                     WHERE host.jobs.last_run < clock_timestamp() - make_interval(secs => $2)",
                    &[&name, &seconds],
                ))
                .await?;
            Ok(claimed == 1)
        })
    }

    /// The size of the database in bytes, for the metrics.
    pub fn size(&self) -> Result<u64> {
        let host = self.host.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let row = client
                .drive(client.query_one("SELECT pg_database_size(current_database())", &[]))
                .await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // It may be dropped on an async worker (when `serve` ends), where a
        // runtime may not wait for its threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Several hosts may share it (the `Arc` is what the guests, the store
/// and the roots hold of it): the roots' usage, the jobs and the sign-in
/// counts are kept in it for all of them.
impl Database for Arc<Postgres> {
    fn describe(&self) -> String {
        self.url().to_string()
    }

    fn migration_state(&self) -> Result<MigrationState> {
        Postgres::migration_state(self)
    }

    fn schema(&self) -> Result<Schema> {
        let (columns, identity) = self.app_tables()?;
        Ok(Schema {
            columns: columns.into_iter().collect(),
            identity,
        })
    }

    fn store(&self) -> Result<Box<dyn Store>> {
        Ok(Box::new(store::PostgresStore::new(self)))
    }

    /// The portable check always runs here: it is what renders the SQL
    /// PostgreSQL is sent.
    fn guest_db(
        &self,
        guest: &str,
        grant: Arc<DbGrant>,
        limits: DbLimits,
        schema: &Arc<Schema>,
        _portable: bool,
    ) -> Box<dyn db::Backend> {
        Box::new(guest::GuestPostgres::new(
            self.clone(),
            guest,
            schema.clone(),
            grant,
            limits,
        ))
    }

    fn shared_usage(&self, root: &str) -> Option<Box<dyn SharedUsage>> {
        Some(Box::new(root_usage::RootUsage::new(self, root)))
    }

    fn claim(&self, name: &str, every: std::time::Duration) -> Result<bool> {
        Postgres::claim(self, name, every)
    }

    fn size(&self) -> u64 {
        Postgres::size(self).unwrap_or(0)
    }

    /// Through `json_populate_record`, so that the server reads each value
    /// as its column's type (a date from text, a numeric from a number);
    /// an identity column given a value moves its sequence past it.
    fn insert(&self, table: &str, rows: &[Vec<(String, db::Value)>]) -> Result<()> {
        use crate::database::quoted;
        let qualified = format!("app.{}", quoted(table));
        let statements: Vec<(String, String)> = rows
            .iter()
            .map(|row| {
                let columns: Vec<String> = row.iter().map(|(c, _)| quoted(c)).collect();
                let columns = columns.join(", ");
                let json: serde_json::Map<String, serde_json::Value> = row
                    .iter()
                    .map(|(column, value)| (column.clone(), value::json(value)))
                    .collect();
                (
                    format!(
                        "INSERT INTO {qualified} ({columns}) SELECT {columns} \
                         FROM json_populate_record(NULL::{qualified}, $1::text::json)"
                    ),
                    serde_json::Value::Object(json).to_string(),
                )
            })
            .collect();
        let identity = self
            .app_tables()?
            .1
            .remove(table)
            .filter(|column| rows.iter().any(|row| row.iter().any(|(c, _)| c == column)));
        let host = self.host.clone();
        self.run(async move {
            let mut client = host.connect_alone().await?;
            let transaction = client.transaction().await?;
            for (sql, json) in &statements {
                transaction.execute(sql, &[json]).await?;
            }
            if let Some(column) = identity {
                let sync = format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), (SELECT max({}) FROM {qualified}))",
                    quoted(&column)
                );
                transaction.execute(&sync, &[&qualified, &column]).await?;
            }
            transaction.commit().await?;
            Ok(())
        })
    }

    fn in_data_dir(&self) -> bool {
        false
    }
}

/// How long the host waits for its own connections.
fn deadline() -> Instant {
    Instant::now() + std::time::Duration::from_secs(10)
}

/// refinery's runner against `client`, with the file names people see.
async fn run_migrations(client: &mut Client) -> Result<Vec<Applied>> {
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
        .run_async(client)
        .await
        .map_err(migration_error)?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| Applied { name: file_name(m) })
        .collect())
}

/// Refuses a URL that is not `postgres://` or `postgresql://`.
pub fn check_scheme(text: &str) -> Result<()> {
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        bail!(
            "a database URL starts with postgres:// (got `{}`)",
            url::redact(text)
        );
    }
    Ok(())
}
