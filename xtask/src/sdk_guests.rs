//! Python guests: `guests/<name>/app.py`, built by `rawalite build` (the
//! command guest developers use) into `target/guests/<name>.wasm`, with
//! componentize-py in one virtual environment, `target/python`.

use super::{StatusOk, step};
use anyhow::Result;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

/// Every guest directory with an `app.py`.
pub fn guests(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("guests"))? {
        let path = entry?.path();
        if path.join("app.py").is_file() {
            names.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    names.sort();
    Ok(names)
}

/// Builds each Python guest whose component is older than its source, the
/// manifest (its grants pick the imports) or the `rawalite` binary (which
/// carries the SDK and the WIT).
pub fn build(root: &Path) -> Result<()> {
    let rawalite = root.join("target/release/rawalite");
    let inputs = [rawalite.clone(), root.join("rawalite.toml")];
    let mut ensured = false;
    for name in guests(root)? {
        let source = root.join("guests").join(&name).join("app.py");
        let out = root.join(format!("target/guests/{name}.wasm"));
        let built = modified(&out);
        if inputs.iter().chain([&source]).all(|i| modified(i) < built) {
            continue;
        }
        if !ensured {
            ensure_python()?;
            ensured = true;
        }
        step(&format!(
            "building the Python guest {name} (rawalite build)"
        ));
        Command::new(&rawalite)
            .current_dir(root)
            .arg("build")
            .arg(Path::new("guests").join(&name))
            .arg("-o")
            .arg(&out)
            .args(["--manifest", "rawalite.toml"])
            .env("RAWALITE_PYTHON_ENV", root.join("target/python"))
            .status_ok()?;
    }
    Ok(())
}

/// Python 3 with venv, from apt-get when missing.
fn ensure_python() -> Result<()> {
    let has_venv = Command::new("python3")
        .args(["-m", "venv", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_venv {
        return Ok(());
    }
    super::apt::install(&["python3", "python3-venv"])
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
