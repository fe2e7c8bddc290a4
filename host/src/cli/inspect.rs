//! `rawalite inspect`: a component's imports and exports, each import
//! judged by the same check the host applies at load.

use super::Exit;
use anyhow::{Context, Result};
use clap::Args;
use rawalite_host::runtime::{self, Surface};
use std::path::{Path, PathBuf};

/// Show a component's imports and exports, each import marked allowed or
/// refused by the same check `render` and `serve` apply at load.
///
/// Exit codes: 0 every import is allowed, 1 at least one is refused, 2 the
/// file is not a component.
#[derive(Args)]
pub struct InspectArgs {
    /// The component to inspect.
    #[arg(value_name = "COMPONENT.wasm")]
    component: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<Exit> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let surface = runtime::read_surface(&args.component, &bytes)?;
    if args.json {
        println!("{}", json(&args.component, &bytes, &surface));
    } else {
        print(&args.component, &bytes, &surface);
    }
    Ok(if surface.refused().next().is_some() {
        Exit::Refused
    } else {
        Exit::Ok
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn print(path: &Path, bytes: &[u8], surface: &Surface) {
    println!("component {}", path.display());
    println!("  sha256  {}", sha256_hex(bytes));
    println!("  size    {}", bytesize::ByteSize(bytes.len() as u64));
    println!("imports");
    for import in &surface.imports {
        let kind = if import.item.kind == "type" {
            "  (type alias)"
        } else {
            ""
        };
        match import.refused {
            None => println!("  allowed  {}{kind}", import.item.name),
            Some(why) => println!("  REFUSED  {}  -- {why}", import.item.name),
        }
    }
    println!("exports");
    for export in &surface.exports {
        println!("  {:<8} {}", export.kind, export.name);
    }
    let refused = surface.refused().count();
    if refused > 0 {
        println!("{refused} import(s) refused: this component cannot be loaded");
    }
}

fn json(path: &Path, bytes: &[u8], surface: &Surface) -> serde_json::Value {
    serde_json::json!({
        "component": path.display().to_string(),
        "sha256": sha256_hex(bytes),
        "size": bytes.len(),
        "imports": surface.imports.iter().map(|i| serde_json::json!({
            "name": i.item.name,
            "kind": i.item.kind,
            "allowed": i.refused.is_none(),
            "reason": i.refused,
        })).collect::<Vec<_>>(),
        "exports": surface.exports.iter().map(|e| serde_json::json!({
            "name": e.name,
            "kind": e.kind,
        })).collect::<Vec<_>>(),
        "refused": surface.refused().count(),
    })
}
