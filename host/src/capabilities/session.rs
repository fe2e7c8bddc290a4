//! The `session` capability: who is signed in for the request, their
//! roles, and signing in and out through the host. The host checks the
//! password, opens the session and sets the cookie; the token never enters
//! the guest. `[guest.session]` can require a signed-in user, or a role,
//! before the guest runs at all; only a guest granted `login = true` may
//! sign anyone in or out (a guest that could would otherwise be a password
//! form for any account, and could sign a victim into another).

use super::rawalite::bridge::session::{Host, User};
use super::{Call, CallError, Error, ErrorCode, Refused, blocking};
use crate::auth::password::Password;
use crate::auth::{self, Auth, LoginError, Token};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::HasData;

/// Links `session` to a request's [`View`].
pub struct Session;

impl HasData for Session {
    type Data<'a> = View<'a>;
}

/// What a `session` call works with: the request's state and its calls.
pub struct View<'a> {
    pub(crate) state: &'a mut State,
    pub(crate) call: &'a mut Call,
}

/// `[guest.session]`: what a request needs before this guest runs, and
/// whether the guest may sign users in and out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionGrant {
    /// Refuse requests without a signed-in user (`unauthenticated`).
    #[serde(default)]
    pub require_login: bool,
    /// Refuse users with none of these roles (`denied`); empty means any.
    #[serde(default)]
    pub roles: Vec<String>,
    /// May call `session.login` and `session.logout` (the sign-in screen).
    #[serde(default)]
    pub login: bool,
}

/// What a guest without `login = true` is told.
const NO_LOGIN_GRANT: &str = "this guest may not sign users in or out: add `login = true` to its [guest.session] in the manifest";

impl SessionGrant {
    /// Whether a request from `user` may run this guest.
    pub(crate) fn admit(&self, user: Option<&auth::User>) -> Result<(), Error> {
        let needs_user = self.require_login || !self.roles.is_empty();
        match user {
            None if needs_user => Err(Error::new(
                ErrorCode::Unauthenticated,
                "sign in to see this page",
            )),
            Some(user)
                if !self.roles.is_empty() && !self.roles.iter().any(|r| user.roles.contains(r)) =>
            {
                Err(Error::new(
                    ErrorCode::Denied,
                    format!(
                        "this page needs one of the roles: {} ([guest.session] roles in the manifest)",
                        self.roles.join(", ")
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Who is asking, as the host knows before the guest runs.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user: Option<auth::User>,
    /// The session the request came with (none for `render --as`).
    pub token: Option<Token>,
    /// The client's address, for limiting failed sign-ins.
    pub client: Option<IpAddr>,
}

/// What a request did to its session, for the host to put on the response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionChange {
    #[default]
    Unchanged,
    SignedIn(Token),
    SignedOut,
}

/// What one request's `session` calls work with.
pub struct State {
    auth: Option<Arc<Auth>>,
    /// Whether the guest may sign users in and out.
    may_login: bool,
    caller: Caller,
    pub(crate) change: SessionChange,
}

impl State {
    pub(crate) fn new(auth: Option<Arc<Auth>>, may_login: bool, caller: Caller) -> Self {
        State {
            auth,
            may_login,
            caller,
            change: SessionChange::Unchanged,
        }
    }
}

impl View<'_> {
    /// One audit event; the username comes from the guest, so it is
    /// written escaped. A sign-in, a sign-out and a denied call the log
    /// never drops.
    fn audit(&mut self, op: &str, username: Option<&str>, outcome: &'static str, started: Instant) {
        if self.call.audit("session", outcome) {
            let kept = matches!(op, "login" | "logout") || outcome == "denied";
            crate::log_queue::keep(kept, || {
                tracing::info!(
                    target: "rawalite::audit",
                    guest = %self.call.guest,
                    capability = "session",
                    op,
                    username = ?username.unwrap_or(""),
                    outcome,
                    us = started.elapsed().as_micros() as u64,
                )
            });
        }
    }
}

fn to_wit(user: &auth::User) -> User {
    User {
        id: user.id,
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        roles: user.roles.clone(),
    }
}

impl Host for View<'_> {
    fn current(&mut self) -> wasmtime::Result<Option<User>> {
        let started = self.call.begin()?;
        let user = self.state.caller.user.as_ref().map(to_wit);
        let username = user.as_ref().map(|u| u.username.clone());
        self.audit("current", username.as_deref(), "ok", started);
        Ok(user)
    }

    fn has_role(&mut self, role: String) -> wasmtime::Result<bool> {
        let started = self.call.begin()?;
        let user = self.state.caller.user.as_ref();
        let has = user.is_some_and(|u| u.roles.contains(&role));
        let username = user.map(|u| u.username.clone());
        self.audit(
            "has-role",
            username.as_deref(),
            if has { "ok" } else { "no" },
            started,
        );
        Ok(has)
    }

    fn login(&mut self, username: String, password: String) -> Result<User, CallError> {
        let started = self.call.begin()?;
        let password = Password::new(password);
        if !self.state.may_login {
            self.audit("login", Some(&username), "denied", started);
            return Err(Error::new(ErrorCode::Denied, NO_LOGIN_GRANT).into());
        }
        let Some(auth) = self.state.auth.clone() else {
            self.audit("login", Some(&username), "unavailable", started);
            return Err(
                Error::new(ErrorCode::Unavailable, "this host has no user database").into(),
            );
        };
        let state = &mut *self.state;
        // The password check runs on the password pool, and the wait for
        // it (and for the user database) off the async worker.
        let deadline = self.call.deadline;
        let signed = blocking(|| auth.login(&username, &password, state.caller.client, deadline));
        match signed {
            Ok(signed) => {
                // A new token at every sign-in; the old session ends.
                if let Some(old) = state.caller.token.take() {
                    blocking(|| auth.logout(&old, deadline));
                }
                let user = to_wit(&signed.user);
                state.caller.user = Some(signed.user.clone());
                state.change = SessionChange::SignedIn(signed.token);
                self.audit("login", Some(&signed.user.username), "ok", started);
                Ok(user)
            }
            Err(e) => {
                let (code, message) = match e {
                    LoginError::BadCredentials => (
                        ErrorCode::Unauthenticated,
                        "the username or the password is wrong".to_owned(),
                    ),
                    LoginError::RateLimited(wait) => (ErrorCode::Denied, wait_message(wait)),
                    LoginError::Busy => (
                        ErrorCode::Timeout,
                        "the user database was busy until this request's deadline; try again"
                            .to_owned(),
                    ),
                    LoginError::Internal => (
                        ErrorCode::Internal,
                        "signing in failed; the host's log has the details".to_owned(),
                    ),
                };
                self.audit("login", Some(&username), code.as_str(), started);
                Err(Error::new(code, message).into())
            }
        }
    }

    /// `logout` returns nothing, so a guest without the grant is stopped
    /// (with the same message a refused `login` gets) rather than left to
    /// believe the user signed out.
    fn logout(&mut self) -> wasmtime::Result<()> {
        let started = self.call.begin()?;
        if !self.state.may_login {
            self.audit("logout", None, "denied", started);
            return Err(wasmtime::Error::new(Refused(NO_LOGIN_GRANT.to_owned())));
        }
        let state = &mut *self.state;
        if let (Some(auth), Some(token)) = (&state.auth, state.caller.token.take()) {
            blocking(|| auth.logout(&token, self.call.deadline));
        }
        let username = state.caller.user.take().map(|u| u.username);
        state.change = SessionChange::SignedOut;
        self.audit("logout", username.as_deref(), "ok", started);
        Ok(())
    }
}

/// How long to wait, in words a person reads at the sign-in form.
fn wait_message(wait: std::time::Duration) -> String {
    let secs = wait.as_secs().max(1);
    if secs < 120 {
        format!("too many failed sign-ins; try again in {secs} seconds")
    } else {
        format!(
            "too many failed sign-ins; try again in {} minutes",
            secs.div_ceil(60)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: &[&str]) -> auth::User {
        auth::User {
            id: 1,
            username: "ada".into(),
            display_name: "Ada".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            disabled: false,
            created_at: String::new(),
        }
    }

    #[test]
    fn grants_admit_by_login_and_role() {
        let open = SessionGrant::default();
        assert!(open.admit(None).is_ok());
        let login = SessionGrant {
            require_login: true,
            ..SessionGrant::default()
        };
        assert_eq!(
            login.admit(None).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
        assert!(login.admit(Some(&user(&[]))).is_ok());
        let admin = SessionGrant {
            require_login: true,
            roles: vec!["admin".into()],
            ..SessionGrant::default()
        };
        assert_eq!(
            admin.admit(Some(&user(&["staff"]))).unwrap_err().code,
            ErrorCode::Denied
        );
        assert!(admin.admit(Some(&user(&["staff", "admin"]))).is_ok());
        assert_eq!(
            admin.admit(None).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
    }
}
