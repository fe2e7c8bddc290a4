//! Where users, sessions and the limiter's counts are kept: the host's
//! tables of SQLite or of PostgreSQL (schema `host`), behind one set of
//! calls with the same meaning on both. [`super::Auth`] holds the rules
//! (passwords, tokens, the limiter, expiry); a store only keeps rows.
//! Calls made for a request take its deadline and never wait past it.

use super::limiter::SharedCounts;
use super::{LoginError, User};
use anyhow::Result;
use std::sync::Arc;
use std::time::Instant;

/// A session row, for `session list`.
pub struct SessionRow {
    pub token_hash: Vec<u8>,
    pub username: String,
    pub client: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A session found by its token's hash, with its user.
pub struct Resolved {
    pub token_hash: Vec<u8>,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user: User,
}

/// A new session: what [`Store::open_session`] inserts.
pub struct NewSession<'a> {
    pub token_hash: &'a [u8],
    pub user_id: i64,
    /// The password hash just checked: the session opens only if it is
    /// still the user's.
    pub password_hash: &'a str,
    pub now: i64,
    pub expires_at: i64,
    pub client: Option<String>,
    /// Sessions the user keeps at most; the oldest others end.
    pub keep: usize,
}

/// The future of a store's call made on a request's worker.
pub type Pending<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The host's tables, as a backend keeps them (`database/sqlite/store.rs`,
/// `database/postgres/store.rs`).
pub trait Store: Send + Sync {
    /// Adds a user; `false` when the name is taken (ignoring case).
    fn add_user(&self, username: &str, display_name: &str, roles: &str, phc: &str) -> Result<bool>;

    fn users(&self) -> Result<Vec<User>>;

    fn user(&self, username: &str) -> Result<Option<User>>;

    /// Sets a user's password hash or disabled flag, ending their sessions
    /// with `end_sessions`; `false` when there is no such user.
    fn update_user(
        &self,
        username: &str,
        change: UserChange<'_>,
        end_sessions: bool,
    ) -> Result<bool>;

    fn sessions(&self) -> Result<Vec<SessionRow>>;

    fn delete_session(&self, token_hash: &[u8]) -> Result<bool>;

    fn delete_sessions_of(&self, username: &str) -> Result<usize>;

    fn remove_user(&self, username: &str) -> Result<bool>;

    /// The user called `username` with their password hash, for a sign-in.
    fn sign_in_lookup(
        &self,
        username: &str,
        deadline: Instant,
    ) -> Result<Option<(User, String)>, LoginError>;

    /// Opens `session`; `false` when the user's password changed since it
    /// was checked, or the user was disabled.
    fn open_session(&self, session: &NewSession<'_>, deadline: Instant)
    -> Result<bool, LoginError>;

    /// The session of `token_hash` and its user, if there is one.
    fn resolve(&self, token_hash: &[u8]) -> Result<Option<Resolved>>;

    /// [`Store::resolve`] for a request of `serve`'s: a backend that waits
    /// on the network lets the worker serve other requests meanwhile.
    fn resolve_async<'a>(&'a self, token_hash: &'a [u8]) -> Pending<'a, Option<Resolved>>;

    /// Deletes an expired session, or notes that a session was used at
    /// `now`, if that can be done at once; otherwise a later request does.
    fn try_expire(&self, token_hash: &[u8]);

    fn try_touch(&self, token_hash: &[u8], now: i64);

    /// Ends a session, waiting no later than `deadline`.
    fn logout(&self, token_hash: &[u8], deadline: Instant) -> Result<()>;

    /// Deletes sessions past `now` or idle longer than `idle` seconds.
    fn sweep(&self, now: i64, idle: i64) -> Result<usize>;

    /// Where the sign-in limiter keeps its counts: shared by every host on
    /// this database, or (`Kept`) in this process, saved here.
    fn counts(&self) -> Counts<'_>;
}

/// Where the sign-in limiter's counts live.
pub enum Counts<'a> {
    /// In the database, shared by every host that uses it.
    Shared(Arc<dyn SharedCounts>),
    /// In this process, saved in the database now and then.
    Kept(&'a dyn KeptCounts),
}

/// The limiter's counts kept in this process, saved as one JSON text.
pub trait KeptCounts {
    fn load(&self) -> Result<Option<String>>;
    fn save(&self, state: &str) -> Result<()>;
}

/// What `update_user` changes.
#[derive(Clone, Copy)]
pub enum UserChange<'a> {
    Password(&'a str),
    Disabled(bool),
}
