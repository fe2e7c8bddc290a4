//! The `rawalite` command line: argument parsing and the subcommands.
//! Exit codes are part of the contract: see [`Exit`].

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rawalite_host::app::App;
use rawalite_host::capabilities::{Grants, Request, Response};
use rawalite_host::database::Database;
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{self, Limits, Outcome, Runtime, Surface};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    Render(RenderArgs),
    Inspect(InspectArgs),
    Migrate(MigrateArgs),
}

/// Render one request with a guest and write the response body to stdout.
///
/// Exit codes: 0 the guest answered (any status), 3 the guest returned an
/// error, 4 the host stopped the guest, 2 a usage, manifest or load error.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  rawalite render target/guests/hello.wasm /greet\n  rawalite render --guest probe '/db/query?sql=select%201'"
)]
struct RenderArgs {
    /// The manifest that names the guest (default: ./rawalite.toml with --guest).
    #[arg(long, value_name = "FILE", requires = "guest")]
    manifest: Option<PathBuf>,
    /// Render the guest of this name from the manifest, with its grants and limits.
    #[arg(long, value_name = "NAME")]
    guest: Option<String>,
    /// The data directory (database, roots); default: the manifest's `data_dir`.
    #[arg(long, value_name = "DIR", requires = "guest")]
    data: Option<PathBuf>,
    /// The request method.
    #[arg(long, default_value = "GET", value_name = "M")]
    method: String,
    /// A request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "'K: V'")]
    headers: Vec<String>,
    /// Send this file as the request body.
    #[arg(long, value_name = "F")]
    body_file: Option<PathBuf>,
    /// Also print the status line and headers before the body.
    #[arg(long, short = 'i')]
    include: bool,
    /// `COMPONENT.wasm PATH?QUERY`, or just `PATH?QUERY` with --guest.
    /// PATH defaults to `/`.
    #[arg(value_name = "COMPONENT.wasm | PATH", num_args = 0..=2)]
    targets: Vec<String>,
}

/// Create the data directory and the database if missing, and apply the
/// migrations it lacks. Every other command does this too; this one says
/// what it did.
#[derive(Args)]
struct MigrateArgs {
    /// The data directory; default: the `data_dir` of the manifest.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The manifest whose `data_dir` to use when --data is not given.
    #[arg(long, value_name = "FILE", default_value = "rawalite.toml")]
    manifest: PathBuf,
}

/// Show a component's imports and exports, each import marked allowed or
/// refused by the same check `render` and `serve` apply at load.
///
/// Exit codes: 0 every import is allowed, 1 at least one is refused, 2 the
/// file is not a component.
#[derive(Args)]
struct InspectArgs {
    /// The component to inspect.
    #[arg(value_name = "COMPONENT.wasm")]
    component: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Cli {
    pub fn run(self) -> Result<Exit> {
        match self.command {
            Command::Render(args) => render(args),
            Command::Inspect(args) => inspect(args),
            Command::Migrate(args) => migrate(args),
        }
    }

    /// The default log level: quiet for one-shot commands.
    pub fn default_log_level(&self) -> &'static str {
        "error"
    }
}

fn render(args: RenderArgs) -> Result<Exit> {
    let runtime = Runtime::new(runtime::default_cache_dir())?;
    // `app` owns the runtime, whose ticker enforces deadlines: keep it alive.
    let (app, guest, base, target);
    match &args.guest {
        Some(name) => {
            let manifest = args
                .manifest
                .clone()
                .unwrap_or_else(|| PathBuf::from("rawalite.toml"));
            target = match args.targets.as_slice() {
                [] => "/".to_owned(),
                [path] => path.clone(),
                _ => bail!("with --guest, give only the request PATH"),
            };
            let opened = App::open(Manifest::load(&manifest)?, args.data.clone(), runtime)?;
            guest = opened.load(name)?;
            base = opened
                .manifest
                .guest(name)?
                .route
                .clone()
                .unwrap_or_default();
            app = Some(opened);
        }
        None => {
            let component;
            (component, target) = match args.targets.as_slice() {
                [component] => (PathBuf::from(component), "/".to_owned()),
                [component, path] => (PathBuf::from(component), path.clone()),
                _ => bail!("give a COMPONENT.wasm (and a PATH), or --guest NAME"),
            };
            let name = component
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "guest".into());
            guest = runtime.load(&name, &component, Limits::default(), Grants::default())?;
            base = String::new();
            app = None;
        }
    }
    let request = build_request(&args, base, &target)?;
    let outcome = guest.render(&request);
    drop(app);
    match outcome {
        Outcome::Response(response) => {
            write_response(&response, args.include)?;
            Ok(Exit::Ok)
        }
        Outcome::Error(error) => {
            eprintln!("error: {}: {}", error.code.as_str(), error.message);
            Ok(Exit::GuestError)
        }
        Outcome::Stopped(why) => {
            eprintln!("stopped: {why}");
            Ok(Exit::Stopped)
        }
    }
}

fn migrate(args: MigrateArgs) -> Result<Exit> {
    let data_dir = match args.data {
        Some(dir) => dir,
        None if args.manifest.is_file() => Manifest::load(&args.manifest)?.data_dir,
        None => bail!(
            "no --data DIR given and no {} here to take `data_dir` from",
            args.manifest.display()
        ),
    };
    let (database, applied) = Database::open(&data_dir)?;
    println!("database {}", database.path().display());
    if applied.is_empty() {
        println!("up to date: no migration to apply");
    }
    for migration in applied {
        println!("applied {}", migration.name);
    }
    Ok(Exit::Ok)
}

fn build_request(args: &RenderArgs, base: String, target: &str) -> Result<Request> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with('/') {
        bail!("the request PATH must start with `/` (got `{path}`)");
    }
    let headers = args
        .headers
        .iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("header `{h}` must look like `Name: value`"))?;
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    let body = match &args.body_file {
        Some(file) => std::fs::read(file)
            .with_context(|| format!("cannot read the body file {}", file.display()))?,
        None => Vec::new(),
    };
    Ok(Request {
        method: args.method.to_ascii_uppercase(),
        base,
        path: path.to_owned(),
        query: form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        headers,
        body,
    })
}

fn write_response(response: &Response, include: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if include {
        writeln!(out, "HTTP {}", response.status)?;
        for (name, value) in &response.headers {
            writeln!(out, "{name}: {value}")?;
        }
        writeln!(out)?;
    } else if !(200..300).contains(&response.status) {
        eprintln!("status: {}", response.status);
    }
    out.write_all(&response.body)?;
    out.flush()?;
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<Exit> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let surface = runtime::read_surface(&args.component, &bytes)?;
    if args.json {
        println!("{}", inspect_json(&args.component, &bytes, &surface));
    } else {
        print_inspect(&args.component, &bytes, &surface);
    }
    Ok(if surface.refused().next().is_some() {
        Exit::Refused
    } else {
        Exit::Ok
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn print_inspect(path: &Path, bytes: &[u8], surface: &Surface) {
    println!("component {}", path.display());
    println!("  sha256  {}", sha256_hex(bytes));
    println!("  size    {}", bytesize::ByteSize(bytes.len() as u64));
    println!("imports");
    for import in &surface.imports {
        match import.refused {
            None => println!("  allowed  {}", import.item.name),
            Some(why) => println!("  REFUSED  {}  -- {why}", import.item.name),
        }
    }
    println!("exports");
    for export in &surface.exports {
        println!("  {:<8} {}", export.kind, export.name);
    }
    let refused = surface.refused().count();
    if refused > 0 {
        println!("{refused} import(s) refused: this component cannot be loaded");
    }
}

fn inspect_json(path: &Path, bytes: &[u8], surface: &Surface) -> serde_json::Value {
    serde_json::json!({
        "component": path.display().to_string(),
        "sha256": sha256_hex(bytes),
        "size": bytes.len(),
        "imports": surface.imports.iter().map(|i| serde_json::json!({
            "name": i.item.name,
            "kind": i.item.kind,
            "allowed": i.refused.is_none(),
            "reason": i.refused,
        })).collect::<Vec<_>>(),
        "exports": surface.exports.iter().map(|e| serde_json::json!({
            "name": e.name,
            "kind": e.kind,
        })).collect::<Vec<_>>(),
        "refused": surface.refused().count(),
    })
}
