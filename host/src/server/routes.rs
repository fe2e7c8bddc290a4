//! The route table: each guest's prefix, longest first, matched on whole
//! path segments (`/customers` matches `/customers` and `/customers/7`,
//! never `/customersx`). A route of `/` catches what nothing else does.

use crate::runtime::Guest;
use std::sync::Arc;

pub struct Routes {
    routes: Vec<(String, Arc<Guest>)>,
}

impl Routes {
    pub fn new(mut routes: Vec<(String, Arc<Guest>)>) -> Self {
        routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.len()));
        Routes { routes }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// The route and guest for `path`.
    pub fn find(&self, path: &str) -> Option<(&str, &Arc<Guest>)> {
        self.routes
            .iter()
            .find(|(route, _)| matches(route, path))
            .map(|(route, guest)| (route.as_str(), guest))
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
