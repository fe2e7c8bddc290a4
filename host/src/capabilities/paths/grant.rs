//! `[guest.paths]`: the roots a guest may open, each with its access, its
//! byte quota, its bound on entries and its largest file.

use crate::units::Size;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The largest single file unless a grant says otherwise.
pub const DEFAULT_MAX_FILE: u64 = 64 << 20;
/// The most entries (files, directories) a root may hold after a guest's
/// change, and the most a listing returns, unless a grant says otherwise.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        }
    }
}

/// One root in one guest's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootGrant {
    pub access: Access,
    /// The most bytes the root may hold after one of this guest's writes.
    /// Required for read-write roots.
    #[serde(default)]
    pub quota: Option<Size>,
    /// The largest file this guest may write or read.
    #[serde(default)]
    pub max_file: Option<Size>,
    /// The most entries the root may hold after one of this guest's
    /// changes; also the longest listing it gets.
    #[serde(default)]
    pub max_entries: Option<u64>,
}

impl RootGrant {
    pub fn quota(&self) -> u64 {
        self.quota.map_or(0, |q| q.0)
    }

    pub fn max_file(&self) -> u64 {
        self.max_file.map_or(DEFAULT_MAX_FILE, |m| m.0)
    }

    pub fn max_entries(&self) -> u64 {
        self.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES)
    }

    /// A read-write root needs a quota; a quota on a read-only root would
    /// suggest a protection it does not give.
    pub fn check(&self) -> Result<(), String> {
        match (self.access, self.quota) {
            (Access::ReadWrite, None) => {
                Err("a read-write root needs a quota, e.g. quota = \"50 MiB\"".to_owned())
            }
            (Access::ReadOnly, Some(_)) => {
                Err("a read-only root cannot be written, so it takes no quota".to_owned())
            }
            _ => Ok(()),
        }
    }
}

/// `[guest.paths]`: root name → grant.
pub type PathsGrant = BTreeMap<String, RootGrant>;
