//! The guest SDKs and the WIT they are written against, built into the
//! binary: `rawalite new` copies the Rust SDK into each Rust project, and
//! `rawalite build` hands the Python SDK to componentize-py and the
//! TypeScript one to its bundler. A guest never
//! needs this repository's checkout, and it is always built against the
//! bridge of the host that will run it.

use anyhow::{Context, Result};
use std::path::Path;

/// A file: its path under the SDK directory and its text.
pub type File = (&'static str, &'static str);

macro_rules! files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../../", $path)))),*]
    };
}

/// The WIT package (`rawalite:bridge`).
pub const WIT: &[File] = files!["wit/bridge.wit"];

/// The Rust SDK (`rawalite-guest`) and the crate it uses for redirects.
pub const RUST: &[File] = files![
    "guest-sdk/Cargo.toml",
    "guest-sdk/src/lib.rs",
    "guest-sdk/src/db.rs",
    "guest-sdk/src/html.rs",
    "guest-sdk/src/request.rs",
    "guest-sdk/src/response.rs",
    "guest-sdk/src/values.rs",
    "location/Cargo.toml",
    "location/src/lib.rs",
];

/// The Python SDK (`rawalite_guest`).
pub const PYTHON: &[File] = files!["guest-sdk-python/rawalite_guest/__init__.py"];

/// The TypeScript SDK (`rawalite-guest`); `rawalite build` adds the rest.
pub const TYPESCRIPT: &[File] = files![
    "guest-sdk-ts/bridge.d.ts",
    "guest-sdk-ts/globals.d.ts",
    "guest-sdk-ts/granted.ts",
    "guest-sdk-ts/index.ts",
    "guest-sdk-ts/runtime.ts",
];

/// Writes `files` under `dir`.
pub fn write(dir: &Path, files: &[File]) -> Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every source file of the SDKs is built in: a module added to an SDK
    /// and forgotten here would break every project `rawalite new` makes.
    #[test]
    fn every_sdk_source_is_embedded() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let embedded: Vec<&str> = [WIT, RUST, PYTHON, TYPESCRIPT]
            .concat()
            .iter()
            .map(|f| f.0)
            .collect();
        for dir in [
            "wit",
            "guest-sdk/src",
            "location/src",
            "guest-sdk-python/rawalite_guest",
            "guest-sdk-ts",
        ] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if [".rs", ".py", ".wit", ".ts"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
                {
                    let path = format!("{dir}/{name}");
                    assert!(embedded.contains(&path.as_str()), "{path} is not in sdk.rs");
                }
            }
        }
    }
}
