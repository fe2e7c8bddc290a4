//! `rawalite audit`: per guest, what it may touch. Reads the manifest and
//! the components only; no database is opened.

use super::Exit;
use super::inspect::sha256_hex;
use anyhow::Result;
use clap::Args;
use rawalite_host::manifest::{GuestEntry, Manifest};
use rawalite_host::runtime::{self, Limits};
use rawalite_host::server::MAX_REQUEST;
use serde_json::{Value as Json, json};
use std::path::PathBuf;

/// Show, per guest, what it may touch: its component's hash and imports,
/// the tables it may read and write, the roots with access and quota, what
/// its requests need from the session, and its limits. A guest whose
/// component imports more than the manifest grants, or is granted what it
/// does not import, is flagged.
///
/// Exit codes: 0 nothing flagged, 1 something flagged, 2 a bad manifest.
#[derive(Args)]
pub struct AuditArgs {
    /// The app's manifest.
    #[arg(long, value_name = "FILE", default_value = "rawalite.toml")]
    manifest: PathBuf,
    /// Print JSON instead of a report.
    #[arg(long)]
    json: bool,
}

/// One guest's audit.
struct Report {
    json: Json,
    flags: Vec<String>,
}

pub fn run(args: AuditArgs) -> Result<Exit> {
    let manifest = Manifest::load(&args.manifest)?;
    let reports: Vec<Report> = manifest.guests.iter().map(audit).collect();
    let flagged = reports.iter().any(|r| !r.flags.is_empty());
    if args.json {
        let guests: Vec<Json> = reports.into_iter().map(|r| r.json).collect();
        println!(
            "{}",
            json!({"manifest": manifest.file.display().to_string(), "app": manifest.app_name, "guests": guests})
        );
    } else {
        println!("{} ({})", manifest.app_name, manifest.file.display());
        for report in &reports {
            print(report);
        }
        if flagged {
            println!("\nflagged: see FLAG lines above");
        }
    }
    Ok(if flagged { Exit::Refused } else { Exit::Ok })
}

fn audit(g: &GuestEntry) -> Report {
    let mut flags = Vec::new();
    let (hash, imports) = match std::fs::read(&g.component) {
        Err(e) => {
            flags.push(format!(
                "cannot read the component ({e}); build it with `rawalite build` (in this repository: `cargo xtask build`)"
            ));
            (None, Vec::new())
        }
        Ok(bytes) => match runtime::read_surface(&g.component, &bytes) {
            Err(e) => {
                flags.push(e.to_string());
                (Some(sha256_hex(&bytes)), Vec::new())
            }
            Ok(surface) => {
                for refused in surface.refused() {
                    flags.push(format!("would be refused at load: imports {refused}"));
                }
                let imports: Vec<String> = surface.capabilities().map(str::to_owned).collect();
                (Some(sha256_hex(&bytes)), imports)
            }
        },
    };
    let imports_cap = |cap: &str| imports.iter().any(|i| i == cap);
    let db_granted = g.grants_db();
    let paths_granted = g.grants_paths();
    if imports_cap("db") && !db_granted {
        flags.push("imports db, but the manifest grants it no table".into());
    }
    if imports_cap("paths") && !paths_granted {
        flags.push("imports paths, but the manifest grants it no root".into());
    }
    if hash.is_some() && db_granted && !imports_cap("db") {
        flags.push("is granted tables but does not import db: remove [guest.db]".into());
    }
    if hash.is_some() && paths_granted && !imports_cap("paths") {
        flags.push("is granted roots but does not import paths: remove [guest.paths]".into());
    }
    let (read, write): (Vec<&str>, Vec<&str>) = match &g.db {
        Some(db) => (
            db.readable().into_iter().collect(),
            db.writable().into_iter().collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let roots: Vec<Json> = g
        .paths
        .iter()
        .map(|(name, grant)| {
            json!({
                "root": name,
                "access": grant.access.as_str(),
                "quota": grant.quota.map(|q| q.0),
                "max_file": grant.max_file(),
                "max_entries": grant.max_entries(),
            })
        })
        .collect();
    let json = json!({
        "name": g.name,
        "route": g.route,
        "component": g.component.display().to_string(),
        "sha256": hash,
        "imports": imports,
        "db": {"read": read, "write": write},
        "paths": roots,
        "session": {
            "require_login": g.session.require_login,
            "roles": g.session.roles,
            "login": g.session.login,
        },
        "browser": {
            "scripts": g.browser.scripts,
            "accept_from": g.browser.accept_from,
        },
        "limits": limits_json(&g.limits),
        "flags": flags,
    });
    Report { json, flags }
}

fn limits_json(l: &Limits) -> Json {
    json!({
        "memory": l.memory,
        "timeout_ms": l.timeout.as_millis() as u64,
        "response": l.response_bytes,
        "handles": l.handles,
        "db_rows": l.db_rows,
        "db_bytes": l.db_bytes,
        "worst_case_bytes": l.worst_case_bytes(MAX_REQUEST as u64),
    })
}

fn print(report: &Report) {
    let g = &report.json;
    let list = |v: &Json| -> String {
        let items: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        if items.is_empty() {
            "-".into()
        } else {
            items.join(", ")
        }
    };
    let size = |v: &Json| bytesize::ByteSize(v.as_u64().unwrap_or(0)).to_string();
    println!();
    println!(
        "guest {}  route {}",
        g["name"].as_str().unwrap_or(""),
        g["route"].as_str().unwrap_or("(none: command line only)")
    );
    println!("  component  {}", g["component"].as_str().unwrap_or(""));
    println!("  sha256     {}", g["sha256"].as_str().unwrap_or("-"));
    println!("  imports    {}", list(&g["imports"]));
    println!("  db read    {}", list(&g["db"]["read"]));
    println!("  db write   {}", list(&g["db"]["write"]));
    let roots: Vec<String> = g["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let quota = if r["quota"].is_null() {
                String::new()
            } else {
                format!(", quota {}", size(&r["quota"]))
            };
            format!(
                "{} ({}{quota})",
                r["root"].as_str().unwrap_or(""),
                r["access"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!(
        "  paths      {}",
        if roots.is_empty() {
            "-".into()
        } else {
            roots.join(", ")
        }
    );
    let s = &g["session"];
    let mut needs = Vec::new();
    if s["require_login"].as_bool() == Some(true) {
        needs.push("signed-in user".to_owned());
    }
    if !list(&s["roles"]).starts_with('-') {
        needs.push(format!("a role of: {}", list(&s["roles"])));
    }
    println!(
        "  session    {}{}",
        if needs.is_empty() {
            "anyone".into()
        } else {
            needs.join("; ")
        },
        if s["login"].as_bool() == Some(true) {
            "; may sign users in and out"
        } else {
            ""
        }
    );
    let b = &g["browser"];
    println!(
        "  browser    scripts {}; forms and requests from its own pages{}",
        list(&b["scripts"]),
        match list(&b["accept_from"]).as_str() {
            "-" => String::new(),
            from => format!(" and those of {from}"),
        }
    );
    let l = &g["limits"];
    println!(
        "  limits     memory {}, timeout {} ms, response {}, handles {}, db {} rows / {} per call",
        size(&l["memory"]),
        l["timeout_ms"],
        size(&l["response"]),
        l["handles"],
        l["db_rows"],
        size(&l["db_bytes"]),
    );
    println!(
        "  worst case {} of memory per request, guest and host together",
        size(&l["worst_case_bytes"])
    );
    for flag in &report.flags {
        println!("  FLAG       {flag}");
    }
}
