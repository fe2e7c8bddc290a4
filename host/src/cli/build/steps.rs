//! What every language's build does alike: say what it runs, run it,
//! take turns on a lock.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

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

/// Says what the build does now, as every step of `cargo xtask` does.
pub(super) fn step(what: &str) {
    eprintln!("==> {what}");
}

/// Runs `command`; an error names it when it cannot start or fails.
pub(super) fn run_ok(command: &mut Command) -> Result<()> {
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
