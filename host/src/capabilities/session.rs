//! The `session` capability: who is signed in for the request, their
//! roles, and signing in and out through the host. The host checks the
//! password, opens the session and sets the cookie; the token never enters
//! the guest. `[guest.session]` can require a signed-in user, or a role,
//! before the guest runs at all.

use super::rawalite::bridge::session::{Host, User};
use super::{Error, ErrorCode};
use crate::auth::password::Password;
use crate::auth::{self, Auth, LoginError, Token};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::HasData;

/// Links `session` to a request's [`State`].
pub struct Session;

impl HasData for Session {
    type Data<'a> = &'a mut State;
}

/// `[guest.session]`: what a request needs before this guest runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionGrant {
    /// Refuse requests without a signed-in user (`unauthenticated`).
    #[serde(default)]
    pub require_login: bool,
    /// Refuse users with none of these roles (`denied`); empty means any.
    #[serde(default)]
    pub roles: Vec<String>,
}

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
                        "this page needs one of the roles: {}",
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
    guest: Arc<str>,
    auth: Option<Arc<Auth>>,
    caller: Caller,
    pub(crate) change: SessionChange,
}

impl State {
    pub(crate) fn new(guest: Arc<str>, auth: Option<Arc<Auth>>, caller: Caller) -> Self {
        State {
            guest,
            auth,
            caller,
            change: SessionChange::Unchanged,
        }
    }

    fn audit(&self, op: &str, username: Option<&str>, outcome: &str, started: Instant) {
        tracing::info!(
            target: "rawalite::audit",
            guest = %self.guest,
            capability = "session",
            op,
            username = username.unwrap_or(""),
            outcome,
            us = started.elapsed().as_micros() as u64,
        );
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

impl Host for State {
    fn current(&mut self) -> Option<User> {
        self.caller.user.as_ref().map(to_wit)
    }

    fn has_role(&mut self, role: String) -> bool {
        self.caller
            .user
            .as_ref()
            .is_some_and(|u| u.roles.contains(&role))
    }

    fn login(&mut self, username: String, password: String) -> Result<User, Error> {
        let started = Instant::now();
        let password = Password::new(password);
        let Some(auth) = self.auth.clone() else {
            self.audit("login", Some(&username), "unavailable", started);
            return Err(Error::new(
                ErrorCode::Unavailable,
                "this host has no user database",
            ));
        };
        match auth.login(&username, &password, self.caller.client) {
            Ok(signed) => {
                // A new token at every sign-in; the old session ends.
                if let Some(old) = self.caller.token.take() {
                    auth.logout(&old);
                }
                let user = to_wit(&signed.user);
                self.audit("login", Some(&signed.user.username), "ok", started);
                self.caller.user = Some(signed.user);
                self.change = SessionChange::SignedIn(signed.token);
                Ok(user)
            }
            Err(e) => {
                let (code, message) = match e {
                    LoginError::BadCredentials => (
                        ErrorCode::Unauthenticated,
                        "the username or the password is wrong".to_owned(),
                    ),
                    LoginError::RateLimited(wait) => (
                        ErrorCode::Denied,
                        format!(
                            "too many failed sign-ins; try again in {} minutes",
                            wait.as_secs().div_ceil(60).max(1)
                        ),
                    ),
                    LoginError::Internal => (
                        ErrorCode::Internal,
                        "signing in failed; the host's log has the details".to_owned(),
                    ),
                };
                self.audit("login", Some(&username), code.as_str(), started);
                Err(Error::new(code, message))
            }
        }
    }

    fn logout(&mut self) {
        let started = Instant::now();
        if let (Some(auth), Some(token)) = (&self.auth, self.caller.token.take()) {
            auth.logout(&token);
        }
        let username = self.caller.user.take().map(|u| u.username);
        self.change = SessionChange::SignedOut;
        self.audit("logout", username.as_deref(), "ok", started);
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
            roles: vec![],
        };
        assert_eq!(
            login.admit(None).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
        assert!(login.admit(Some(&user(&[]))).is_ok());
        let admin = SessionGrant {
            require_login: true,
            roles: vec!["admin".into()],
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
