//! The benchmark report: each criterion group that ran has a `native`
//! baseline (the same work without the sandbox); every other benchmark in
//! the group is printed as its median and its ratio to that baseline, with
//! the targets of the ones that have one. A full run also writes the table
//! into BENCHMARKS.md.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::SystemTime;

/// A target a benchmark is held to: what it says, and whether a median (and
/// its baseline's), in nanoseconds, meets it.
type Target = (&'static str, &'static str, fn(f64, f64) -> bool);

const TARGETS: &[Target] = &[
    ("hello/guest", "median ≤ 6 µs", |median, _| {
        median <= 6_000.0
    }),
    ("hello/typescript", "median ≤ 300 µs", |median, _| {
        median <= 300_000.0
    }),
    ("db-query/guest", "≤ 2x native", |median, native| {
        median <= 2.0 * native
    }),
    (
        "db-query-postgres/guest",
        "≤ 1.5x native",
        |median, native| median <= 1.5 * native,
    ),
];

/// Prints the table; with `write`, puts it into `root`'s BENCHMARKS.md.
pub fn report(root: &Path, since: SystemTime, write: bool) -> Result<()> {
    let criterion = root.join("target/criterion");
    let criterion = criterion.as_path();
    let mut rows = Vec::new();
    let mut groups: Vec<_> = std::fs::read_dir(criterion)
        .with_context(|| format!("no criterion results in {}", criterion.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "report"))
        .collect();
    groups.sort();
    for group in groups {
        let Some(baseline) = median(&group.join("native"), since)? else {
            continue;
        };
        let mut benches: Vec<_> = std::fs::read_dir(&group)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n != "native" && n != "report")
            })
            .collect();
        benches.sort();
        for bench in benches {
            if let Some(m) = median(&bench, since)? {
                rows.push((name(&group), name(&bench), m, baseline));
            }
        }
    }
    let mut table = String::from(
        "| benchmark | median | native median | ratio (sandboxed / native) | target |\n|---|---:|---:|---:|---|\n",
    );
    for (group, bench, m, baseline) in rows {
        let name = format!("{group}/{bench}");
        let target = TARGETS
            .iter()
            .find(|(b, _, _)| *b == name)
            .map(|(_, what, met)| {
                let verdict = if met(m, baseline) { "met" } else { "missed" };
                format!("{what}: {verdict}")
            })
            .unwrap_or_default();
        table += &format!(
            "| {name} | {} | {} | {:.1}x | {target} |\n",
            human(m),
            human(baseline),
            m / baseline
        );
    }
    println!("\n{table}");
    if write {
        super::write_generated(
            root,
            "bench",
            &format!(
                "_Written by `cargo xtask bench` on {}._\n\n{table}",
                super::today()
            ),
        )?;
    }
    Ok(())
}

fn name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The median in nanoseconds of a benchmark that ran since `since`.
fn median(bench: &Path, since: SystemTime) -> Result<Option<f64>> {
    let file = bench.join("new/estimates.json");
    let Ok(meta) = std::fs::metadata(&file) else {
        return Ok(None);
    };
    if meta.modified()? < since {
        return Ok(None);
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    Ok(estimates["median"]["point_estimate"].as_f64())
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
