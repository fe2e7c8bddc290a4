//! The `session` capability: the signed-in user of the request. Not
//! implemented yet: nobody is signed in and `login` answers `unavailable`.

use super::Error;
use super::rawalite::bridge::session::{Host, User};
use wasmtime::component::HasData;

/// Links `session` to a request's [`State`].
pub struct Session;

impl HasData for Session {
    type Data<'a> = &'a mut State;
}

/// What one request's `session` calls work with.
#[derive(Default)]
pub struct State;

impl Host for State {
    fn current(&mut self) -> Option<User> {
        None
    }

    fn has_role(&mut self, _role: String) -> bool {
        false
    }

    fn login(&mut self, _username: String, _password: String) -> Result<User, Error> {
        Err(Error::unavailable("session"))
    }

    fn logout(&mut self) {}
}
