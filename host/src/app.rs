//! An app as its manifest describes it: its database (SQLite in its data
//! directory, opened and migrated; or PostgreSQL, which must be migrated
//! already), and its guests loaded with their limits and grants. Refuses a grant that names a table the database does not have,
//! and a root that is, contains or lies inside another root, or contains
//! the data directory (where the database lives).

use crate::auth::{Auth, Policy};
use crate::capabilities::Grants;
use crate::capabilities::db::portable::Schema;
use crate::capabilities::db::{DbLimits, GuestDb};
use crate::capabilities::paths::{GuestPaths, Root};
use crate::database::postgres::DatabaseUrl;
use crate::database::{Applied, Database};
use crate::manifest::{GuestEntry, Manifest};
use crate::runtime::{Guest, Runtime};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct App {
    pub manifest: Manifest,
    pub data_dir: PathBuf,
    pub database: Arc<dyn Database>,
    pub auth: Arc<Auth>,
    pub runtime: Runtime,
    /// The migrations this start applied.
    pub migrations: Vec<Applied>,
    /// The app's tables and their columns, which grants are checked
    /// against and the SQL check resolves names with.
    schema: Arc<Schema>,
    /// The PATHS registry, opened.
    roots: BTreeMap<String, Arc<Root>>,
}

/// Refuses roots that overlap each other or hold the data directory: a
/// guest granted one root must not reach another's files (or the
/// database) through it. Paths are compared after symlinks are resolved.
fn check_apart(manifest: &Manifest, data_dir: &Path, roots: &[(&str, PathBuf)]) -> Result<()> {
    for (i, (name, path)) in roots.iter().enumerate() {
        if data_dir.starts_with(path) {
            bail!(
                "{}: [paths] {name} = {} holds the data directory {} and its database; give the root a directory of its own",
                manifest.file.display(),
                path.display(),
                data_dir.display()
            );
        }
        for (other, other_path) in &roots[i + 1..] {
            if path.starts_with(other_path) || other_path.starts_with(path) {
                bail!(
                    "{}: [paths] {name} ({}) and {other} ({}) overlap; each root needs a directory of its own, neither inside the other",
                    manifest.file.display(),
                    path.display(),
                    other_path.display()
                );
            }
        }
    }
    Ok(())
}

impl App {
    /// Opens the app's database: PostgreSQL when `RAWALITE_DATABASE_URL`
    /// or `[app] database` names one, else SQLite in `data_dir` (else the
    /// manifest's), whose pending migrations are applied.
    pub fn open(manifest: Manifest, data_dir: Option<PathBuf>, runtime: Runtime) -> Result<Self> {
        Self::open_with(manifest, data_dir, None, runtime)
    }

    /// [`App::open`], with a command's `--database URL`, which overrides
    /// the environment and the manifest. A PostgreSQL database must be
    /// migrated, and its roles in step with the manifest, already: that is
    /// `rawalite migrate`'s job, which no other command does.
    pub fn open_with(
        manifest: Manifest,
        data_dir: Option<PathBuf>,
        database: Option<&str>,
        runtime: Runtime,
    ) -> Result<Self> {
        let url = crate::database::url(database, manifest.database.as_deref())?;
        Self::open_on(manifest, data_dir, url.as_ref(), runtime)
    }

    /// [`App::open_with`] on the database of `url` (PostgreSQL, migrated
    /// already), or SQLite in the data directory without.
    pub fn open_on(
        manifest: Manifest,
        data_dir: Option<PathBuf>,
        url: Option<&DatabaseUrl>,
        runtime: Runtime,
    ) -> Result<Self> {
        let data_dir = data_dir.unwrap_or_else(|| manifest.data_dir.clone());
        // The roots live in the data directory whichever the backend.
        crate::data_dir::create(&data_dir)?;
        let grants = crate::database::Grants {
            manifest: &manifest.file,
            guests: db_grants(&manifest),
        };
        let (database, migrations) = crate::database::open(url, &data_dir, Some(grants))?;
        let schema = database.schema()?;
        let auth = Auth::new(database.store()?, Policy::default())?;
        let mut roots = BTreeMap::new();
        let mut places = Vec::new();
        for (name, path) in &manifest.roots {
            let path = data_dir.join(path);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create root `{name}` at {}", path.display()))?;
            places.push((name.as_str(), std::fs::canonicalize(&path)?));
        }
        check_apart(&manifest, &std::fs::canonicalize(&data_dir)?, &places)?;
        for (name, path) in &manifest.roots {
            let path = data_dir.join(path);
            // Other hosts may share the data directory.
            let root = match database.shared_usage(name) {
                Some(shared) => Root::open_shared(&path, shared),
                None => Root::open(&path),
            }
            .with_context(|| format!("cannot open root `{name}` at {}", path.display()))?;
            roots.insert(name.clone(), Arc::new(root));
        }
        Ok(App {
            manifest,
            data_dir,
            database,
            auth,
            runtime,
            migrations,
            schema: Arc::new(schema),
            roots,
        })
    }

    /// The PATHS registry's roots, by name.
    pub fn roots(&self) -> impl Iterator<Item = (&str, &Root)> {
        self.roots
            .iter()
            .map(|(name, root)| (name.as_str(), root.as_ref()))
    }

    /// Loads the guest called `name` with its limits and grants.
    pub fn load(&self, name: &str) -> Result<Guest> {
        self.load_entry(self.manifest.guest(name)?)
    }

    /// Loads a guest from `entry`, which may come from a newer version of
    /// the manifest (`serve --watch`); its roots must be in this app's
    /// `[paths]`.
    pub fn load_entry(&self, entry: &GuestEntry) -> Result<Guest> {
        let grants = self.grants(entry)?;
        Ok(self
            .runtime
            .load(&entry.name, &entry.component, entry.limits, grants)?)
    }

    /// `load_entry` when the component is compiled already (quick);
    /// `None`, after the same checks (grants, imports), when it is not.
    pub fn load_if_compiled(&self, entry: &GuestEntry) -> Result<Option<Guest>> {
        let grants = self.grants(entry)?;
        Ok(self
            .runtime
            .load_if_compiled(&entry.name, &entry.component, entry.limits, grants)?)
    }

    /// Loads every guest of the manifest.
    pub fn load_all(&self) -> Result<Vec<Guest>> {
        self.manifest
            .guests
            .iter()
            .map(|g| self.load(&g.name))
            .collect()
    }

    /// What `entry` is granted in this app: its database tables (checked
    /// against the migrations' schema), its roots, its session.
    pub fn grants(&self, entry: &GuestEntry) -> Result<Grants> {
        let db = match &entry.db {
            None => None,
            Some(grant) => {
                let missing: Vec<&str> = grant
                    .readable()
                    .into_iter()
                    .filter(|t| !self.schema.columns.contains_key(*t))
                    .collect();
                if !missing.is_empty() {
                    bail!(
                        "{}: guest `{}`: the db grant names {}, which the database does not have (tables: {})",
                        self.manifest.file.display(),
                        entry.name,
                        missing
                            .iter()
                            .map(|t| format!("`{t}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        self.schema
                            .columns
                            .keys()
                            .cloned()
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                let grant = Arc::new(grant.clone());
                let backend = self.database.guest_db(
                    &entry.name,
                    grant.clone(),
                    DbLimits::of(&entry.limits),
                    &self.schema,
                    self.manifest.portable_sql,
                );
                Some(Arc::new(GuestDb::new(grant, backend)))
            }
        };
        let paths = if entry.paths.is_empty() {
            None
        } else {
            let mut roots = BTreeMap::new();
            for (name, grant) in &entry.paths {
                // The roots are opened at start; a manifest reloaded since
                // (`serve --watch`) may name one this server does not have.
                let root = self.roots.get(name).with_context(|| {
                    format!(
                        "{}: guest `{}`: root `{name}` was added to [paths] after this server started; restart `serve` to open it",
                        self.manifest.file.display(),
                        entry.name
                    )
                })?;
                roots.insert(name.clone(), (root.clone(), *grant));
            }
            Some(Arc::new(GuestPaths::new(roots)))
        };
        Ok(Grants {
            db,
            paths,
            session: entry.session.clone(),
            auth: Some(self.auth.clone()),
        })
    }
}

/// Each guest's `[guest.db]` grant (an empty one for a guest without).
pub fn db_grants(manifest: &Manifest) -> Vec<(String, crate::capabilities::db::DbGrant)> {
    manifest
        .guests
        .iter()
        .map(|g| (g.name.clone(), g.db.clone().unwrap_or_default()))
        .collect()
}
