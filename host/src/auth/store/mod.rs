//! Where users, sessions and the limiter's counts are kept: the host's
//! tables of SQLite or of PostgreSQL (schema `host`), behind one set of
//! calls with the same meaning on both. [`super::Auth`] holds the rules
//! (passwords, tokens, the limiter, expiry); a store only keeps rows.
//! Calls made for a request take its deadline and never wait past it.

mod postgres;
mod sqlite;

use super::{LoginError, User};
use anyhow::Result;
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

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The host's tables, on one backend or the other.
pub enum Store {
    Sqlite(Box<SqliteStore>),
    Postgres(PostgresStore),
}

/// Calls the same method on whichever store this is.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call,
            Store::Postgres($store) => $call,
        }
    };
}

impl Store {
    /// Adds a user; `false` when the name is taken (ignoring case).
    pub fn add_user(
        &self,
        username: &str,
        display_name: &str,
        roles: &str,
        phc: &str,
    ) -> Result<bool> {
        each!(self, s => s.add_user(username, display_name, roles, phc))
    }

    pub fn users(&self) -> Result<Vec<User>> {
        each!(self, s => s.users())
    }

    pub fn user(&self, username: &str) -> Result<Option<User>> {
        each!(self, s => s.user(username))
    }

    /// Sets a user's password hash or disabled flag, ending their sessions
    /// with `end_sessions`; `false` when there is no such user.
    pub fn update_user(
        &self,
        username: &str,
        change: UserChange<'_>,
        end_sessions: bool,
    ) -> Result<bool> {
        each!(self, s => s.update_user(username, change, end_sessions))
    }

    pub fn sessions(&self) -> Result<Vec<SessionRow>> {
        each!(self, s => s.sessions())
    }

    pub fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        each!(self, s => s.delete_session(token_hash))
    }

    pub fn delete_sessions_of(&self, username: &str) -> Result<usize> {
        each!(self, s => s.delete_sessions_of(username))
    }

    pub fn remove_user(&self, username: &str) -> Result<bool> {
        each!(self, s => s.remove_user(username))
    }

    /// The user called `username` with their password hash, for a sign-in.
    pub fn sign_in_lookup(
        &self,
        username: &str,
        deadline: Instant,
    ) -> Result<Option<(User, String)>, LoginError> {
        each!(self, s => s.sign_in_lookup(username, deadline))
    }

    /// Opens `session`; `false` when the user's password changed since it
    /// was checked, or the user was disabled.
    pub fn open_session(
        &self,
        session: &NewSession<'_>,
        deadline: Instant,
    ) -> Result<bool, LoginError> {
        each!(self, s => s.open_session(session, deadline))
    }

    /// The session of `token_hash` and its user, if there is one.
    pub fn resolve(&self, token_hash: &[u8]) -> Result<Option<Resolved>> {
        each!(self, s => s.resolve(token_hash))
    }

    /// [`Store::resolve`] for a request of `serve`'s: on PostgreSQL its
    /// worker serves other requests while the database answers (SQLite's
    /// readers answer in a few microseconds).
    pub async fn resolve_async(&self, token_hash: &[u8]) -> Result<Option<Resolved>> {
        match self {
            Store::Sqlite(s) => s.resolve(token_hash),
            Store::Postgres(s) => s.resolve_async(token_hash).await,
        }
    }

    /// Deletes an expired session, or notes that a session was used at
    /// `now`, if that can be done at once; otherwise a later request does.
    pub fn try_expire(&self, token_hash: &[u8]) {
        each!(self, s => s.try_expire(token_hash))
    }

    pub fn try_touch(&self, token_hash: &[u8], now: i64) {
        each!(self, s => s.try_touch(token_hash, now))
    }

    /// Ends a session, waiting no later than `deadline`.
    pub fn logout(&self, token_hash: &[u8], deadline: Instant) -> Result<()> {
        each!(self, s => s.logout(token_hash, deadline))
    }

    /// Deletes sessions past `now` or idle longer than `idle` seconds.
    pub fn sweep(&self, now: i64, idle: i64) -> Result<usize> {
        each!(self, s => s.sweep(now, idle))
    }
}

/// What `update_user` changes.
#[derive(Clone, Copy)]
pub enum UserChange<'a> {
    Password(&'a str),
    Disabled(bool),
}
