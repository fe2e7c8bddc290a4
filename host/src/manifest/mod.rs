//! `rawalite.toml`: the app, its guests, their routes, grants and limits.
//! Parsed once at start; an unknown key or a bad value is an error that
//! names the file, the line, the key and what is wrong.

mod error;
mod schema;
mod validate;

pub use error::ManifestError;

use crate::net::Network;
use error::parse_toml;
use schema::RawManifest;
use validate::{check_host, check_name, check_route, check_script};

use crate::capabilities::db::DbGrant;
use crate::capabilities::paths::PathsGrant;
use crate::capabilities::session::SessionGrant;
use crate::runtime::Limits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed manifest with every path made absolute.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file itself.
    pub file: PathBuf,
    pub app_name: String,
    /// Where the database and the roots live, unless `--data` says otherwise.
    pub data_dir: PathBuf,
    /// The PATHS registry: root name → directory, relative to the data
    /// directory unless absolute.
    pub roots: BTreeMap<String, PathBuf>,
    /// The app's own static assets, served by `serve` at `/static/`.
    pub static_dir: Option<PathBuf>,
    /// The names `serve` answers to when it listens off loopback.
    pub hosts: Vec<String>,
    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<Network>,
    /// `[app.backup]`, when `serve` takes backups on a schedule.
    pub backup: Option<BackupSchedule>,
    /// `[app] database`: a PostgreSQL URL; SQLite in the data directory
    /// when absent. `RAWALITE_DATABASE_URL` and `--database` override it.
    pub database: Option<String>,
    /// `[app] portable_sql`: hold guests' SQL to the portable subset on
    /// SQLite too (it always is on PostgreSQL).
    pub portable_sql: bool,
    pub guests: Vec<GuestEntry>,
}

/// One `[[guest]]`.
#[derive(Debug, Clone)]
pub struct GuestEntry {
    pub name: String,
    pub component: PathBuf,
    /// The path prefix `serve` sends to this guest; `None` for guests that
    /// are only rendered from the command line.
    pub route: Option<String>,
    pub limits: Limits,
    /// `[guest.db]`; `None` means no database at all.
    pub db: Option<DbGrant>,
    /// `[guest.paths]`; empty means no roots.
    pub paths: PathsGrant,
    /// `[guest.session]`; the default requires nothing.
    pub session: SessionGrant,
    /// `[guest.browser]`; the default: no script, requests from its own
    /// pages only.
    pub browser: BrowserGrant,
}

/// `[guest.browser]`: what a guest's pages may do in a visitor's browser
/// beyond the default, which is no script at all and state changes only
/// from the guest's own pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserGrant {
    /// Files of the app's static directory its pages may run, as they are
    /// served (`/static/app.js`).
    #[serde(default)]
    pub scripts: Vec<String>,
    /// Guests whose pages may send it forms and requests.
    #[serde(default)]
    pub accept_from: Vec<String>,
}

impl GuestEntry {
    /// Whether `[guest.db]` grants any table.
    pub fn grants_db(&self) -> bool {
        self.db.as_ref().is_some_and(|db| !db.is_empty())
    }

    /// Whether `[guest.paths]` grants any root.
    pub fn grants_paths(&self) -> bool {
        !self.paths.is_empty()
    }
}

impl Manifest {
    /// Reads and checks the manifest at `file`.
    pub fn load(file: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(file).map_err(|e| ManifestError {
            file: file.to_owned(),
            line: None,
            message: format!("cannot read the manifest: {e}"),
        })?;
        Self::parse(file, &text)
    }

    /// Checks manifest `text`, resolving relative paths against `file`'s directory.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = parse_toml(file, text)?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        let error = |key: String, message: String| ManifestError {
            file: file.to_owned(),
            line: None,
            message: format!("{key}: {message}"),
        };

        for (name, path) in &raw.paths {
            check_name(name).map_err(|m| error(format!("paths.{name}"), m))?;
            if path.as_os_str().is_empty() {
                return Err(error(
                    format!("paths.{name}"),
                    "the path is empty".to_owned(),
                ));
            }
        }
        let mut guests: Vec<GuestEntry> = Vec::with_capacity(raw.guest.len());
        for (i, g) in raw.guest.into_iter().enumerate() {
            let key = |field: &str| format!("guest[{i}] ({}).{field}", g.name);
            check_name(&g.name).map_err(|m| error(format!("guest[{i}].name"), m))?;
            if guests.iter().any(|other| other.name == g.name) {
                return Err(error(key("name"), "another guest has this name".to_owned()));
            }
            if let Some(route) = &g.route {
                check_route(route).map_err(|m| error(key("route"), m))?;
                if let Some(other) = guests.iter().find(|o| o.route.as_ref() == Some(route)) {
                    return Err(error(
                        key("route"),
                        format!("guest `{}` already has the route `{route}`", other.name),
                    ));
                }
            }
            let limits = g.limits.resolve().map_err(|m| error(key("limits"), m))?;
            let db = g.db.map(DbGrant::normalized);
            if let Some(grant) = &db {
                grant.check().map_err(|m| error(key("db"), m))?;
            }
            for (root, grant) in &g.paths {
                let key = key(&format!("paths.{root}"));
                if !raw.paths.contains_key(root) {
                    return Err(error(
                        key,
                        format!(
                            "there is no root `{root}` in [paths] (roots: {})",
                            raw.paths.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                grant.check().map_err(|m| error(key, m))?;
            }
            for role in &g.session.roles {
                crate::auth::check_role(role)
                    .map_err(|e| error(key("session.roles"), e.to_string()))?;
            }
            let static_dir = raw.app.r#static.as_ref().map(|dir| base.join(dir));
            for script in &g.browser.scripts {
                check_script(script, static_dir.as_deref())
                    .map_err(|m| error(key("browser.scripts"), m))?;
            }
            guests.push(GuestEntry {
                component: base.join(&g.component),
                name: g.name,
                route: g.route,
                limits,
                db,
                paths: g.paths,
                session: g.session,
                browser: g.browser,
            });
        }
        for (i, g) in guests.iter().enumerate() {
            for sender in &g.browser.accept_from {
                if sender == &g.name || !guests.iter().any(|o| &o.name == sender) {
                    return Err(error(
                        format!("guest[{i}] ({}).browser.accept_from", g.name),
                        format!(
                            "`{sender}` is not another guest of this manifest (guests: {})",
                            guests
                                .iter()
                                .map(|o| o.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }

        if let Some(url) = &raw.app.database {
            crate::database::postgres::check_scheme(url)
                .map_err(|e| error("app.database".to_owned(), e.to_string()))?;
        }
        for host in &raw.app.hosts {
            check_host(host).map_err(|m| error("app.hosts".to_owned(), m))?;
        }
        let backup = match raw.app.backup {
            Some(b) if b.keep == 0 => {
                return Err(error(
                    "app.backup.keep".to_owned(),
                    "keep at least one backup".to_owned(),
                ));
            }
            Some(b) => Some(BackupSchedule {
                every: b.every.0,
                keep: b.keep,
                dir: base.join(b.dir),
            }),
            None => None,
        };
        Ok(Manifest {
            file: file.to_owned(),
            app_name: raw.app.name,
            data_dir: base.join(raw.app.data_dir),
            roots: raw.paths,
            static_dir: raw.app.r#static.map(|dir| base.join(dir)),
            hosts: raw.app.hosts,
            trusted_proxies: raw.app.trusted_proxies,
            backup,
            database: raw.app.database,
            portable_sql: raw.app.portable_sql,
            guests,
        })
    }

    /// The guest called `name`, or an error listing the guests there are.
    pub fn guest(&self, name: &str) -> Result<&GuestEntry, ManifestError> {
        self.guests
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| ManifestError {
                file: self.file.clone(),
                line: None,
                message: format!(
                    "no guest named `{name}` (guests: {})",
                    self.guests
                        .iter()
                        .map(|g| g.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The guest `serve` sends `path` to: the longest route that holds it.
    pub fn guest_for_path(&self, path: &str) -> Option<&GuestEntry> {
        self.guests
            .iter()
            .filter(|g| g.route.as_deref().is_some_and(|r| route_matches(r, path)))
            .max_by_key(|g| g.route.as_ref().map_or(0, String::len))
    }
}

/// Whether route prefix `route` holds `path`, on whole segments:
/// `/customers` holds `/customers` and `/customers/7`, not `/customersx`.
pub fn route_matches(route: &str, path: &str) -> bool {
    route == "/"
        || path == route
        || path
            .strip_prefix(route)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `[app.backup]`: `serve` writes a backup into `dir` every `every`,
/// keeping the newest `keep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    pub every: std::time::Duration,
    pub keep: usize,
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests;
