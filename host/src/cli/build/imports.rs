//! What a Python or TypeScript guest imports: the capabilities its
//! manifest grants it, in a world of their own.

use anyhow::Result;
use rawalite_host::manifest::Manifest;
use std::path::Path;

/// The capabilities the manifest grants guest `name`: `db` with a table,
/// `paths` with a root, `session` always (reading who is signed in needs no
/// grant). Without a manifest or an entry for `name`, all three.
pub(in crate::cli) fn granted_capabilities(
    manifest: &Path,
    name: &str,
) -> Result<Vec<&'static str>> {
    if !manifest.is_file() {
        return Ok(vec!["db", "paths", "session"]);
    }
    let manifest = Manifest::load(manifest)?;
    let Some(guest) = manifest.guests.iter().find(|g| g.name == name) else {
        return Ok(vec!["db", "paths", "session"]);
    };
    let mut capabilities = Vec::new();
    if guest.grants_db() {
        capabilities.push("db");
    }
    if guest.grants_paths() {
        capabilities.push("paths");
    }
    capabilities.push("session");
    Ok(capabilities)
}

/// A world with the renderer's export and exactly these imports.
pub(super) fn guest_world(capabilities: &[&str]) -> String {
    let imports: String = capabilities
        .iter()
        .map(|c| format!("  import {c};\n"))
        .collect();
    format!(
        "package rawalite:bridge@0.1.0;\n\n\
         world guest {{\n{imports}  import log;\n  import clock;\n  import random;\n\n  use types.{{request, response, error}};\n\n  \
         export render: func(req: request) -> result<response, error>;\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_guest_imports_what_its_manifest_grants() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("rawalite.toml");
        std::fs::write(
            &manifest,
            "[app]\nname = \"t\"\n[paths]\nfiles = \"files\"\n\
             [[guest]]\nname = \"reader\"\ncomponent = \"r.wasm\"\n[guest.db]\nread = [\"customers\"]\n\
             [[guest]]\nname = \"filer\"\ncomponent = \"f.wasm\"\n[guest.paths]\nfiles = { access = \"read-only\" }\n",
        )
        .unwrap();
        assert_eq!(
            granted_capabilities(&manifest, "reader").unwrap(),
            ["db", "session"]
        );
        assert_eq!(
            granted_capabilities(&manifest, "filer").unwrap(),
            ["paths", "session"]
        );
        assert_eq!(
            granted_capabilities(&manifest, "unlisted").unwrap(),
            ["db", "paths", "session"]
        );
        let world = guest_world(&["db", "session"]);
        assert!(
            world.contains("import db;\n  import session;\n  import log;"),
            "{world}"
        );
        assert!(!world.contains("paths"));
    }
}
