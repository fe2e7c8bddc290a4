//! The `db` capability: SQL against the host's database under the guest's
//! table grants. Not implemented yet: every call answers `unavailable`.

use super::Error;
use super::rawalite::bridge::db::{Host, Outcome, Rows, Statement, Value};
use wasmtime::component::HasData;

/// Links `db` to a request's [`State`].
pub struct Db;

impl HasData for Db {
    type Data<'a> = &'a mut State;
}

/// What one request's `db` calls work with.
#[derive(Default)]
pub struct State;

impl Host for State {
    fn query(&mut self, _sql: String, _params: Vec<Value>) -> Result<Rows, Error> {
        Err(Error::unavailable("db"))
    }

    fn execute(&mut self, _sql: String, _params: Vec<Value>) -> Result<Outcome, Error> {
        Err(Error::unavailable("db"))
    }

    fn transaction(&mut self, _statements: Vec<Statement>) -> Result<Vec<Outcome>, Error> {
        Err(Error::unavailable("db"))
    }
}
