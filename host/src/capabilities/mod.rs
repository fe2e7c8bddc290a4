//! The three capabilities a renderer can import: `db`, `paths`, `session`.
//!
//! Each is one module with the same shape: its grant (parsed once from the
//! manifest), its per-request state, and its implementation of the host
//! trait generated from `wit/`. Adding a capability means one WIT interface
//! and one module here; nothing else changes.

pub mod db;
pub mod paths;
pub mod session;

use crate::runtime::GuestState;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "renderer",
    with: {
        "rawalite:bridge/paths.root": paths::RootHandle,
    },
});

// The world's `use types.{request, response, error}` puts `Request`,
// `Response` and `Error` at this module's root.
pub use rawalite::bridge::types::ErrorCode;

/// Links every capability into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    rawalite::bridge::types::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    rawalite::bridge::db::add_to_linker::<GuestState, db::Db>(linker, |s| &mut s.db)?;
    rawalite::bridge::paths::add_to_linker::<GuestState, paths::Paths>(linker, |s| paths::View {
        state: &mut s.paths,
        table: &mut s.table,
    })?;
    rawalite::bridge::session::add_to_linker::<GuestState, session::Session>(linker, |s| {
        &mut s.session
    })?;
    Ok(())
}

impl rawalite::bridge::types::Host for GuestState {}

/// What one guest is granted, resolved once at load. Nothing by default.
#[derive(Clone, Default)]
pub struct Grants {
    pub db: Option<Arc<db::GuestDb>>,
    pub paths: Option<Arc<paths::GuestPaths>>,
    /// What a request needs before the guest runs.
    pub session: session::SessionGrant,
    /// The user database behind `session`; none when the host has no data
    /// directory (a component rendered on its own).
    pub auth: Option<Arc<crate::auth::Auth>>,
}

/// Each capability's state for one request of `guest`.
pub(crate) struct RequestStates {
    pub db: db::State,
    pub paths: paths::State,
    pub session: session::State,
}

impl Grants {
    pub(crate) fn request(
        &self,
        guest: &Arc<str>,
        deadline: Instant,
        caller: session::Caller,
    ) -> RequestStates {
        RequestStates {
            db: db::State::new(guest.clone(), self.db.clone(), deadline),
            paths: paths::State::new(guest.clone(), self.paths.clone()),
            session: session::State::new(guest.clone(), self.auth.clone(), caller),
        }
    }
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl ErrorCode {
    /// The name used in the WIT world and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Denied => "denied",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}
