//! Users, passwords and sessions, kept in the host's own `users` and
//! `sessions` tables, which no guest can reach. Owns: checking a password
//! (argon2id, limited by [`limiter`]), creating and resolving session tokens
//! (256-bit, stored only as SHA-256), expiry, sweeping and revocation.
//! Refuses: unknown users and wrong passwords alike, and every attempt the
//! limiter holds back. A sign-in made for a request never waits on the
//! database past that request's deadline.

pub mod limiter;
pub mod password;
pub mod store;

use crate::net::Address;
use anyhow::{Context, Result, bail};
use limiter::Refusal;
use password::Password;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{Counts, NewSession, Store, UserChange};
use subtle::ConstantTimeEq;

/// How long sessions live and how hard sign-ins are limited.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A session unused this long is gone.
    pub idle: Duration,
    /// A session older than this is gone, used or not.
    pub absolute: Duration,
    /// How failed sign-ins are counted and held back.
    pub limits: limiter::Rules,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
            limits: limiter::Rules::default(),
        }
    }
}

/// A user as the host knows one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: String,
}

/// A session token: 32 bytes from the OS, shown only to the browser (as
/// hex in a cookie). Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
        Ok(Token(hex::encode(bytes)))
    }

    /// The token as the cookie carries it.
    pub fn from_cookie(value: &str) -> Self {
        Token(value.to_owned())
    }

    /// The cookie value. Handle with care: this is the credential.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a sign-in failed. Unknown user and wrong password are one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    BadCredentials,
    /// Too many failures; try again after this long.
    RateLimited(Duration),
    /// The database stayed busy until the request's deadline.
    Busy,
    /// The host could not do it; the log has why.
    Internal,
}

/// A signed-in request: the user and the session it came with.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user: User,
    pub token: Token,
}

pub struct Auth {
    store: Box<dyn Store>,
    policy: Policy,
    limiter: limiter::Limiter,
    checker: password::Checker,
    hash_checks: AtomicU64,
}

/// Sessions one user may have at once; a new sign-in past it ends the
/// oldest. Enough for every device a person uses, and a bound on what one
/// account's sign-ins can make the host keep.
pub const SESSIONS_PER_USER: usize = 16;

impl Auth {
    pub fn new(store: Box<dyn Store>, policy: Policy) -> Result<Arc<Self>> {
        let limiter = match store.counts() {
            Counts::Shared(shared) => limiter::Limiter::shared(policy.limits, shared),
            Counts::Kept(kept) => {
                let limiter = limiter::Limiter::new(policy.limits);
                if let Some(state) = kept.load()? {
                    match serde_json::from_str(&state) {
                        Ok(state) => limiter.restore(&state),
                        Err(e) => {
                            tracing::warn!(error = %e, "the saved sign-in limits could not be read; starting without them")
                        }
                    }
                }
                limiter
            }
        };
        Ok(Arc::new(Auth {
            store,
            limiter,
            policy,
            checker: password::Checker::new(),
            hash_checks: AtomicU64::new(0),
        }))
    }

    /// Saves the sign-in limiter's counts if they changed, so they survive
    /// a restart; `serve` calls it every few seconds and when it stops.
    /// (Counts shared in the database are written at every attempt.)
    pub fn save_limits(&self) -> Result<()> {
        match (self.store.counts(), self.limiter.snapshot()) {
            (Counts::Kept(kept), Some(state)) => kept.save(&state.to_string()),
            _ => Ok(()),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How many password hashes were checked, for tests of the limiter.
    pub fn hash_checks(&self) -> u64 {
        self.hash_checks.load(Ordering::Relaxed)
    }

    // ---- users -------------------------------------------------------

    pub fn add_user(
        &self,
        username: &str,
        display_name: Option<&str>,
        roles: &[String],
        password: &Password,
    ) -> Result<User> {
        check_username(username)?;
        for role in roles {
            check_role(role)?;
        }
        password.check_new().map_err(anyhow::Error::msg)?;
        let display_name = display_name.unwrap_or(username).trim();
        if display_name.is_empty() || display_name.chars().count() > 100 {
            bail!("the display name must have 1 to 100 characters");
        }
        let phc = password::hash(password)?;
        if !self
            .store
            .add_user(username, display_name, &roles.join(","), &phc)?
        {
            bail!("a user named `{username}` already exists (names ignore case)");
        }
        self.user(username)?
            .context("the user just added is missing")
    }

    /// On a database without users: an `admin` with a random password,
    /// which is returned (to be shown once); `None` when there are users,
    /// including when another host made the first one meanwhile.
    pub fn ensure_admin(&self) -> Result<Option<String>> {
        if !self.users()?.is_empty() {
            return Ok(None);
        }
        let password = random_password()?;
        match self.add_user(
            "admin",
            Some("Administrator"),
            &["admin".to_owned()],
            &Password::new(password.clone()),
        ) {
            Ok(_) => Ok(Some(password)),
            Err(_) if !self.users()?.is_empty() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.store.users()
    }

    /// The user called `username` (ignoring case), if any.
    pub fn user(&self, username: &str) -> Result<Option<User>> {
        self.store.user(username)
    }

    /// Sets a new password and signs the user out everywhere.
    pub fn set_password(&self, username: &str, password: &Password) -> Result<()> {
        password.check_new().map_err(anyhow::Error::msg)?;
        let phc = password::hash(password)?;
        self.update_user(username, UserChange::Password(&phc), true)
    }

    /// Disables or enables a user. A disabled user cannot sign in and their
    /// sessions end at once.
    pub fn set_disabled(&self, username: &str, disabled: bool) -> Result<()> {
        self.update_user(username, UserChange::Disabled(disabled), disabled)
    }

    /// Changes `username`'s row and, with `end_sessions`, ends their
    /// sessions, in one transaction.
    fn update_user(
        &self,
        username: &str,
        change: UserChange<'_>,
        end_sessions: bool,
    ) -> Result<()> {
        if !self.store.update_user(username, change, end_sessions)? {
            bail!("there is no user named `{username}`");
        }
        Ok(())
    }

    /// The live sessions (expired ones are swept first), newest first.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>> {
        self.sweep_expired()?;
        Ok(self
            .store
            .sessions()?
            .into_iter()
            .map(|row| SessionInfo {
                id: session_id(&row.token_hash),
                username: row.username,
                client: row.client,
                created_at: row.created_at,
                last_seen_at: row.last_seen_at,
                expires_at: row.expires_at,
            })
            .collect())
    }

    /// Ends the session with this id (from [`Auth::sessions`]); returns
    /// whether there was one.
    pub fn revoke_session(&self, id: &str) -> Result<bool> {
        let Some(row) = self
            .store
            .sessions()?
            .into_iter()
            .find(|row| session_id(&row.token_hash) == id)
        else {
            return Ok(false);
        };
        let ended = self.store.delete_session(&row.token_hash)?;
        if ended {
            crate::log_queue::keep(true, || {
                tracing::info!(
                    target: "rawalite::audit",
                    capability = "session",
                    op = "revoke",
                    session = %id,
                    username = ?row.username,
                    outcome = "ok",
                )
            });
        }
        Ok(ended)
    }

    /// Ends every session of `username`; returns how many.
    pub fn revoke_sessions_of(&self, username: &str) -> Result<usize> {
        if self.user(username)?.is_none() {
            bail!("there is no user named `{username}`");
        }
        let ended = self.store.delete_sessions_of(username)?;
        crate::log_queue::keep(true, || {
            tracing::info!(
                target: "rawalite::audit",
                capability = "session",
                op = "revoke",
                username = ?username,
                ended,
                outcome = "ok",
            )
        });
        Ok(ended)
    }

    /// Removes a user and every session of theirs.
    pub fn remove_user(&self, username: &str) -> Result<()> {
        if !self.store.remove_user(username)? {
            bail!("there is no user named `{username}`");
        }
        Ok(())
    }

    // ---- sign-in and sessions ----------------------------------------

    /// Checks a password and, when it matches, opens a session. Unknown
    /// users are checked against a dummy hash, so both failures cost the
    /// same; past the failure limit nothing is checked at all. The check
    /// runs on the password pool; this blocks the calling thread until it
    /// is done or `deadline` passes.
    pub fn login(
        &self,
        username: &str,
        password: &Password,
        client: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<Signed, LoginError> {
        self.login_with(username, password, client, deadline, || {})
    }

    /// [`Auth::login`], calling `checked` between the password check and
    /// the session's opening: tests force a race there.
    fn login_with(
        &self,
        username: &str,
        password: &Password,
        client: Option<IpAddr>,
        deadline: Instant,
        checked: impl FnOnce(),
    ) -> Result<Signed, LoginError> {
        let ip = client;
        let client = client.map(Address::of);
        if let Err(Refusal(wait)) = self.limiter.admit(username, client, deadline) {
            crate::metrics::sign_in_failed();
            return Err(LoginError::RateLimited(wait));
        }
        // Counted as a failure from here on, unless forgiven.
        let unchecked = |e: LoginError| {
            self.limiter.forgive(username, client);
            e
        };
        let found = self
            .store
            .sign_in_lookup(username, deadline)
            .map_err(unchecked)?;
        self.hash_checks.fetch_add(1, Ordering::Relaxed);
        let phc = found.as_ref().map(|(_, phc)| phc.clone());
        let matches = self
            .checker
            .check(password, phc, deadline)
            .ok_or(LoginError::Busy)
            .map_err(unchecked)?;
        checked();
        match found {
            Some((user, phc)) if matches && !user.disabled => {
                let token = self.open_session(user.id, &phc, ip, deadline)?;
                self.limiter.succeeded(username, client);
                Ok(Signed { user, token })
            }
            _ => {
                crate::metrics::sign_in_failed();
                Err(LoginError::BadCredentials)
            }
        }
    }

    /// Opens a session for `user_id`, only if their password is still the
    /// one just checked (`phc`) and they are not disabled: a password
    /// change or a disable that lands during a sign-in ends that sign-in
    /// too. Past [`SESSIONS_PER_USER`], the user's oldest sessions end.
    fn open_session(
        &self,
        user_id: i64,
        phc: &str,
        client: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<Token, LoginError> {
        let token = Token::generate().map_err(|e| {
            tracing::error!(error = %e, "opening a session failed");
            LoginError::Internal
        })?;
        let now = now();
        let opened = self.store.open_session(
            &NewSession {
                token_hash: &token.hash(),
                user_id,
                password_hash: phc,
                now,
                expires_at: now + self.policy.absolute.as_secs() as i64,
                client: client.map(|c| c.to_string()),
                keep: SESSIONS_PER_USER,
            },
            deadline,
        )?;
        if opened {
            Ok(token)
        } else {
            // The password changed, or the user was disabled, meanwhile.
            Err(LoginError::BadCredentials)
        }
    }

    /// The user of a session token, if the session exists, has not expired
    /// and its user may still sign in. An expired session is deleted.
    pub fn resolve(&self, token: &Token) -> Option<Signed> {
        let hash = token.hash();
        let found = self.store.resolve(&hash);
        self.admit(token, &hash, found)
    }

    /// [`Auth::resolve`] for a request of `serve`'s, whose worker serves
    /// other requests while the database answers.
    pub async fn resolve_async(&self, token: &Token) -> Option<Signed> {
        let hash = token.hash();
        let found = self.store.resolve_async(&hash).await;
        self.admit(token, &hash, found)
    }

    /// The signed-in user, if the session `found` for `hash` is one.
    fn admit(
        &self,
        token: &Token,
        hash: &[u8],
        found: anyhow::Result<Option<store::Resolved>>,
    ) -> Option<Signed> {
        let now = now();
        let found = match found {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, "resolving a session failed");
                return None;
            }
        };
        if !bool::from(found.token_hash.as_slice().ct_eq(hash)) {
            return None;
        }
        let idle = self.policy.idle.as_secs() as i64;
        if now >= found.expires_at || now - found.last_seen_at >= idle || found.user.disabled {
            self.store.try_expire(hash);
            return None;
        }
        // Touch at most once a minute: a write per request would cost an
        // fsync per page view.
        if now - found.last_seen_at >= 60 {
            self.store.try_touch(hash, now);
        }
        Some(Signed {
            user: found.user,
            token: token.clone(),
        })
    }

    /// Ends a session, waiting for the database no later than `deadline`.
    pub fn logout(&self, token: &Token, deadline: Instant) {
        if let Err(e) = self.store.logout(&token.hash(), deadline) {
            tracing::error!(error = %e, "ending a session failed");
        }
    }

    /// Deletes the sessions that have expired (idle or absolute); returns
    /// how many. `resolve` refuses them anyway; this keeps the table from
    /// growing with sessions nobody comes back to.
    /// On PostgreSQL, the sign-in counts that have expired go too.
    pub fn sweep_expired(&self) -> Result<usize> {
        if let Counts::Shared(shared) = self.store.counts() {
            shared.sweep(self.policy.limits.window, limiter::FAMILIAR_FOR)?;
        }
        self.store.sweep(now(), self.policy.idle.as_secs() as i64)
    }
}

/// A session as an operator sees it: never its token, nor the token's hash.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// A short name for the session: the first 12 hex digits of a SHA-256
    /// of the token's hash. It identifies the session to `revoke` and
    /// tells nothing about the token.
    pub id: String,
    pub username: String,
    /// The client address it was opened from.
    pub client: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

fn session_id(token_hash: &[u8]) -> String {
    hex::encode(&Sha256::digest(token_hash)[..6])
}

pub(crate) fn split_roles(roles: &str) -> Vec<String> {
    roles
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Usernames: 3 to 64 of `a-z A-Z 0-9 . _ -`, starting with a letter or a
/// digit. Unique ignoring case.
pub fn check_username(username: &str) -> Result<()> {
    let ok = (3..=64).contains(&username.len())
        && username.starts_with(|c: char| c.is_ascii_alphanumeric())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!(
            "`{username}` is not a valid username: use 3 to 64 of a-z, A-Z, 0-9, `.`, `_` and `-`, starting with a letter or digit"
        );
    }
    Ok(())
}

/// Roles: 1 to 32 of `a-z 0-9 _ -`.
pub fn check_role(role: &str) -> Result<()> {
    let ok = (1..=32).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    if !ok {
        bail!("`{role}` is not a valid role: use 1 to 32 of a-z, 0-9, `_` and `-`");
    }
    Ok(())
}

/// 20 characters from 56 unambiguous ones: about 116 bits.
fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests;
