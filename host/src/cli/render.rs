//! `rawalite render`: one request to one guest, the body to stdout.

use super::Exit;
use anyhow::{Context, Result, bail};
use clap::Args;
use rawalite_host::app::App;
use rawalite_host::auth::{Auth, Policy};
use rawalite_host::capabilities::session::{Caller, SessionChange};
use rawalite_host::capabilities::{Grants, Request, Response};
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{self, Limits, Outcome, Runtime};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Render one request with a guest and write the response body to stdout.
///
/// Exit codes: 0 the guest answered (any status), 3 the guest returned an
/// error, 4 the host stopped the guest, 2 a usage, manifest or load error.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  rawalite render target/guests/hello.wasm /greet\n  rawalite render --guest probe '/db/query?sql=select%201'\n  rawalite render --guest probe --as ada /session/current"
)]
pub struct RenderArgs {
    /// The manifest that names the guest (default: ./rawalite.toml with --guest).
    #[arg(long, value_name = "FILE", requires = "guest")]
    manifest: Option<PathBuf>,
    /// Render the guest of this name from the manifest, with its grants and limits.
    #[arg(long, value_name = "NAME")]
    guest: Option<String>,
    /// The data directory (database, roots); default: the manifest's `data_dir`.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A PostgreSQL database (postgres://USER@HOST/DB) instead of SQLite in
    /// the data directory; overrides RAWALITE_DATABASE_URL and [app] database.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Render the request as this signed-in user.
    #[arg(long = "as", value_name = "USERNAME")]
    as_user: Option<String>,
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
    /// After the response, print each capability call the guest made
    /// (capability, operation, tables or path, µs, outcome) and what it printed.
    #[arg(long)]
    pub trace: bool,
    /// `COMPONENT.wasm PATH?QUERY`, or just `PATH?QUERY` with --guest.
    /// PATH defaults to `/`.
    #[arg(value_name = "COMPONENT.wasm | PATH", num_args = 0..=2)]
    targets: Vec<String>,
}

pub fn run(args: RenderArgs) -> Result<Exit> {
    let runtime = Runtime::new(runtime::default_cache_dir())?;
    // `app` owns the runtime, whose ticker enforces deadlines: keep it alive
    // until the guest has answered.
    let (app, guest, base, target, auth);
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
            let opened = App::open_with(
                Manifest::load(&manifest)?,
                args.data.clone(),
                args.database.as_deref(),
                runtime,
            )?;
            guest = opened.load(name)?;
            base = opened
                .manifest
                .guest(name)?
                .route
                .clone()
                .unwrap_or_default();
            auth = Some(opened.auth.clone());
            app = Some(opened);
        }
        None => {
            let component;
            (component, target) = match args.targets.as_slice() {
                [component] => (PathBuf::from(component), "/".to_owned()),
                [component, path] => (PathBuf::from(component), path.clone()),
                _ => bail!("give a COMPONENT.wasm (and a PATH), or --guest NAME"),
            };
            // The guest's name in the log: the file's, in the characters a
            // manifest allows, so an odd file name cannot bend a log line.
            let name: String = component
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "guest".into())
                .chars()
                .map(|c| match c {
                    'a'..='z' | '0'..='9' | '-' | '_' => c,
                    'A'..='Z' => c.to_ascii_lowercase(),
                    _ => '_',
                })
                .collect();
            // Without a manifest nothing is granted; with --data the guest
            // still has the session of that data directory's users.
            auth = match &args.data {
                Some(dir) => Some(Auth::new(
                    rawalite_host::database::open(None, dir, None)?.0.store()?,
                    Policy::default(),
                )?),
                None => None,
            };
            let grants = Grants {
                auth: auth.clone(),
                ..Grants::default()
            };
            guest = runtime.load(&name, &component, Limits::default(), grants)?;
            base = String::new();
            app = None;
        }
    }
    let caller = caller(args.as_user.as_deref(), auth.as_ref())?;
    let request = build_request(&args, base, &target)?;
    let rendered = guest.render(&request, caller);
    drop(app);
    // After the body on stdout, so a page piped elsewhere stays clean.
    let trace = args.trace.then(super::trace::report);
    match rendered.session {
        SessionChange::Unchanged => {}
        SessionChange::SignedIn(_) => {
            eprintln!("note: signed in; `serve` would hand the session cookie to the browser")
        }
        SessionChange::SignedOut => eprintln!("note: signed out"),
    }
    let exit = match rendered.outcome {
        Outcome::Response(response) => {
            write_response(&response, args.include)?;
            Exit::Ok
        }
        Outcome::Error(error) => {
            eprintln!("error: {}: {}", error.code.as_str(), error.message);
            Exit::GuestError
        }
        Outcome::Stopped(why) => {
            eprintln!("stopped: {why}");
            if trace.is_none() {
                eprintln!("(`rawalite render --trace` shows what the guest printed)");
            }
            Exit::Stopped
        }
    };
    if let Some(trace) = trace {
        eprint!("{trace}");
    }
    Ok(exit)
}

fn caller(as_user: Option<&str>, auth: Option<&Arc<Auth>>) -> Result<Caller> {
    let Some(username) = as_user else {
        return Ok(Caller::default());
    };
    let Some(auth) = auth else {
        bail!("--as needs a user database: give --guest (with a manifest) or --data DIR");
    };
    let user = auth.user(username)?.with_context(|| {
        format!("there is no user named `{username}`; add one with `rawalite user add`")
    })?;
    if user.disabled {
        bail!("user `{username}` is disabled");
    }
    Ok(Caller {
        user: Some(user),
        ..Caller::default()
    })
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
