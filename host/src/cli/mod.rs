//! The `rawalite` command line: argument parsing and one module per
//! subcommand. Exit codes are part of the contract: see [`Exit`].

mod audit;
mod backup;
mod build;
mod compile;
mod doctor;
mod inspect;
mod new;
mod render;
mod sdk;
mod serve;
mod session;
mod test;
pub mod trace;
mod user;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use rawalite_host::auth::{Auth, Policy};
use rawalite_host::database::postgres::DatabaseUrl;
use rawalite_host::manifest::Manifest;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit codes shared by the subcommands.
pub enum Exit {
    /// The command did what was asked.
    Ok = 0,
    /// `inspect`: at least one import is refused.
    Refused = 1,
    /// Bad usage, a bad manifest, or a component that cannot be loaded.
    Usage = 2,
    /// `render`: the guest returned a `types.error`.
    GuestError = 3,
    /// `render`: the host stopped the guest (trap, deadline, memory, size).
    Stopped = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// RawaLite runs application screens as sandboxed WebAssembly components
/// that can touch only the database tables, file roots and session their
/// manifest grants.
#[derive(Parser)]
#[command(name = "rawalite", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Render(render::RenderArgs),
    Inspect(inspect::InspectArgs),
    Audit(audit::AuditArgs),
    New(new::NewArgs),
    Build(build::BuildArgs),
    Compile(compile::CompileArgs),
    Migrate(MigrateArgs),
    #[command(subcommand)]
    User(user::UserCommand),
    #[command(subcommand)]
    Session(session::SessionCommand),
    Backup(backup::BackupArgs),
    Restore(backup::RestoreArgs),
    Doctor(doctor::DoctorArgs),
    Test(test::TestArgs),
}

impl Cli {
    pub fn run(self) -> Result<Exit> {
        match self.command {
            Command::Serve(args) => serve::run(args),
            Command::Render(args) => render::run(args),
            Command::Inspect(args) => inspect::run(args),
            Command::Audit(args) => audit::run(args),
            Command::New(args) => new::run(args),
            Command::Build(args) => build::run(args),
            Command::Compile(args) => compile::run(args),
            Command::Migrate(args) => migrate(args),
            Command::User(command) => user::run(command),
            Command::Session(command) => session::run(command),
            Command::Backup(args) => backup::backup(args),
            Command::Restore(args) => backup::restore(args),
            Command::Doctor(args) => doctor::run(args),
            Command::Test(args) => test::run(args),
        }
    }

    /// Whether this is `render --trace`, which collects the guest's calls.
    pub fn wants_trace(&self) -> bool {
        matches!(&self.command, Command::Render(args) if args.trace)
    }

    /// Whether `serve` was asked for JSON logs.
    pub fn wants_json_log(&self) -> bool {
        matches!(&self.command, Command::Serve(args) if args.log_format == serve::LogFormat::Json)
    }

    /// Whether this is the long-running server.
    pub fn is_server(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }

    /// The default log level: the access and audit log for `serve`, quiet
    /// for one-shot commands.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info,refinery_core=warn",
            // What an operator changes (a revoked session) leaves its audit
            // event on stderr.
            Command::Session(_) => "error,rawalite::audit=info",
            _ => "error",
        }
    }
}

/// Where the data directory is: `--data`, else the manifest's `data_dir`;
/// and the database: `--database`, else `RAWALITE_DATABASE_URL`, else the
/// manifest's `[app] database`, else SQLite in the data directory.
#[derive(Args)]
struct DataArgs {
    /// The data directory; default: the `data_dir` of the manifest.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The manifest whose `data_dir` (and `[app] database`) to use.
    #[arg(long, value_name = "FILE", default_value = "rawalite.toml")]
    manifest: PathBuf,
    /// A PostgreSQL database (postgres://USER@HOST/DB) instead of SQLite in
    /// the data directory; overrides RAWALITE_DATABASE_URL and the
    /// manifest's [app] database. A password in it is never printed.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

impl DataArgs {
    /// The manifest, when there is one.
    fn manifest(&self) -> Result<Option<Manifest>> {
        Ok(if self.manifest.is_file() {
            Some(Manifest::load(&self.manifest)?)
        } else {
            None
        })
    }

    /// The PostgreSQL database to use, if any.
    fn url(&self) -> Result<Option<DatabaseUrl>> {
        let manifest = self.manifest()?;
        rawalite_host::database::url(
            self.database.as_deref(),
            manifest.as_ref().and_then(|m| m.database.as_deref()),
        )
    }

    /// The users and sessions: PostgreSQL when named (migrated already),
    /// else SQLite in the data directory (migrated if need be).
    fn auth(&self) -> Result<Arc<Auth>> {
        let url = self.url()?;
        // PostgreSQL keeps nothing in the data directory.
        let dir = match url {
            Some(_) => PathBuf::new(),
            None => self.dir()?,
        };
        let (database, _) = rawalite_host::database::open(url.as_ref(), &dir, None)?;
        Auth::new(database.store()?, Policy::default())
    }

    fn dir(&self) -> Result<PathBuf> {
        match &self.data {
            Some(dir) => Ok(dir.clone()),
            None if self.manifest.is_file() => Ok(Manifest::load(&self.manifest)?.data_dir),
            None => bail!(
                "no --data DIR given and no {} here to take `data_dir` from",
                self.manifest.display()
            ),
        }
    }
}

/// A listing (`user list`, `session list`): a table for people, or JSON.
#[derive(Args)]
struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataArgs,
}

/// Create the data directory and the database if missing, and apply the
/// migrations it lacks. On SQLite every other command does this too; this
/// one says what it did. On PostgreSQL this is the one deploy step (run it
/// with a role that may create roles): the app's and the host's tables,
/// one role per guest with privileges that mirror its [guest.db] grant
/// (revoking what the manifest no longer grants), under an advisory lock.
#[derive(Args)]
struct MigrateArgs {
    #[command(flatten)]
    data: DataArgs,
}

fn migrate(args: MigrateArgs) -> Result<Exit> {
    let guests = match args.data.manifest()? {
        Some(manifest) => rawalite_host::app::db_grants(&manifest),
        None => Vec::new(),
    };
    let url = args.data.url()?;
    let dir = match url {
        Some(_) => PathBuf::new(),
        None => args.data.dir()?,
    };
    let migrated = rawalite_host::database::migrate(url.as_ref(), &dir, guests.clone())?;
    let (shown, applied, mut notes) = (migrated.database, migrated.applied, migrated.notes);
    if url.is_some() {
        notes.extend(guests.iter().map(|(guest, grant)| {
            let tables = |set: std::collections::BTreeSet<&str>| {
                set.into_iter().collect::<Vec<_>>().join(", ")
            };
            format!(
                "guest `{guest}`: read {} · write {}",
                tables(grant.readable()),
                tables(grant.writable())
            )
        }));
    }
    println!("database {shown}");
    if applied.is_empty() {
        println!("up to date: no migration to apply");
    }
    for migration in applied {
        println!("applied {}", migration.name);
    }
    for note in notes {
        println!("{note}");
    }
    Ok(Exit::Ok)
}
