//! The `paths` capability: named file roots granted per guest. Not
//! implemented yet: `granted` is empty and `open` answers `unavailable`.

use super::Error;
use super::rawalite::bridge::paths::{Access, Entry, Host, HostRoot};
use wasmtime::component::{HasData, Resource};

/// Links `paths` to a request's [`State`].
pub struct Paths;

impl HasData for Paths {
    type Data<'a> = &'a mut State;
}

/// An opened root, as the guest's `root` handle refers to it.
pub struct RootHandle;

/// What one request's `paths` calls work with.
#[derive(Default)]
pub struct State;

impl Host for State {
    fn granted(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn open(&mut self, _name: String) -> Result<Resource<RootHandle>, Error> {
        Err(Error::unavailable("paths"))
    }
}

impl HostRoot for State {
    fn access(&mut self, _root: Resource<RootHandle>) -> Access {
        Access::ReadOnly
    }

    fn read(&mut self, _root: Resource<RootHandle>, _path: String) -> Result<Vec<u8>, Error> {
        Err(Error::unavailable("paths"))
    }

    fn write(
        &mut self,
        _root: Resource<RootHandle>,
        _path: String,
        _contents: Vec<u8>,
    ) -> Result<(), Error> {
        Err(Error::unavailable("paths"))
    }

    fn list_dir(
        &mut self,
        _root: Resource<RootHandle>,
        _path: String,
    ) -> Result<Vec<Entry>, Error> {
        Err(Error::unavailable("paths"))
    }

    fn remove(&mut self, _root: Resource<RootHandle>, _path: String) -> Result<(), Error> {
        Err(Error::unavailable("paths"))
    }

    fn create_dir(&mut self, _root: Resource<RootHandle>, _path: String) -> Result<(), Error> {
        Err(Error::unavailable("paths"))
    }

    fn drop(&mut self, _root: Resource<RootHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
