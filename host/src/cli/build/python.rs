//! A Python guest: componentize-py, from PyPI into a virtual environment
//! of the project's, WASI stubbed out.

use super::imports::guest_world;
use super::sdk;
use super::steps::{run_ok, step};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release Python guests are built with (from PyPI).
const COMPONENTIZE_PY: &str = "0.25.1";

pub(super) fn build(dir: &Path, output: &Path, capabilities: &[&str]) -> Result<()> {
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
