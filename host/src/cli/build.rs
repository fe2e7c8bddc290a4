//! `rawalite build`: a guest project into a component. Rust projects build
//! with cargo for `wasm32-wasip2`; Python projects with componentize-py and
//! TypeScript ones with componentize-qjs (typescript.rs), WASI stubbed out
//! so the component imports nothing but the bridge.

use super::{Exit, sdk};
use anyhow::{Context, Result, bail};
use clap::Args;
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The componentize-py release Python guests are built with (from PyPI).
pub const COMPONENTIZE_PY: &str = "0.25.1";

const WASM_TARGET: &str = "wasm32-wasip2";

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
        build_rust(&dir, &partial)
    } else {
        let manifest = args.manifest.unwrap_or_else(|| dir.join("rawalite.toml"));
        granted_capabilities(&manifest, &name).and_then(|capabilities| {
            if python {
                build_python(&dir, &partial, &capabilities)
            } else {
                super::typescript::build(&dir, &partial, &capabilities)
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

/// An exclusive lock on the file at `path` (created if missing), held
/// until the file is dropped; says `waiting` when another process holds it.
pub(super) fn hold(path: &Path, waiting: &str) -> Result<std::fs::File> {
    let lock =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    if lock.try_lock().is_err() {
        step(waiting);
        lock.lock()?;
    }
    Ok(lock)
}

fn build_rust(dir: &Path, output: &Path) -> Result<()> {
    ensure_wasm_target()?;
    step("cargo build --release --target wasm32-wasip2");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo; install Rust with rustup (https://rustup.rs)")?;
    // Cargo's messages name the component it built; its diagnostics go to stderr as usual.
    let mut component = None;
    for line in BufReader::new(cargo.stdout.take().expect("piped")).lines() {
        let message: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if message["reason"] == "compiler-artifact"
            && message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        {
            component = message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from);
        }
    }
    if !cargo.wait()?.success() {
        bail!("cargo build failed (its errors are above)");
    }
    let component = component
        .context("cargo built no component: the crate needs `[lib] crate-type = [\"cdylib\"]`")?;
    std::fs::copy(&component, output)
        .with_context(|| format!("copying {} to {}", component.display(), output.display()))?;
    Ok(())
}

fn ensure_wasm_target() -> Result<()> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // Rust without rustup: cargo will say whether the target is there.
        return Ok(());
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    step("rustup target add wasm32-wasip2");
    run_ok(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn build_python(dir: &Path, output: &Path, capabilities: &[&str]) -> Result<()> {
    let componentize = componentize_py(dir)?;
    // The SDK and the WIT come from this binary; the copy stays for the
    // developer to read and for editors.
    let sdk_dir = dir.join("target/rawalite-sdk");
    let _ = std::fs::remove_dir_all(&sdk_dir);
    sdk::write(&sdk_dir, sdk::WIT)?;
    sdk::write(&sdk_dir, sdk::PYTHON)?;
    std::fs::write(sdk_dir.join("wit/guest.wit"), guest_world(capabilities))?;
    step(&format!(
        "componentize-py --stub-wasi (imports {})",
        capabilities.join(", ")
    ));
    run_ok(
        Command::new(componentize)
            .current_dir(dir)
            // No __pycache__ left in the developer's source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-q")
            .arg("-d")
            .arg(sdk_dir.join("wit"))
            .args(["-w", "guest", "componentize", "--stub-wasi", "-p", "."])
            .arg("-p")
            .arg(sdk_dir.join("guest-sdk-python"))
            .args(["app", "-o"])
            .arg(output),
    )
}

/// The capabilities the manifest grants guest `name`: `db` with a table,
/// `paths` with a root, `session` always (reading who is signed in needs no
/// grant). Without a manifest or an entry for `name`, all three.
pub(super) fn granted_capabilities(manifest: &Path, name: &str) -> Result<Vec<&'static str>> {
    if !manifest.is_file() {
        return Ok(vec!["db", "paths", "session"]);
    }
    let manifest = Manifest::load(manifest)?;
    let Some(guest) = manifest.guests.iter().find(|g| g.name == name) else {
        return Ok(vec!["db", "paths", "session"]);
    };
    let mut capabilities = Vec::new();
    if guest.grants_db() {
        capabilities.push("db");
    }
    if guest.grants_paths() {
        capabilities.push("paths");
    }
    capabilities.push("session");
    Ok(capabilities)
}

/// A world with the renderer's export and exactly these imports.
pub(super) fn guest_world(capabilities: &[&str]) -> String {
    let imports: String = capabilities
        .iter()
        .map(|c| format!("  import {c};\n"))
        .collect();
    format!(
        "package rawalite:bridge@0.1.0;\n\n\
         world guest {{\n{imports}  import log;\n  import clock;\n  import random;\n\n  use types.{{request, response, error}};\n\n  \
         export render: func(req: request) -> result<response, error>;\n}}\n"
    )
}

/// `componentize-py` in the project's virtual environment, installed there
/// (from PyPI) when missing or another version.
fn componentize_py(dir: &Path) -> Result<PathBuf> {
    let venv = std::env::var_os("RAWALITE_PYTHON_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target/python"));
    let tool = venv.join("bin/componentize-py");
    let version = Command::new(&tool).arg("--version").output();
    if version.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .ends_with(COMPONENTIZE_PY)
    }) {
        return Ok(tool);
    }
    step(&format!(
        "installing componentize-py {COMPONENTIZE_PY} into {}",
        venv.display()
    ));
    run_ok(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
        "Python 3 with venv is needed to build Python guests (Debian: apt-get install python3-venv)",
    )?;
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
    )?;
    Ok(tool)
}

pub(super) fn step(what: &str) {
    eprintln!("==> {what}");
}

fn run_ok(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", command.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!(
            "{} failed ({status})",
            command.get_program().to_string_lossy()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_guest_imports_what_its_manifest_grants() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("rawalite.toml");
        std::fs::write(
            &manifest,
            "[app]\nname = \"t\"\n[paths]\nfiles = \"files\"\n\
             [[guest]]\nname = \"reader\"\ncomponent = \"r.wasm\"\n[guest.db]\nread = [\"customers\"]\n\
             [[guest]]\nname = \"filer\"\ncomponent = \"f.wasm\"\n[guest.paths]\nfiles = { access = \"read-only\" }\n",
        )
        .unwrap();
        assert_eq!(
            granted_capabilities(&manifest, "reader").unwrap(),
            ["db", "session"]
        );
        assert_eq!(
            granted_capabilities(&manifest, "filer").unwrap(),
            ["paths", "session"]
        );
        assert_eq!(
            granted_capabilities(&manifest, "unlisted").unwrap(),
            ["db", "paths", "session"]
        );
        let world = guest_world(&["db", "session"]);
        assert!(
            world.contains("import db;\n  import session;\n  import log;"),
            "{world}"
        );
        assert!(!world.contains("paths"));
    }
}
