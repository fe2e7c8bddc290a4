//! `rawalite serve`: the app in the browser.

use super::Exit;
use anyhow::{Context, Result};
use clap::Args;
use rawalite_host::app::App;
use rawalite_host::data_dir::DataLock;
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{self, Runtime};
use rawalite_host::server::{self, Options};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve the app over HTTP: every route of the manifest is a sandboxed
/// guest. On a fresh data directory this creates the database and a first
/// user, `admin`, whose password is printed once.
#[derive(Args)]
pub struct ServeArgs {
    /// The app's manifest.
    #[arg(long, value_name = "FILE", default_value = "rawalite.toml")]
    manifest: PathBuf,
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The data directory; default: the manifest's `data_dir`.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A PostgreSQL database (postgres://USER@HOST/DB) instead of SQLite in
    /// the data directory; overrides RAWALITE_DATABASE_URL and [app]
    /// database. It must be migrated (`rawalite migrate`) first.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Reload a guest when its component or the manifest changes (requests
    /// in flight finish on the old version; one that fails to load leaves
    /// the old one serving and the log says why).
    #[arg(long)]
    watch: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, a listener of its
    /// own (off by default; keep it off the public network).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// On SIGTERM, answer /healthz with 503 for this many seconds while
    /// still serving, so a load balancer takes this host out of rotation
    /// before it stops accepting (0: stop accepting at once).
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = seconds)]
    drain_grace: std::time::Duration,
    /// The log's format on stderr: `text` for people, `json` (one object
    /// per line) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: ServeArgs) -> Result<Exit> {
    let manifest = Manifest::load(&args.manifest)?;
    let data_dir = args.data.unwrap_or_else(|| manifest.data_dir.clone());
    // One server per data directory, and none while a restore swaps it:
    // taken before anything is opened, migrated or swept.
    rawalite_host::data_dir::create(&data_dir)?;
    // On PostgreSQL several hosts may share one data directory (its roots,
    // on a shared volume): their locks are shared; `restore`'s is not.
    let shared =
        rawalite_host::database::url(args.database.as_deref(), manifest.database.as_deref())?
            .is_some();
    let lock = DataLock::try_acquire(&data_dir, shared)?.with_context(|| {
        format!(
            "another `rawalite serve` or a `rawalite restore` is running on {}",
            data_dir.display()
        )
    })?;
    let app = App::open_with(
        manifest,
        Some(data_dir),
        args.database.as_deref(),
        Runtime::new(runtime::default_cache_dir())?,
    )?;
    server::serve(
        app,
        Options {
            listen: args.listen,
            watch: args.watch,
            metrics: args.metrics,
            lock,
            drain_grace: args.drain_grace,
            cache_cap: cache_cap(),
        },
    )?;
    Ok(Exit::Ok)
}

/// The compile cache's cap: `RAWALITE_CACHE_MAX` (`"2 GiB"`, or bytes),
/// else 1 GiB. A Python guest's artifact alone is ~35 MB, and `--watch`
/// adds one per build.
fn cache_cap() -> u64 {
    std::env::var("RAWALITE_CACHE_MAX")
        .ok()
        .and_then(|text| text.trim().parse::<bytesize::ByteSize>().ok())
        .map_or(1 << 30, |size| size.0)
}

/// A number of seconds from 0 to 600, e.g. `2` or `0.5`.
fn seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| (0.0..=600.0).contains(s))
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("`{text}` is not a number of seconds from 0 to 600, e.g. 2"))
}

#[cfg(test)]
mod tests {
    use super::seconds;
    use std::time::Duration;

    #[test]
    fn drain_grace_takes_seconds_from_0_to_600() {
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["", "-1", "601", "inf", "NaN", "2s", "1e9"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_bounded_grace_or_an_error(text in ".{0,24}") {
            if let Ok(grace) = seconds(&text) {
                proptest::prop_assert!(grace <= Duration::from_secs(600));
            }
        }
    }
}
