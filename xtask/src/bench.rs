//! The benchmark report: each criterion group that ran has a `native`
//! baseline (the same work without the sandbox); every other benchmark in
//! the group is printed as its median and its ratio to that baseline.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::SystemTime;

pub fn report(criterion: &Path, since: SystemTime) -> Result<()> {
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
    println!();
    println!("| benchmark | median | native median | ratio (sandboxed / native) |");
    println!("|---|---:|---:|---:|");
    for (group, bench, m, baseline) in rows {
        println!(
            "| {group}/{bench} | {} | {} | {:.1}x |",
            human(m),
            human(baseline),
            m / baseline
        );
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
