//! A Rust guest: `cargo build --release --target wasm32-wasip2`.

use super::steps::{run_ok, step};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const WASM_TARGET: &str = "wasm32-wasip2";

pub(super) fn build(dir: &Path, output: &Path) -> Result<()> {
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
