//! `rawalite build`: a guest project into a component. Rust projects build
//! with cargo for `wasm32-wasip2`; Python projects with componentize-py and
//! TypeScript ones with componentize-qjs (`typescript.rs`); one file per language, WASI stubbed out
//! so the component imports nothing but the bridge.

mod imports;
mod python;
mod rust;
mod steps;
pub(super) mod typescript;

pub(super) use imports::granted_capabilities;
use steps::hold;

use super::{Exit, sdk};
use anyhow::{Context, Result};
use clap::Args;
use rawalite_host::runtime;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Build a guest project into a component: a Cargo crate (Rust), a
/// directory with `app.py` (Python) or with `src/app.ts` (TypeScript).
///
/// Rust: adds the wasm32-wasip2 target when missing, then `cargo build
/// --release`. Python: installs componentize-py into a virtual environment
/// (`DIR/target/python`, or `$RAWALITE_PYTHON_ENV`) when missing.
/// TypeScript: installs its pinned tools (tsc, rolldown, componentize-qjs)
/// with npm into the cache directory (or `$RAWALITE_TS_TOOLS`) when
/// missing, runs `npm ci` for the project's own dependencies, type-checks,
/// bundles and componentizes. Python and TypeScript guests import only the
/// capabilities the manifest grants the guest named like the directory (all
/// three when it names none). Two builds of one project take turns. Exit
/// codes: 0 built, 1 the build failed, 2 not a guest project.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  rawalite build\n  rawalite build guests/reports -o target/guests/reports.wasm --manifest rawalite.toml"
)]
pub struct BuildArgs {
    /// The guest project.
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Where to write the component; default: DIR/target/<DIR's name>.wasm.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The manifest whose grants a Python or TypeScript guest's imports follow; default: DIR/rawalite.toml.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

pub fn run(args: BuildArgs) -> Result<Exit> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot open the guest project {}", args.dir.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rust = dir.join("Cargo.toml").is_file();
    let python = dir.join("app.py").is_file();
    if !rust && !python && !dir.join("src/app.ts").is_file() {
        eprintln!(
            "error: {} is not a guest project: it has none of Cargo.toml (Rust), app.py (Python) \
             and src/app.ts (TypeScript)\n\
             create one with `rawalite new NAME`",
            dir.display()
        );
        return Ok(Exit::Usage);
    }
    // Each build rewrites the project's target/ (the SDK's copy, the
    // partial component): a second build of it waits for the first.
    let _building = lock_project(&dir)?;
    let output = match args.output {
        Some(output) => std::path::absolute(output)?,
        None => dir.join("target").join(format!("{name}.wasm")),
    };
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let started = Instant::now();
    // Built beside the output, then renamed over it: `serve --watch` (or
    // anyone) never reads a half-written component.
    let partial = output.with_extension("wasm.partial");
    let built = if rust {
        rust::build(&dir, &partial)
    } else {
        let manifest = args.manifest.unwrap_or_else(|| dir.join("rawalite.toml"));
        granted_capabilities(&manifest, &name).and_then(|capabilities| {
            if python {
                python::build(&dir, &partial, &capabilities)
            } else {
                typescript::build(&dir, &partial, &capabilities)
            }
        })
    };
    if let Err(e) = built.and_then(|()| Ok(std::fs::rename(&partial, &output)?)) {
        let _ = std::fs::remove_file(&partial);
        eprintln!("error: {e:#}");
        return Ok(Exit::Refused);
    }
    let bytes = std::fs::read(&output)?;
    let surface = runtime::read_surface(&output, &bytes)?;
    let imports: Vec<&str> = surface.capabilities().collect();
    println!(
        "built {} ({}, imports {}) in {:.1}s",
        output.display(),
        bytesize::ByteSize(bytes.len() as u64),
        if imports.is_empty() {
            "no capability".to_owned()
        } else {
            imports.join(", ")
        },
        started.elapsed().as_secs_f64()
    );
    for import in surface.refused() {
        eprintln!(
            "warning: {} would be refused at load: {}",
            import.item.name,
            import.refused.unwrap_or_default()
        );
    }
    Ok(Exit::Ok)
}

/// Holds `DIR/target/.rawalite-build.lock` until dropped.
fn lock_project(dir: &Path) -> Result<std::fs::File> {
    let target = dir.join("target");
    std::fs::create_dir_all(&target)?;
    hold(
        &target.join(".rawalite-build.lock"),
        "waiting for another build of this project to finish",
    )
}
