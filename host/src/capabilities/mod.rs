//! The three capabilities a renderer can import: `db`, `paths`, `session`.
//!
//! Each is one module with the same shape: its grant (parsed once from the
//! manifest), its per-request state, and its implementation of the host
//! trait generated from `wit/`. Adding a capability means a WIT interface,
//! a module here, and its wiring: a field of [`Grants`] and of
//! `RequestStates` (and `runtime::GuestState`), a [`States`] method, its
//! key in the manifest and its branch in `App::grants`.

mod call;
pub mod db;
pub mod paths;
pub mod session;

pub(crate) use crate::blocking::blocking;
pub use call::{AUDIT_EVENTS, Call, CallError, DeadlineReached, Refused};

use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::Linker;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "renderer",
    // Every call may stop the guest (a deadline, a refused call), and a
    // call's `types.error` comes back as `CallError::Guest`.
    // `db` is async for the host: on PostgreSQL a call awaits the server
    // on the worker's own runtime (the guest's fiber waits; the worker
    // serves other requests meanwhile).
    imports: { "rawalite:bridge/db": async | trappable, default: trappable },
    trappable_error_type: {
        "rawalite:bridge/types.error" => CallError,
    },
    with: {
        "rawalite:bridge/paths.root": paths::RootHandle,
    },
});

// The world's `use types.{request, response, error}` puts `Request`,
// `Response` and `Error` at this module's root.
pub use rawalite::bridge::types::ErrorCode;

/// What a store gives the capabilities: each one's view of its request
/// state. The runtime's store type implements it, as an embedder's store
/// implements wasmtime-wasi's `WasiView`, so no capability names it.
pub trait States: Send + 'static {
    fn db(&mut self) -> db::View<'_>;
    fn paths(&mut self) -> paths::View<'_>;
    fn session(&mut self) -> session::View<'_>;
}

/// Links every capability into `linker`.
pub(crate) fn add_to_linker<T: States>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    // `types` has nothing but the error conversion, which any view does.
    rawalite::bridge::types::add_to_linker::<T, db::Db>(linker, T::db)?;
    rawalite::bridge::db::add_to_linker::<T, db::Db>(linker, T::db)?;
    rawalite::bridge::paths::add_to_linker::<T, paths::Paths>(linker, T::paths)?;
    rawalite::bridge::session::add_to_linker::<T, session::Session>(linker, T::session)?;
    Ok(())
}

/// A call's `types.error` goes back to the guest; anything else stops it.
fn convert_error(error: CallError) -> wasmtime::Result<Error> {
    match error {
        CallError::Guest(e) => Ok(e),
        CallError::Stop(e) => Err(e),
    }
}

impl rawalite::bridge::types::Host for db::View<'_> {
    fn convert_error(&mut self, error: CallError) -> wasmtime::Result<Error> {
        convert_error(error)
    }
}

impl rawalite::bridge::types::Host for paths::View<'_> {
    fn convert_error(&mut self, error: CallError) -> wasmtime::Result<Error> {
        convert_error(error)
    }
}

impl rawalite::bridge::types::Host for session::View<'_> {
    fn convert_error(&mut self, error: CallError) -> wasmtime::Result<Error> {
        convert_error(error)
    }
}

/// What one guest is granted, resolved once at load. Nothing by default.
#[derive(Clone, Default)]
pub struct Grants {
    pub db: Option<Arc<db::GuestDb>>,
    pub paths: Option<Arc<paths::GuestPaths>>,
    /// What a request needs before the guest runs, and whether it may sign
    /// users in and out.
    pub session: session::SessionGrant,
    /// The user database behind `session`; none when the host has no data
    /// directory (a component rendered on its own).
    pub auth: Option<Arc<crate::auth::Auth>>,
}

/// Each capability's state for one request.
pub(crate) struct RequestStates {
    pub call: Call,
    pub db: db::State,
    pub paths: paths::State,
    pub session: session::State,
}

impl Grants {
    pub(crate) fn request(
        &self,
        guest: &Arc<str>,
        deadline: Instant,
        memory: u64,
        caller: session::Caller,
    ) -> RequestStates {
        RequestStates {
            call: Call::new(guest.clone(), deadline),
            db: db::State::new(self.db.clone()),
            paths: paths::State::new(self.paths.clone(), memory),
            session: session::State::new(self.auth.clone(), self.session.login, caller),
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

impl From<wasmtime::Error> for CallError {
    fn from(e: wasmtime::Error) -> Self {
        CallError::Stop(e)
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

    /// The HTTP status `serve` answers this error with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Denied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Timeout => 504,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// A call's outcome for the audit log and the metrics: `ok` or its error code.
pub(crate) fn outcome<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    }
}
