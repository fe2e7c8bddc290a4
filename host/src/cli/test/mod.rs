//! `rawalite test`: a project's cases (`tests/*.toml`), each rendered by
//! the real component in the real sandbox under its manifest's grants,
//! against a database and roots of its own, and checked: the response, a
//! snapshot, and the capability calls the guest made and was denied.

mod case;
mod expect;
mod run;

use super::Exit;
use anyhow::{Context, Result, bail};
use clap::Args;
use rawalite_host::database::postgres::{DatabaseUrl, Postgres};
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{self, Guest, Runtime};
use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Instant, SystemTime};

/// Run a project's test cases: `tests/*.toml` beside its rawalite.toml.
///
/// Builds the component first when its sources are newer (a project made
/// by `rawalite new`). Each case gets a fresh data directory, database and
/// roots, so cases run in parallel and in any order. Prints a line per
/// case and what failed. Exit codes: 0 every case passed, 1 a case failed
/// (or the build did), 2 no cases, a case file that cannot be read, or a
/// component that is missing. The format is in docs/TESTING.md.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  rawalite test\n  rawalite test guests/greeter --filter signed\n  rawalite test --update-snapshots\n  rawalite test --json > results.json\n  rawalite test --database postgres://me@localhost/scratch"
)]
pub struct TestArgs {
    /// The project: the directory with rawalite.toml and tests/.
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Run only the cases whose file or name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// Write each case's `snapshot` from its response instead of comparing.
    #[arg(long)]
    update_snapshots: bool,
    /// Print one JSON document with every case's result instead of lines.
    #[arg(long)]
    json: bool,
    /// Give each case a PostgreSQL database of its own, made on this
    /// server (with this URL's role, which may create databases and roles)
    /// and dropped after it, instead of SQLite.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// How many cases run at once (default: the machine's cores).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
}

pub fn run(args: TestArgs) -> Result<Exit> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot open the project {}", args.dir.display()))?;
    let manifest_path = dir.join("rawalite.toml");
    if !manifest_path.is_file() {
        bail!(
            "{} has no rawalite.toml: run `rawalite test` in a project (`rawalite new NAME` makes one)",
            dir.display()
        );
    }
    let manifest = Manifest::load(&manifest_path)?;
    let tests = dir.join("tests");
    if !tests.is_dir() {
        eprintln!(
            "error: {} has no tests/ directory: put cases in tests/NAME.toml (docs/TESTING.md; `rawalite new` writes one)",
            dir.display()
        );
        return Ok(Exit::Usage);
    }
    if !build_if_stale(&dir, &manifest)? {
        return Ok(Exit::Refused);
    }
    let mut cases = case::load(&tests, &manifest)?;
    if let Some(filter) = &args.filter {
        cases.retain(|case| match case {
            Ok(case) => case.id.contains(filter.as_str()),
            Err(broken) => broken.id.contains(filter.as_str()),
        });
    }
    if cases.is_empty() {
        eprintln!(
            "error: no cases{} in {}/*.toml; a case is a [[case]] table (docs/TESTING.md)",
            args.filter
                .as_ref()
                .map(|f| format!(" match --filter `{f}`"))
                .unwrap_or_default(),
            tests.display()
        );
        return Ok(Exit::Usage);
    }
    let runtime = Runtime::new(runtime::default_cache_dir())?;
    let Some(guests) = compile_guests(&manifest, &runtime, &cases, args.json)? else {
        return Ok(Exit::Usage);
    };
    let env = run::Env {
        manifest,
        runtime,
        guests,
        postgres: args
            .database
            .as_deref()
            .map(|url| {
                Ok::<_, anyhow::Error>(Arc::new(Postgres::connect(&DatabaseUrl::parse(url)?)?))
            })
            .transpose()?,
        snapshots: tests.join("snapshots"),
        update_snapshots: args.update_snapshots,
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    let started = Instant::now();
    let results = run_all(&cases, &env, jobs, !args.json);
    let failed = results
        .iter()
        .filter(|r| !r.verdict.failures.is_empty())
        .count();
    let passed = results.len() - failed;
    if args.json {
        print_json(&results, passed, failed)?;
    } else {
        summary(&results, passed, failed, started);
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Refused })
}

/// A finished case.
struct Finished {
    id: String,
    verdict: run::Verdict,
    millis: u128,
}

/// Runs the cases on `jobs` threads; prints each line in the cases' order
/// as soon as it and those before it are done.
fn run_all(
    cases: &[Result<case::Case, case::Broken>],
    env: &run::Env,
    jobs: usize,
    print: bool,
) -> Vec<Finished> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (done, finished) = mpsc::channel();
    let mut results: Vec<Option<Finished>> = cases.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(cases.len()) {
            let done = done.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let started = Instant::now();
                    let (id, verdict) = match case {
                        Ok(case) => (case.id.clone(), run::run(case, env, i)),
                        Err(broken) => (
                            broken.id.clone(),
                            run::Verdict {
                                failures: vec![broken.why.clone()],
                                notes: Vec::new(),
                            },
                        ),
                    };
                    let millis = started.elapsed().as_millis();
                    if done
                        .send((
                            i,
                            Finished {
                                id,
                                verdict,
                                millis,
                            },
                        ))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop(done);
        let mut shown = 0;
        for (i, result) in finished {
            results[i] = Some(result);
            while let Some(Some(result)) = results.get(shown) {
                if print {
                    line(result);
                }
                shown += 1;
            }
        }
    });
    results.into_iter().flatten().collect()
}

fn line(result: &Finished) {
    let status = if result.verdict.failures.is_empty() {
        "ok"
    } else {
        "FAILED"
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{status:<6} {} ({} ms)", result.id, result.millis);
    for note in &result.verdict.notes {
        let _ = writeln!(out, "       {note}");
    }
}

fn summary(results: &[Finished], passed: usize, failed: usize, started: Instant) {
    let mut out = std::io::stdout().lock();
    for result in results.iter().filter(|r| !r.verdict.failures.is_empty()) {
        let _ = writeln!(out, "\n---- {} ----", result.id);
        for failure in &result.verdict.failures {
            let _ = writeln!(out, "{failure}");
        }
    }
    let _ = writeln!(
        out,
        "\n{passed} passed, {failed} failed in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}

fn print_json(results: &[Finished], passed: usize, failed: usize) -> Result<()> {
    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "case": r.id,
                "ok": r.verdict.failures.is_empty(),
                "failures": r.verdict.failures,
                "notes": r.verdict.notes,
                "ms": r.millis as u64,
            })
        })
        .collect();
    let document = serde_json::json!({ "passed": passed, "failed": failed, "cases": cases });
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// Loads each guest the cases render once, before they run: a component
/// is read, checked and compiled once (with a line when it compiles), not
/// once per case, and a missing one is one clear error. Each case gives
/// its copy the grants of its own world. `None` when one cannot load.
fn compile_guests(
    manifest: &Manifest,
    runtime: &Runtime,
    cases: &[Result<case::Case, case::Broken>],
    quiet: bool,
) -> Result<Option<HashMap<String, Guest>>> {
    let mut names: Vec<&str> = cases
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .map(|c| c.guest.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    let mut guests = HashMap::new();
    for name in names {
        let entry = manifest.guest(name)?;
        let path = &entry.component;
        if !path.is_file() {
            eprintln!(
                "error: guest `{name}`'s component {} does not exist: build it (`rawalite build` in its project, `cargo xtask build` in RawaLite's checkout)",
                path.display()
            );
            return Ok(None);
        }
        // Its grants are each case's; these are only the load's.
        let nothing = rawalite_host::capabilities::Grants::default;
        let loaded = runtime
            .load_if_compiled(name, path, entry.limits, nothing())
            .and_then(|compiled| match compiled {
                Some(guest) => Ok(guest),
                None => {
                    if !quiet {
                        eprintln!("compiling {} (once; it is cached)", path.display());
                    }
                    runtime.load(name, path, entry.limits, nothing())
                }
            });
        match loaded {
            Ok(guest) => guests.insert(name.to_owned(), guest),
            Err(e) => {
                eprintln!("error: guest `{name}`: {e}");
                return Ok(None);
            }
        };
    }
    Ok(Some(guests))
}

/// Builds the project's component when a source is newer than it: a
/// project of `rawalite build`'s (Cargo.toml, app.py or src/app.ts) whose
/// manifest names a guest like the directory, built to where `build`
/// writes it. Other projects (RawaLite's own checkout) build their own
/// way. The build's output goes to stderr. False when the build failed.
fn build_if_stale(dir: &Path, manifest: &Manifest) -> Result<bool> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let output = dir.join("target").join(format!("{name}.wasm"));
    let ours = manifest
        .guests
        .iter()
        .any(|g| g.name == name && g.component == output);
    let project = ["Cargo.toml", "app.py", "src/app.ts"]
        .iter()
        .any(|f| dir.join(f).is_file());
    if !ours || !project {
        return Ok(true);
    }
    let built = std::fs::metadata(&output).and_then(|m| m.modified()).ok();
    if built.is_some_and(|built| newest_source(dir) <= built) {
        return Ok(true);
    }
    eprintln!("building {name} (its sources changed)");
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("build")
        .arg(dir)
        .stdout(stderr)
        .status()
        .context("cannot run `rawalite build`")?;
    if !status.success() {
        eprintln!("error: the build failed (above); fix it and run `rawalite test` again");
    }
    Ok(status.success())
}

/// What a build reads: sources, manifests, lock files, the WIT.
const SOURCES: &[&str] = &[
    "rs", "toml", "lock", "py", "ts", "tsx", "js", "mjs", "cjs", "json", "wit",
];

/// The newest modification time among the project's sources, leaving out
/// what builds and tests make or read (target/, data/, tests/,
/// node_modules/, dot-directories).
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let skipped = current == dir
                    && matches!(name.as_ref(), "target" | "data" | "tests" | "node_modules");
                if !skipped && !name.starts_with('.') {
                    pending.push(entry.path());
                }
            } else if let Some(extension) = entry.path().extension()
                && SOURCES.iter().any(|s| extension == *s)
                && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            {
                newest = newest.max(modified);
            }
        }
    }
    newest
}
