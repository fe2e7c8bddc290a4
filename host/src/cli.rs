//! The `rawalite` command line: argument parsing and the subcommands.
//! Exit codes are part of the contract: see [`Exit`].

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rawalite_host::capabilities::{Request, Response};
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
    /// Render the guest of this name from the manifest, with its limits.
    #[arg(long, value_name = "NAME")]
    guest: Option<String>,
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
        }
    }

    /// The default log level: quiet for one-shot commands.
    pub fn default_log_level(&self) -> &'static str {
        "error"
    }
}

fn render(args: RenderArgs) -> Result<Exit> {
    let (component, name, limits, base, target) = match &args.guest {
        Some(guest) => {
            let manifest_path = args
                .manifest
                .clone()
                .unwrap_or_else(|| PathBuf::from("rawalite.toml"));
            let manifest = Manifest::load(&manifest_path)?;
            let entry = manifest.guest(guest)?;
            let target = match args.targets.as_slice() {
                [] => "/",
                [path] => path.as_str(),
                _ => bail!("with --guest, give only the request PATH"),
            };
            let base = entry.route.clone().unwrap_or_default();
            (
                entry.component.clone(),
                entry.name.clone(),
                entry.limits,
                base,
                target.to_owned(),
            )
        }
        None => {
            let (component, target) = match args.targets.as_slice() {
                [component] => (component, "/"),
                [component, path] => (component, path.as_str()),
                _ => bail!("give a COMPONENT.wasm (and a PATH), or --guest NAME"),
            };
            let component = PathBuf::from(component);
            let name = component
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "guest".into());
            (
                component,
                name,
                Limits::default(),
                String::new(),
                target.to_owned(),
            )
        }
    };
    let request = build_request(&args, base, &target)?;

    let runtime = Runtime::new(runtime::default_cache_dir())?;
    let guest = runtime.load(&name, &component, limits)?;
    match guest.render(&request) {
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
