//! `rawalite compile`: every guest of the manifest into the compile cache,
//! ahead of a deploy, so that `serve` starts with each of them ready.

use super::Exit;
use anyhow::Result;
use clap::Args;
use rawalite_host::capabilities::Grants;
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{self, Runtime};
use std::path::PathBuf;
use std::time::Instant;

/// Compile every guest of the manifest into the compile cache, ahead of a start.
///
/// The cache is `$RAWALITE_CACHE_DIR`, else `~/.cache/rawalite`; with every
/// guest in it, `serve` answers every route at once. Without it, `serve`
/// compiles what is not cached after it starts, and those routes answer
/// 503 until ready. Exit codes: 0 all compiled, 2 a bad manifest or a
/// component that cannot load.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  rawalite compile\n  rawalite compile --manifest /etc/rawalite/rawalite.toml"
)]
pub struct CompileArgs {
    /// The app's manifest.
    #[arg(long, value_name = "FILE", default_value = "rawalite.toml")]
    manifest: PathBuf,
}

pub fn run(args: CompileArgs) -> Result<Exit> {
    let manifest = Manifest::load(&args.manifest)?;
    let runtime = Runtime::new(runtime::default_cache_dir())?;
    let mut failed = 0;
    for entry in &manifest.guests {
        let started = Instant::now();
        let (name, path, limits) = (&entry.name, &entry.component, entry.limits);
        let loaded = match runtime.load_if_compiled(name, path, limits, Grants::default()) {
            Ok(Some(_)) => Ok(true),
            Ok(None) => runtime
                .load(name, path, limits, Grants::default())
                .map(|_| false),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(true) => println!("{name}: compiled already"),
            Ok(false) => println!(
                "{name}: compiled in {:.1}s",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("error: {}: {e}", entry.name);
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Usage })
}
