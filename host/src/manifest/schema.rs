//! `rawalite.toml` as written: the raw serde schema, every section
//! `deny_unknown_fields`.

use super::BrowserGrant;
use crate::capabilities::db::DbGrant;
use crate::capabilities::paths::PathsGrant;
use crate::capabilities::session::SessionGrant;
use crate::net::Network;
use crate::units::{Every, Size};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) app: RawApp,
    #[serde(default)]
    pub(super) paths: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub(super) guest: Vec<RawGuest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) name: String,
    #[serde(default = "default_data_dir")]
    pub(super) data_dir: PathBuf,
    /// Relative to the manifest: assets ship with the app, not its data.
    pub(super) r#static: Option<PathBuf>,
    #[serde(default)]
    pub(super) hosts: Vec<String>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Network>,
    pub(super) backup: Option<RawBackup>,
    pub(super) database: Option<String>,
    #[serde(default)]
    pub(super) portable_sql: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    pub(super) every: Every,
    pub(super) keep: usize,
    /// Relative to the manifest.
    pub(super) dir: PathBuf,
}

pub(super) fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuest {
    pub(super) name: String,
    pub(super) component: PathBuf,
    pub(super) route: Option<String>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    pub(super) db: Option<DbGrant>,
    #[serde(default)]
    pub(super) paths: PathsGrant,
    #[serde(default)]
    pub(super) session: SessionGrant,
    #[serde(default)]
    pub(super) browser: BrowserGrant,
}

/// `[guest.limits]`; anything left out keeps its default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) memory: Option<Size>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) response: Option<Size>,
    pub(super) handles: Option<usize>,
    pub(super) db_rows: Option<usize>,
    pub(super) db_bytes: Option<Size>,
}
