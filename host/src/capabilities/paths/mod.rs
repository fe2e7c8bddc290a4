//! The `paths` capability: the PATHS system. Named roots (the registry,
//! `[paths]` in the manifest) are opened once as cap-std directories; a
//! guest may `open` the ones its grant names and gets a `root` handle, which
//! is the capability. Refuses: ungranted roots (the same answer whether they
//! exist or not), writes to read-only roots, changes past the quota or the
//! bound on entries, reads and listings larger than the guest can hold, and
//! any path that is malformed or leads out of the root.

mod grant;
mod root;

pub use grant::{
    Access as GrantAccess, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_FILE, PathsGrant, RootGrant,
};
pub use root::{BLOCK, Change, Root, RootError, SharedUsage, Usage};

use super::rawalite::bridge::paths::{Access, Entry, EntryKind, Host, HostRoot};
use super::{Call, CallError, Error, ErrorCode, blocking};
use root::Bounds;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasData, Resource, ResourceTable};

/// Links `paths` to a request's [`View`].
pub struct Paths;

impl HasData for Paths {
    type Data<'a> = View<'a>;
}

/// What a `paths` call works with: the request's state, the table that
/// holds its open roots, and its calls.
pub struct View<'a> {
    pub(crate) state: &'a mut State,
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) call: &'a mut Call,
}

/// One guest's roots, built once at load: each granted root with its grant.
pub struct GuestPaths {
    roots: BTreeMap<String, (Arc<Root>, RootGrant)>,
}

impl GuestPaths {
    pub fn new(roots: BTreeMap<String, (Arc<Root>, RootGrant)>) -> Self {
        GuestPaths { roots }
    }

    /// Each granted root's name and grant, for `audit`.
    pub fn grants(&self) -> impl Iterator<Item = (&str, &RootGrant)> {
        self.roots
            .iter()
            .map(|(name, (_, grant))| (name.as_str(), grant))
    }
}

/// An opened root, as the guest's `root` handle refers to it.
pub struct RootHandle {
    name: Arc<str>,
    root: Arc<Root>,
    grant: RootGrant,
}

/// What one request's `paths` calls work with: the guest's roots and the
/// most it may read at once.
pub struct State {
    paths: Option<Arc<GuestPaths>>,
    read_limit: u64,
}

impl State {
    /// The guest's roots, for a guest of `memory` bytes (it can read at
    /// most half of that at once).
    pub(crate) fn new(paths: Option<Arc<GuestPaths>>, memory: u64) -> Self {
        State {
            paths,
            read_limit: memory / 2,
        }
    }
}

impl View<'_> {
    /// Runs one operation on an open root and writes its audit event.
    fn on_root<T>(
        &mut self,
        handle: &Resource<RootHandle>,
        op: &'static str,
        path: &str,
        f: impl FnOnce(&RootHandle, Instant) -> Result<(T, u64), Error>,
    ) -> Result<T, CallError> {
        let started = self.call.begin()?;
        let handle = self
            .table
            .get(handle)
            .map_err(|_| Error::new(ErrorCode::InvalidInput, "this root handle is closed"))?;
        let result = f(handle, self.call.deadline);
        if self.call.audit("paths", super::outcome(&result)) {
            audit(&self.call.guest, &handle.name, op, path, &result, started);
        }
        Ok(result.map(|(value, _)| value)?)
    }
}

/// One audit event. The root's name and the path come from the guest, so
/// they are written escaped (`?`): a newline cannot start a forged event.
/// A denied call's the log never drops.
fn audit<T>(
    guest: &str,
    root: &str,
    op: &str,
    path: &str,
    result: &Result<(T, u64), Error>,
    started: Instant,
) {
    let us = started.elapsed().as_micros() as u64;
    match result {
        Ok((_, bytes)) => tracing::info!(
            target: "rawalite::audit",
            guest = %guest, capability = "paths", root = ?root, op, path = ?path, bytes,
            outcome = "ok", us,
        ),
        Err(e) => crate::log_queue::keep(e.code == ErrorCode::Denied, || {
            tracing::info!(
                target: "rawalite::audit",
                guest = %guest, capability = "paths", root = ?root, op, path = ?path,
                outcome = e.code.as_str(), error = ?e.message, us,
            )
        }),
    }
}

impl Host for View<'_> {
    fn granted(&mut self) -> wasmtime::Result<Vec<String>> {
        let started = self.call.begin()?;
        let names: Vec<String> = self
            .state
            .paths
            .as_ref()
            .map(|p| p.roots.keys().cloned().collect())
            .unwrap_or_default();
        if self.call.audit("paths", "ok") {
            audit(&self.call.guest, "", "granted", "", &Ok(((), 0)), started);
        }
        Ok(names)
    }

    fn open(&mut self, name: String) -> Result<Resource<RootHandle>, CallError> {
        let started = self.call.begin()?;
        let granted = self.state.paths.as_ref().and_then(|p| p.roots.get(&name));
        let result = match granted {
            None => Err(Error::new(
                ErrorCode::Denied,
                format!(
                    "root `{name}` is not in this guest's paths grant ([guest.paths] in the manifest)"
                ),
            )),
            Some((root, grant)) => self
                .table
                .push(RootHandle {
                    name: Arc::from(name.as_str()),
                    root: root.clone(),
                    grant: *grant,
                })
                .map(|handle| (handle, 0))
                .map_err(|_| {
                    Error::new(
                        ErrorCode::TooLarge,
                        "too many open handles in this request; drop roots you no longer need",
                    )
                }),
        };
        if self.call.audit("paths", super::outcome(&result)) {
            audit(&self.call.guest, &name, "open", "", &result, started);
        }
        Ok(result.map(|(handle, _)| handle)?)
    }
}

impl RootHandle {
    /// What this guest may make of the root, for a change ending by `deadline`.
    fn bounds(&self, deadline: Instant) -> Bounds {
        Bounds {
            quota: self.grant.quota(),
            entries: self.grant.max_entries(),
            max_file: self.grant.max_file(),
            deadline,
        }
    }
}

impl HostRoot for View<'_> {
    fn access(&mut self, handle: Resource<RootHandle>) -> wasmtime::Result<Access> {
        let access = self.on_root(&handle, "access", "", |h, _| {
            Ok((
                match h.grant.access {
                    GrantAccess::ReadWrite => Access::ReadWrite,
                    GrantAccess::ReadOnly => Access::ReadOnly,
                },
                0,
            ))
        });
        match access {
            Ok(access) => Ok(access),
            Err(CallError::Stop(e)) => Err(e),
            // A closed handle: nothing to write through it.
            Err(CallError::Guest(_)) => Ok(Access::ReadOnly),
        }
    }

    fn read(&mut self, handle: Resource<RootHandle>, path: String) -> Result<Vec<u8>, CallError> {
        let limit = self.state.read_limit;
        self.on_root(&handle, "read", &path, |h, _| {
            let bytes = blocking(|| h.root.read(&path, h.grant.max_file().min(limit)))
                .map_err(|e| error(e, h, &path))?;
            let n = bytes.len() as u64;
            Ok((bytes, n))
        })
    }

    fn write(
        &mut self,
        handle: Resource<RootHandle>,
        path: String,
        contents: Vec<u8>,
    ) -> Result<(), CallError> {
        self.on_root(&handle, "write", &path, |h, deadline| {
            writable(h)?;
            blocking(|| h.root.write(&path, &contents, &h.bounds(deadline)))
                .map_err(|e| error(e, h, &path))?;
            Ok(((), contents.len() as u64))
        })
    }

    fn list_dir(
        &mut self,
        handle: Resource<RootHandle>,
        path: String,
    ) -> Result<Vec<Entry>, CallError> {
        self.on_root(&handle, "list", &path, |h, _| {
            let entries = blocking(|| h.root.list(&path, h.grant.max_entries()))
                .map_err(|e| error(e, h, &path))?;
            let entries: Vec<Entry> = entries
                .into_iter()
                .map(|e| Entry {
                    name: e.name,
                    kind: if e.is_dir {
                        EntryKind::Directory
                    } else {
                        EntryKind::File
                    },
                    size: e.size,
                    modified_ms: e.modified_ms,
                })
                .collect();
            Ok((entries, 0))
        })
    }

    fn remove(&mut self, handle: Resource<RootHandle>, path: String) -> Result<(), CallError> {
        self.on_root(&handle, "remove", &path, |h, deadline| {
            writable(h)?;
            blocking(|| h.root.remove(&path, deadline)).map_err(|e| error(e, h, &path))?;
            Ok(((), 0))
        })
    }

    fn create_dir(&mut self, handle: Resource<RootHandle>, path: String) -> Result<(), CallError> {
        self.on_root(&handle, "create-dir", &path, |h, deadline| {
            writable(h)?;
            blocking(|| h.root.create_dir(&path, &h.bounds(deadline)))
                .map_err(|e| error(e, h, &path))?;
            Ok(((), 0))
        })
    }

    fn drop(&mut self, handle: Resource<RootHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

fn writable(h: &RootHandle) -> Result<(), Error> {
    match h.grant.access {
        GrantAccess::ReadWrite => Ok(()),
        GrantAccess::ReadOnly => Err(Error::new(
            ErrorCode::Denied,
            format!(
                "root `{}` is read-only for this guest (`access = \"read-write\"` under [guest.paths] in the manifest)",
                h.name
            ),
        )),
    }
}

/// The guest's view of a failed operation: its own path and the root's
/// name, never where the root is on the host.
fn error(e: RootError, h: &RootHandle, path: &str) -> Error {
    let root = &h.name;
    match e {
        RootError::BadPath(why) => Error::new(ErrorCode::InvalidInput, format!("`{path}`: {why}")),
        RootError::NotFound => Error::new(
            ErrorCode::NotFound,
            format!("`{path}` does not exist in root `{root}`"),
        ),
        RootError::Escapes => Error::new(
            ErrorCode::Denied,
            format!("`{path}` leads outside root `{root}`"),
        ),
        RootError::IsDirectory => {
            Error::new(ErrorCode::InvalidInput, format!("`{path}` is a directory"))
        }
        RootError::NotDirectory => Error::new(
            ErrorCode::InvalidInput,
            format!("`{path}` is not a directory"),
        ),
        RootError::Exists => Error::new(ErrorCode::Conflict, format!("`{path}` already exists")),
        RootError::NotEmpty => Error::new(
            ErrorCode::Conflict,
            format!("directory `{path}` is not empty"),
        ),
        RootError::Quota { quota, would_be } => Error::new(
            ErrorCode::TooLarge,
            format!(
                "`{path}` would take root `{root}` to {would_be} bytes, over this guest's quota of {quota}"
            ),
        ),
        RootError::TooLarge { limit } => Error::new(
            ErrorCode::TooLarge,
            format!("`{path}` is larger than this guest's file limit of {limit} bytes"),
        ),
        RootError::TooManyEntries { limit } => Error::new(
            ErrorCode::TooLarge,
            format!(
                "creating `{path}` would take root `{root}` past this guest's {limit} entries (max_entries)"
            ),
        ),
        RootError::TooManyToList { limit } => Error::new(
            ErrorCode::TooLarge,
            format!("`{path}` has more than this guest's {limit} entries to list (max_entries)"),
        ),
        RootError::Busy => Error::new(
            ErrorCode::Timeout,
            format!("root `{root}` was busy with another change until this request's deadline"),
        ),
        RootError::Deadline => Error::new(
            ErrorCode::Timeout,
            format!(
                "writing `{path}` did not finish before this request's deadline; the file is unchanged"
            ),
        ),
        RootError::Shared(why) => {
            tracing::error!(root = ?root, path = ?path, error = %why, "the usage hosts share could not be read or written");
            Error::new(
                ErrorCode::Unavailable,
                format!(
                    "root `{root}` could not be changed: the database that counts it for every host did not answer; try again later"
                ),
            )
        }
        RootError::NoSpace => {
            tracing::error!(root = ?root, path = ?path, "no space left to write: the disk is full or a file size limit was reached");
            Error::new(
                ErrorCode::Unavailable,
                format!(
                    "the server's disk is full: `{path}` was not written and the old file is unchanged; try again later"
                ),
            )
        }
        RootError::Io(e) => {
            tracing::error!(root = ?root, path = ?path, error = %e, "file operation failed");
            Error::new(
                ErrorCode::Internal,
                "the file operation failed; the host's log has the details",
            )
        }
    }
}
