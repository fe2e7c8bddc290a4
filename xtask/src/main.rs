//! `cargo xtask build|run|test|bench`: the project's own build commands, so
//! a fresh machine with only Rust installed needs nothing done by hand.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

mod apt;
mod bench;
mod browser;
mod docs;
mod dts;
mod fuzz;
mod layers;
mod postgres;
mod sdk_guests;
mod serve_bench;
mod servers;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  build          add the wasm32-wasip2 target if missing, build every guest into
                 target/guests/<name>.wasm (Rust guests with cargo, Python guests
                 with componentize-py, installed into target/python when missing,
                 TypeScript guests with the npm tools of guest-sdk-ts/tools,
                 installed into target/typescript) and the host into
                 target/release/rawalite
  run [ARGS]     build, then serve the app of ./rawalite.toml with ./data
                 (ARGS go to `rawalite serve`, e.g. --listen 127.0.0.1:9000)
  docs           write docs/WIT.md, the WIT reference, and guest-sdk-ts/bridge.d.ts,
                 the TypeScript declarations, from wit/ and its doc comments
  test [ARGS]    check docs/WIT.md is current and the SDK's docs complete, build, install Chromium and ChromeDriver for the browser tests and HAProxy for the balancer test if
                 missing (apt-get), then run the whole workspace's tests
                 (ARGS go to cargo test), and each fuzz target for 10 s
  layers         check that host/src imports keep to the layers its lib.rs lists
                 (`test` checks this first)
  fuzz [TARGET] [--seconds N]
                 build the fuzz targets of fuzz/ (cargo-fuzz on the nightly
                 toolchain; cargo-fuzz is installed into target/tools when
                 missing) and run each (or TARGET: sql, sql_grammar, manifest,
                 request, restore) for N seconds (60), from its seed corpus,
                 with a throwaway PostgreSQL for the SQL check's oracle
  bench [ARGS]   build, then run the criterion benchmarks (ARGS go to cargo bench)
                 and print each one's median as a ratio to its group's `native` baseline;
                 without ARGS, also write the table into BENCHMARKS.md
  bench serve    build, then load RawaLite, a native server and `wasmtime serve` with
                 wrk (installing wrk and wasmtime-cli when missing) and write the
                 figures to BENCHMARKS.md and docs/bench-serve.svg
";

const WASM_TARGET: &str = "wasm32-wasip2";

/// How long `cargo xtask test` runs each fuzz target.
const FUZZ_SECONDS: u64 = 10;

/// The suites (modules of the test binaries in `tests/`) that `cargo xtask
/// test` runs a second time with PostgreSQL as the database
/// (`RAWALITE_TEST_BACKEND=postgres`), without their tests about SQLite
/// itself (in a module `sqlite_only` of each suite).
const POSTGRES_SUITES: &[&str] = &["db", "session", "hostile", "crash", "paths", "e2e"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("build") => build(&root),
        Some("run") => {
            build(&root)?;
            step("serving the app (Ctrl-C to stop)");
            cargo_like(&root, &root.join("target/release/rawalite"))
                .args(["serve", "--manifest", "rawalite.toml", "--data", "data"])
                // `cargo xtask run -- --listen …` means the same as without `--`.
                .args(rest.strip_prefix(&["--".to_owned()][..]).unwrap_or(rest))
                .status_ok()
        }
        Some("docs") => docs::write(&root),
        Some("layers") => {
            layers::check(&root)?;
            println!("host/src keeps to its layers");
            Ok(())
        }
        Some("test") => {
            layers::check(&root)?;
            docs::check(&root)?;
            docs::check_sdk_docs(&root)?;
            // The host and every test in one build, with the features the
            // tests unify on, so `cargo test` below compiles nothing again.
            build(&root)?;
            browser::ensure()?;
            servers::ensure()?;
            let cluster = postgres::Cluster::start(&root)?;
            let tls = postgres::Cluster::start_tls(&root)?;
            step("running the workspace's tests");
            cargo(&root)
                .args(["test", "--release", "--workspace"])
                .args(rest)
                .env("RAWALITE_TEST_POSTGRES", cluster.socket_dir())
                .env("RAWALITE_TEST_POSTGRES_TLS", tls.socket_dir())
                .status_ok()?;
            postgres_pass(&root, rest, &cluster, &tls)?;
            // A run of some tests only is not a run of everything.
            if rest.is_empty() {
                app_cases(&root, &cluster)?;
                fuzz::smoke(&root, &cluster, FUZZ_SECONDS)?;
            }
            Ok(())
        }
        Some("fuzz") => fuzz::command(&root, rest),
        Some("bench") if rest.first().map(String::as_str) == Some("serve") => {
            build(&root)?;
            serve_bench::run(&root)
        }
        Some("bench") => {
            build(&root)?;
            let cluster = postgres::Cluster::start(&root)?;
            cluster.create_database("bench")?;
            step("running the benchmarks");
            let started = SystemTime::now();
            cargo(&root)
                // The workspace's features, as `build` has them: only the
                // bench itself is compiled.
                .args(["bench", "--workspace", "--bench", "render"])
                .args(rest)
                .env("RAWALITE_BENCH_POSTGRES", cluster.socket_dir())
                .status_ok()?;
            // Only a full run speaks for every benchmark in BENCHMARKS.md.
            bench::report(&root, started, rest.is_empty())
        }
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
        None => bail!("no command given\n\n{USAGE}"),
    }
}

/// The PostgreSQL suites again, on PostgreSQL: the test binaries that hold
/// one (of those `rest` names with `--test`, if it names any), with every
/// other suite skipped, and the binaries' own arguments of `rest` kept.
fn postgres_pass(
    root: &Path,
    rest: &[String],
    cluster: &postgres::Cluster,
    tls: &postgres::Cluster,
) -> Result<()> {
    let split = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let (ours, theirs) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let mut named = Vec::new();
    let mut passed = Vec::new();
    let mut args = ours.iter();
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--test") {
            Some("") => named.extend(args.next().cloned()),
            Some(eq) if eq.starts_with('=') => named.push(eq[1..].to_owned()),
            _ => passed.push(arg.clone()),
        }
    }
    let mut binaries = Vec::new();
    let mut skips = vec!["sqlite_only::".to_owned()];
    for entry in std::fs::read_dir(root.join("tests"))? {
        let main = entry?.path().join("main.rs");
        let Ok(text) = std::fs::read_to_string(&main) else {
            continue;
        };
        let binary = main
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suites: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
            .filter(|m| *m != "common")
            .collect();
        if suites.iter().any(|s| POSTGRES_SUITES.contains(s))
            && (named.is_empty() || named.contains(&binary))
        {
            binaries.push(binary);
            skips.extend(
                suites
                    .iter()
                    .filter(|s| !POSTGRES_SUITES.contains(s))
                    .map(|s| format!("{s}::")),
            );
        }
    }
    if binaries.is_empty() {
        step("no PostgreSQL suite among the tests named: no second pass");
        return Ok(());
    }
    binaries.sort();
    step(&format!(
        "running the {} suites again on PostgreSQL",
        POSTGRES_SUITES.join(", ")
    ));
    let mut pass = cargo(root);
    // `--workspace`, as the first pass: the same features, so nothing is
    // compiled again.
    pass.args(["test", "--release", "--workspace"]);
    for binary in &binaries {
        pass.args(["--test", binary]);
    }
    pass.args(&passed).arg("--").args(theirs);
    for skip in &skips {
        pass.args(["--skip", skip]);
    }
    pass.env("RAWALITE_TEST_POSTGRES", cluster.socket_dir())
        .env("RAWALITE_TEST_POSTGRES_TLS", tls.socket_dir())
        .env("RAWALITE_TEST_BACKEND", "postgres")
        .status_ok()
}

/// The demo app's own `rawalite test` cases (`tests/*.toml`), on SQLite
/// and then each case on a PostgreSQL database of its own.
fn app_cases(root: &Path, cluster: &postgres::Cluster) -> Result<()> {
    step("running the app's cases (rawalite test), on SQLite then PostgreSQL");
    let url = format!(
        "postgres://postgres@/postgres?host={}",
        cluster.socket_dir().display()
    );
    for database in [None, Some(url.as_str())] {
        let mut cases = cargo_like(root, &root.join("target/release/rawalite"));
        cases
            .arg("test")
            .env("RAWALITE_CACHE_DIR", root.join("target/test-cache"));
        if let Some(url) = database {
            cases.args(["--database", url]);
        }
        cases.status_ok()?;
    }
    Ok(())
}

/// The Rust guests, then the host with every test and bench of the
/// workspace (`build`, `run`, `test` and `bench` build the same set with the
/// same features, so none compiles again what another built), then the
/// Python and TypeScript guests.
fn build(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    build_guests(root)?;
    step("building the host and its tests (release --workspace --all-targets)");
    cargo(root)
        .args(["build", "--release", "--workspace", "--all-targets"])
        .status_ok()?;
    // Python and TypeScript guests are built by the host's own `rawalite build`.
    sdk_guests::build(root)
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32-wasip2 target; install Rust with rustup")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    step("adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status_ok()
}

/// Every guest under `guests/` (and `guests/hostile/`): a crate that builds a
/// `cdylib`. Libraries shared by guests (`guests/ui`) are not guests.
fn guests(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for dir in [root.join("guests"), root.join("guests/hostile")] {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
            if manifest.contains("\"cdylib\"") {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                names.push(name.into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn build_guests(root: &Path) -> Result<()> {
    let names = guests(root)?;
    step(&format!(
        "building {} guests for {WASM_TARGET}: {}",
        names.len(),
        names.join(", ")
    ));
    let mut cmd = cargo(root);
    cmd.args(["build", "--release", "--target", WASM_TARGET])
        // Guests ship without debug info: smaller components, faster compiles.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    for name in &names {
        cmd.args(["-p", name]);
    }
    cmd.status_ok()?;

    let out = root.join("target/guests");
    std::fs::create_dir_all(&out)?;
    for name in &names {
        let built = root
            .join("target")
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let dest = out.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest)
            .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Cargo, for every command of xtask's alike: the release profile with
/// line tables (`cargo install` builds it without them; Cargo.toml).
pub fn cargo(root: &Path) -> Command {
    let mut cargo = cargo_like(
        root,
        Path::new(&std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
    );
    cargo.env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
    cargo
}

fn cargo_like(root: &Path, program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(root);
    cmd
}

/// Replaces what a command wrote into BENCHMARKS.md last time: the text
/// between `<!-- NAME:begin -->` and `<!-- NAME:end -->` (appended when the
/// markers are missing).
pub fn write_generated(root: &Path, name: &str, content: &str) -> Result<()> {
    let file = root.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&file)?;
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let generated = format!("{begin}\n{content}{end}");
    let updated = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) => format!("{}{generated}{}", &text[..b], &text[e + end.len()..]),
        _ => format!("{text}\n{generated}\n"),
    };
    std::fs::write(&file, updated)?;
    println!("wrote {}", file.display());
    Ok(())
}

/// Today's date, YYYY-MM-DD.
pub fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn step(what: &str) {
    eprintln!("==> {what}");
}

pub trait StatusOk {
    fn status_ok(&mut self) -> Result<()>;
}

impl StatusOk for Command {
    /// Runs the command with inherited output and fails if it fails.
    fn status_ok(&mut self) -> Result<()> {
        let started = Instant::now();
        let status = self
            .status()
            .with_context(|| format!("could not start {:?}", self.get_program()))?;
        if !status.success() {
            bail!("{:?} failed ({status})", self.get_program());
        }
        eprintln!("    done in {:.1}s", started.elapsed().as_secs_f64());
        Ok(())
    }
}
