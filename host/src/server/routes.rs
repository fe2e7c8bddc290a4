//! The route table: each guest's prefix, longest first, matched on whole
//! path segments (`/customers` matches `/customers` and `/customers/7`,
//! never `/customersx`). A route of `/` catches what nothing else does.
//! Each route has its share of the render threads, so one guest's slow or
//! sleeping requests cannot take every thread from the others.

use crate::manifest::BrowserGrant;
use crate::runtime::Guest;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One guest's route.
pub struct Route {
    pub prefix: String,
    pub guest: Arc<Guest>,
    /// Renders of this guest that may run at once. Kept across `--watch`
    /// reloads: renders still running on the old version hold its permits.
    pub share: Arc<Semaphore>,
    /// What its pages may do in the browser.
    pub browser: BrowserGrant,
}

pub struct Routes {
    routes: Vec<Route>,
    /// Guests of the manifest with a route that failed to load and had no
    /// earlier version to keep (`serve --watch`): not served.
    pub missing: Vec<String>,
}

impl Routes {
    /// The routes, each allowed `share` renders at once; a guest of
    /// `previous` keeps the share it had there.
    pub fn new(
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
            missing: Vec::new(),
        }
    }

    /// The routed guests.
    pub fn guests(&self) -> impl Iterator<Item = &Guest> {
        self.routes.iter().map(|route| route.guest.as_ref())
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// The route of the guest called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.guest.name() == name)
    }

    /// The route for `path`.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| matches(&route.prefix, path))
    }
}

fn matches(route: &str, path: &str) -> bool {
    route == "/"
        || path == route
        || path
            .strip_prefix(route)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(matches("/customers", "/customers"));
        assert!(matches("/customers", "/customers/7/edit"));
        assert!(!matches("/customers", "/customersx"));
        assert!(!matches("/customers", "/"));
        assert!(matches("/", "/anything"));
    }
}
