//! One case, start to end: a fresh data directory (and database), its
//! fixtures, the real component under its manifest's grants, one render
//! with its capability calls collected, then its expectations checked.

use super::case::Case;
use super::expect;
use crate::cli::trace::{Collect, Records};
use anyhow::{Context, Result};
use rawalite_host::app::{App, db_grants};
use rawalite_host::auth::password::Password;
use rawalite_host::capabilities::Request;
use rawalite_host::capabilities::session::Caller;
use rawalite_host::database::postgres::{Postgres, Scratch};
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{Guest, Runtime};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tracing_subscriber::prelude::*;

/// The password of a case's users that give none: they are signed in by
/// the case, never by a password (the case's database is thrown away).
const UNUSED_PASSWORD: &str = "a password nobody types";

/// What every case of a run shares.
pub(super) struct Env {
    pub(super) manifest: Manifest,
    pub(super) runtime: Runtime,
    /// Each guest the cases render, loaded once; a case gives its copy
    /// the grants of its own world.
    pub(super) guests: HashMap<String, Guest>,
    /// The PostgreSQL server each case's database is made on; SQLite in
    /// the case's directory without.
    pub(super) postgres: Option<Arc<Postgres>>,
    pub(super) snapshots: PathBuf,
    pub(super) update_snapshots: bool,
}

/// A case's result: what failed (nothing when it passed) and what was
/// done on the side (a snapshot written).
#[derive(Default)]
pub(super) struct Verdict {
    pub(super) failures: Vec<String>,
    pub(super) notes: Vec<String>,
}

/// Runs `case` in a world of its own; a fixture or setup that fails is
/// the case's failure.
pub(super) fn run(case: &Case, env: &Env, index: usize) -> Verdict {
    match world(case, env, index).and_then(|world| render(case, env, &world)) {
        Ok(verdict) => verdict,
        Err(e) => Verdict {
            failures: vec![format!("{e:#}")],
            notes: Vec::new(),
        },
    }
}

/// The case's own data directory and database, with its fixtures in.
struct World {
    app: App,
    caller: Caller,
    // Dropped after `app`, which has files open in it.
    _dir: tempfile::TempDir,
    _database: Option<Scratch>,
}

fn world(case: &Case, env: &Env, index: usize) -> Result<World> {
    let dir = tempfile::Builder::new()
        .prefix("rawalite-test-")
        .tempdir()
        .context("cannot make the case's data directory")?;
    for (root, file, text) in &case.files {
        let path = dir.path().join(&env.manifest.roots[root]).join(file);
        std::fs::create_dir_all(path.parent().expect("a file in a root"))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let database = env
        .postgres
        .as_ref()
        .map(|server| Scratch::create(server, index, db_grants(&env.manifest)))
        .transpose()?;
    let app = App::open_on(
        env.manifest.clone(),
        Some(dir.path().to_owned()),
        database.as_ref().map(Scratch::url),
        env.runtime.clone(),
    )?;
    insert_rows(case, &app)?;
    for user in &case.users {
        let password = user
            .password
            .clone()
            .unwrap_or_else(|| UNUSED_PASSWORD.to_owned());
        app.auth
            .add_user(
                &user.name,
                user.display_name.as_deref(),
                &user.roles,
                &Password::new(password),
            )
            .with_context(|| format!("users: `{}`", user.name))?;
    }
    let mut caller = Caller::default();
    if let Some(name) = &case.user {
        caller.user = Some(match app.auth.user(name)? {
            // A user of `users` signs in with the roles given there.
            Some(user) if case.roles.is_empty() => user,
            Some(_) => anyhow::bail!(
                "user `{name}` is in `users` and has `roles` here too: give the roles in one place"
            ),
            None => app
                .auth
                .add_user(
                    name,
                    None,
                    &case.roles,
                    &Password::new(UNUSED_PASSWORD.into()),
                )
                .with_context(|| format!("user `{name}`"))?,
        });
    }
    Ok(World {
        app,
        caller,
        _dir: dir,
        _database: database,
    })
}

/// The case's rows, each table's in one transaction, into tables the
/// migrations made. A table whose rows refer to another's is tried again
/// after the others, so the file's order of tables does not matter.
fn insert_rows(case: &Case, app: &App) -> Result<()> {
    if case.rows.is_empty() {
        return Ok(());
    }
    let schema = app.database.schema()?;
    let mut pending = Vec::new();
    for (table, rows) in &case.rows {
        let Some((name, columns)) = schema
            .columns
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(table))
        else {
            let mut tables: Vec<&String> = schema.columns.keys().collect();
            tables.sort();
            anyhow::bail!(
                "rows: there is no table `{table}`: the migrations make {}",
                tables
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let rows = rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|(column, value)| {
                        let column = column.to_lowercase();
                        if !columns.contains(&column) {
                            anyhow::bail!(
                                "rows of `{table}`: there is no column `{column}` (columns: {})",
                                columns.iter().cloned().collect::<Vec<_>>().join(", ")
                            );
                        }
                        Ok((column, value.clone()))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        pending.push((name.as_str(), rows));
    }
    while !pending.is_empty() {
        let before = pending.len();
        let mut last = None;
        pending.retain(|(table, rows)| match app.database.insert(table, rows) {
            Ok(()) => false,
            Err(e) => {
                last = Some(e.context(format!("rows of `{table}`")));
                true
            }
        });
        if pending.len() == before
            && let Some(e) = last
        {
            return Err(e);
        }
    }
    Ok(())
}

fn render(case: &Case, env: &Env, world: &World) -> Result<Verdict> {
    let loaded = &env.guests[&case.guest.name];
    let mut guest = loaded.with_grants(world.app.grants(&case.guest)?);
    if let Some(pinned) = case.pinned {
        guest = guest.pinned(pinned);
    }
    let request = Request {
        method: case.method.clone(),
        base: case.base.clone(),
        path: case.path.clone(),
        query: case.query.clone(),
        headers: case.headers.clone(),
        body: case.body.clone(),
    };
    // The calls land in this case's records: the subscriber is this
    // thread's while the guest renders on it.
    let records = Records::default();
    let subscriber = tracing_subscriber::registry().with(Collect::new(&records));
    let rendered = tracing::subscriber::with_default(subscriber, || {
        guest.render(&request, world.caller.clone())
    });
    Ok(expect::check(case, env, &rendered.outcome, &records.take()))
}
