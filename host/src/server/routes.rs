//! The route table: each guest's prefix, longest first, matched on whole
//! path segments (`/customers` matches `/customers` and `/customers/7`,
//! never `/customersx`). A route of `/` catches what nothing else does.
//! Each route has its share of the render threads, so one guest's slow or
//! sleeping requests cannot take every thread from the others. A route
//! whose guest is still compiling is in the table too, as `loading`.

use crate::manifest::{BrowserGrant, route_matches as matches};
use crate::runtime::Guest;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One guest's route.
pub(super) struct Route {
    pub prefix: String,
    pub guest: Arc<Guest>,
    /// Renders of this guest that may run at once. Kept across `--watch`
    /// reloads: renders still running on the old version hold its permits.
    pub share: Arc<Semaphore>,
    /// What its pages may do in the browser.
    pub browser: BrowserGrant,
}

pub(super) struct Routes {
    routes: Vec<Route>,
    /// Routes (prefix, guest) whose guest is still compiling: answered 503
    /// until it is ready.
    pub loading: Vec<(String, String)>,
    /// Guests of the manifest with a route that failed to load and had no
    /// earlier version to keep (`serve --watch`, or a compile at start
    /// that failed): not served.
    pub missing: Vec<String>,
}

impl Routes {
    /// The routes, each allowed `share` renders at once; a guest of
    /// `previous` keeps the share it had there.
    pub(super) fn new(
        routes: Vec<(String, Arc<Guest>, BrowserGrant)>,
        share: usize,
        previous: Option<&Routes>,
    ) -> Self {
        let mut routes: Vec<Route> = routes
            .into_iter()
            .map(|(prefix, guest, browser)| Route {
                share: previous
                    .and_then(|p| p.by_name(guest.name()))
                    .map_or_else(|| Arc::new(Semaphore::new(share)), |r| r.share.clone()),
                prefix,
                guest,
                browser,
            })
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Routes {
            routes,
            loading: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// This table with `name` no longer loading: served by `guest` when
    /// it loaded, else missing.
    pub(super) fn loaded(
        &self,
        name: &str,
        guest: Option<(Arc<Guest>, BrowserGrant)>,
        share: usize,
    ) -> Routes {
        let mut table: Vec<(String, Arc<Guest>, BrowserGrant)> = self
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), r.guest.clone(), r.browser.clone()))
            .collect();
        let mut missing = self.missing.clone();
        let prefix = self
            .loading
            .iter()
            .find(|(_, n)| n == name)
            .map(|(p, _)| p.clone());
        match (guest, prefix) {
            (Some((guest, browser)), Some(prefix)) => table.push((prefix, guest, browser)),
            _ => missing.push(name.to_owned()),
        }
        let mut routes = Routes::new(table, share, Some(self));
        routes.loading = self
            .loading
            .iter()
            .filter(|(_, n)| n != name)
            .cloned()
            .collect();
        routes.missing = missing;
        routes
    }

    /// The routed guests.
    pub(super) fn guests(&self) -> impl Iterator<Item = &Guest> {
        self.routes.iter().map(|route| route.guest.as_ref())
    }

    pub(super) fn len(&self) -> usize {
        self.routes.len()
    }

    /// The route of the guest called `name`.
    pub(super) fn by_name(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.guest.name() == name)
    }

    /// The route for `path`; none while the longest prefix that matches
    /// is a guest still loading.
    pub(super) fn find(&self, path: &str) -> Option<&Route> {
        let route = self
            .routes
            .iter()
            .find(|route| matches(&route.prefix, path))?;
        match self.loading_prefix(path) {
            Some((prefix, _)) if prefix.len() > route.prefix.len() => None,
            _ => Some(route),
        }
    }

    /// The guest that would answer `path` but is still loading.
    pub(super) fn loading(&self, path: &str) -> Option<&str> {
        let (prefix, name) = self.loading_prefix(path)?;
        match self.routes.iter().find(|r| matches(&r.prefix, path)) {
            Some(route) if route.prefix.len() >= prefix.len() => None,
            _ => Some(name),
        }
    }

    fn loading_prefix(&self, path: &str) -> Option<(&str, &str)> {
        self.loading
            .iter()
            .filter(|(prefix, _)| matches(prefix, path))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(prefix, name)| (prefix.as_str(), name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::route_matches as matches;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(matches("/customers", "/customers"));
        assert!(matches("/customers", "/customers/7/edit"));
        assert!(!matches("/customers", "/customersx"));
        assert!(!matches("/customers", "/"));
        assert!(matches("/", "/anything"));
    }
}
