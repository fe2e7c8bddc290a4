//! `cargo xtask fuzz [TARGET] [--seconds N]`: the coverage-guided fuzz
//! targets of `fuzz/` (cargo-fuzz and libFuzzer, on the nightly toolchain,
//! cargo-fuzz installed into `target/tools` when missing), each run from
//! its seed corpus (`fuzz/corpus/<target>`, committed) and the inputs
//! earlier runs found (`target/fuzz/corpus/<target>`). The SQL targets'
//! oracle asks a throwaway PostgreSQL, migrated with the targets' grant,
//! to plan what the check accepts. A crash stops the run and is kept in
//! `target/fuzz/artifacts/<target>/`: make it a regression test.

use super::{StatusOk, step};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every target, in the order they run.
pub const TARGETS: &[&str] = &["sql", "sql_grammar", "manifest", "request", "restore"];

/// The targets' grant, as the fuzz crate's `grant()` has it.
const MANIFEST: &str = "[app]\nname = \"fuzz\"\ndata_dir = \"data\"\n\n\
    [[guest]]\nname = \"fuzz\"\ncomponent = \"fuzz.wasm\"\n\
    [guest.db]\nread = [\"customers\", \"invoices\"]\nwrite = [\"customers\"]\n";

/// What one target's run did.
struct Run {
    target: String,
    seconds: u64,
    executions: u64,
    per_second: u64,
    /// Inputs that reached new code, added to the corpus.
    kept: u64,
}

/// `cargo xtask fuzz` with its arguments.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    let mut targets = Vec::new();
    let mut seconds = 60;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .context("--seconds takes a whole number")?
            }
            target if TARGETS.contains(&target) => targets.push(target.to_owned()),
            other => bail!(
                "unknown fuzz target or option `{other}`; the targets: {}",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    super::build(root)?;
    let cargo_fuzz = cargo_fuzz(root)?;
    step("building the fuzz targets with coverage (cargo +nightly fuzz build)");
    fuzz(root, &cargo_fuzz)
        .args(["build", "--release", "--sanitizer", "none"])
        .status_ok()?;
    let cluster = super::postgres::Cluster::start(root)?;
    let oracle = oracle_database(root, &cluster)?;
    step(&format!("fuzzing each target for {seconds} s"));
    let runs = run_each(
        root,
        &targets,
        seconds,
        &oracle,
        &Runner::Instrumented(&cargo_fuzz),
    )?;
    for run in runs {
        println!(
            "{:<12} {:>5} s {:>11} runs {:>7} runs/s {:>6} inputs kept  no crash",
            run.target, run.seconds, run.executions, run.per_second, run.kept
        );
    }
    Ok(())
}

/// `cargo xtask test`'s share: each target, as the workspace's release
/// build made it (no coverage instrumentation, which would mean building
/// wasmtime again), for `seconds`: its seed corpus, then random inputs.
pub fn smoke(root: &Path, cluster: &super::postgres::Cluster, seconds: u64) -> Result<()> {
    step(&format!(
        "running each fuzz target for {seconds} s (without coverage: `cargo xtask fuzz` runs them with it)"
    ));
    let oracle = oracle_database(root, cluster)?;
    let targets: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    for run in run_each(root, &targets, seconds, &oracle, &Runner::Plain)? {
        println!(
            "    {:<12} {:>9} runs, no crash",
            run.target, run.executions
        );
    }
    Ok(())
}

/// How a target runs: built by cargo-fuzz with coverage, or as the
/// workspace's own build made it.
enum Runner<'a> {
    Instrumented(&'a Path),
    Plain,
}

impl Runner<'_> {
    fn command(
        &self,
        root: &Path,
        target: &str,
        corpora: &[PathBuf],
        options: &[String],
    ) -> Command {
        match self {
            Runner::Instrumented(cargo_fuzz) => {
                let mut command = fuzz(root, cargo_fuzz);
                command
                    .args(["run", "--release", "--sanitizer", "none", target])
                    .args(corpora)
                    .arg("--")
                    .args(options);
                command
            }
            Runner::Plain => {
                let mut command = Command::new(root.join("target/release").join(target));
                command.args(options).args(corpora);
                command
            }
        }
    }
}

/// Runs each target for `seconds` from its seed corpus and the inputs
/// earlier runs kept.
fn run_each(
    root: &Path,
    targets: &[String],
    seconds: u64,
    oracle: &str,
    runner: &Runner,
) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for target in targets {
        eprintln!("    {target} ({seconds} s)");
        // New inputs go to the first corpus; the committed seeds stay as they are.
        let corpora = [
            root.join("target/fuzz/corpus").join(target),
            root.join("fuzz/corpus").join(target),
        ];
        let artifacts = root.join("target/fuzz/artifacts").join(target);
        std::fs::create_dir_all(&corpora[0])?;
        std::fs::create_dir_all(&artifacts)?;
        let options = [
            format!("-max_total_time={seconds}"),
            format!("-artifact_prefix={}/", artifacts.display()),
            "-print_final_stats=1".to_owned(),
            "-timeout=20".to_owned(),
        ];
        let output = runner
            .command(root, target, &corpora, &options)
            .current_dir(root)
            .env("RAWALITE_FUZZ_POSTGRES", oracle)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("could not run the fuzz target `{target}`"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            bail!(
                "fuzz target `{target}` found a crash (the input is in {}):\n{}",
                artifacts.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        runs.push(Run {
            target: target.clone(),
            seconds,
            executions: stat("number_of_executed_units"),
            per_second: stat("average_exec_per_sec"),
            kept: stat("new_units_added"),
        });
    }
    Ok(runs)
}

/// `cargo +nightly fuzz …` in the repository.
fn fuzz(root: &Path, cargo_fuzz: &Path) -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", "nightly"])
        .arg(cargo_fuzz)
        .arg("fuzz")
        .current_dir(root)
        // The fuzz crate's own target directory, apart from the main one.
        .env("CARGO_TARGET_DIR", root.join("target/fuzz/build"));
    command
}

/// cargo-fuzz, installed into `target/tools` when missing; the nightly
/// toolchain it needs must be there already.
fn cargo_fuzz(root: &Path) -> Result<PathBuf> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        bail!(
            "the fuzz targets need Rust's nightly toolchain (libFuzzer's instrumentation): `rustup toolchain install nightly`"
        );
    }
    let tools = root.join("target/tools");
    let bin = tools.join("bin/cargo-fuzz");
    if !bin.is_file() {
        step("installing cargo-fuzz into target/tools (cargo install cargo-fuzz)");
        super::cargo(root)
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                "0.13.2",
                "--root",
            ])
            .arg(&tools)
            .status_ok()?;
    }
    Ok(bin)
}

/// A database of the throwaway cluster migrated for the targets' grant;
/// the URL of its guest role, with the settings a guest's connection pins.
fn oracle_database(root: &Path, cluster: &super::postgres::Cluster) -> Result<String> {
    let url = cluster.create_database("fuzz")?;
    let dir = root.join("target/fuzz");
    std::fs::create_dir_all(&dir)?;
    let manifest = dir.join("rawalite.toml");
    std::fs::write(&manifest, MANIFEST)?;
    super::cargo_like(root, &root.join("target/release/rawalite"))
        .args(["migrate", "--manifest"])
        .arg(&manifest)
        .args(["--database", &url])
        .stdout(Stdio::null())
        .status_ok()?;
    let socket = cluster.socket_dir().display().to_string();
    Ok(format!(
        "postgres://fuzz_g_fuzz@/fuzz?host={socket}&options=-c%20search_path%3Dapp%20-c%20standard_conforming_strings%3Don"
    ))
}
