//! Why a manifest was refused, with the file, the line and the key path.

use std::path::{Path, PathBuf};

/// Why a manifest was refused: one line naming the file, and where known
/// the line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// Deserializes TOML, reporting the key path (`guest[1].limits.memory`) and
/// the line of the first error.
pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ManifestError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| toml_error(file, text, &e, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        toml_error(file, text, e.inner(), Some(path))
    })
}

pub(super) fn toml_error(
    file: &Path,
    text: &str,
    e: &toml::de::Error,
    path: Option<String>,
) -> ManifestError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim_end_matches('\n').to_owned();
    ManifestError {
        file: file.to_owned(),
        line,
        message: match path {
            Some(path) if path != "." => format!("{path}: {message}"),
            _ => message,
        },
    }
}
