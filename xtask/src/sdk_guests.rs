//! Guests built by `rawalite build` (the command guest developers use) into
//! `target/guests/<name>.wasm`: Python (`guests/<name>/app.py`, with
//! componentize-py in one virtual environment, `target/python`) and
//! TypeScript (`guests/<name>/src/*.ts`, with the pinned npm tools in
//! `target/typescript`).

use super::{StatusOk, step};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Python,
    Typescript,
}

/// Every guest directory with an `app.py` or a `src/app.ts`, and its sources.
fn guests(root: &Path) -> Result<Vec<(String, Lang, Vec<PathBuf>)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root.join("guests"))? {
        let dir = entry?.path();
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if dir.join("app.py").is_file() {
            found.push((name, Lang::Python, vec![dir.join("app.py")]));
        } else if dir.join("src/app.ts").is_file() {
            let mut sources = vec![dir.join("package.json")];
            for source in std::fs::read_dir(dir.join("src"))? {
                sources.push(source?.path());
            }
            found.push((name, Lang::Typescript, sources));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Builds each guest whose component is older than its sources, the
/// manifest (its grants pick the imports) or the `rawalite` binary (which
/// carries the SDKs and the WIT).
pub fn build(root: &Path) -> Result<()> {
    let rawalite = root.join("target/release/rawalite");
    let inputs = [rawalite.clone(), root.join("rawalite.toml")];
    let mut ensured = Vec::new();
    for (name, lang, sources) in guests(root)? {
        let out = root.join(format!("target/guests/{name}.wasm"));
        let built = modified(&out);
        if inputs.iter().chain(&sources).all(|i| modified(i) < built) {
            continue;
        }
        if !ensured.contains(&lang) {
            match lang {
                Lang::Python => ensure(
                    &["python3", "-m", "venv", "--help"],
                    &["python3", "python3-venv"],
                )?,
                Lang::Typescript => ensure(&["npm", "--version"], &["nodejs", "npm"])?,
            }
            ensured.push(lang);
        }
        let label = match lang {
            Lang::Python => "Python",
            Lang::Typescript => "TypeScript",
        };
        step(&format!(
            "building the {label} guest {name} (rawalite build)"
        ));
        Command::new(&rawalite)
            .current_dir(root)
            .arg("build")
            .arg(Path::new("guests").join(&name))
            .arg("-o")
            .arg(&out)
            .args(["--manifest", "rawalite.toml"])
            .env("RAWALITE_PYTHON_ENV", root.join("target/python"))
            .env("RAWALITE_TS_TOOLS", root.join("target/typescript"))
            .status_ok()?;
    }
    Ok(())
}

/// `packages` from apt-get when `probe` does not run.
fn ensure(probe: &[&str], packages: &[&str]) -> Result<()> {
    let runs = Command::new(probe[0])
        .args(&probe[1..])
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Ok(());
    }
    super::apt::install(packages)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
