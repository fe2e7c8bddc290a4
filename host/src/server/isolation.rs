//! Renderer isolation in the browser. Every guest's pages run under the
//! site's one origin, where a page could otherwise use the visitor's
//! session on every other guest. So the host decides what a guest's page
//! may do there:
//!
//! - **No script** unless `[guest.browser] scripts` grants it, and then only
//!   those files of the host's `/static/`, never a guest route: each guest
//!   response carries a Content-Security-Policy that says so.
//! - **No active content types** from guests (JavaScript and its kin,
//!   XSLT, plugins, `multipart/x-mixed-replace`), so no guest route can be
//!   a script even for a page that may run scripts.
//! - **Requests between guests' pages**: a browser (one that sends Fetch
//!   Metadata) may follow a link from one guest's page to another guest's
//!   page, and nothing else: a form, a `fetch`, an image, a frame or a
//!   script addressed to a guest must come from that guest's own pages (or
//!   from a guest its `[guest.browser] accept_from` names). The sending
//!   page is the `Referer`, which a page can suppress but not forge
//!   without script; a request that needs one and has none is refused.
//!   Clients without Fetch Metadata (API clients, scripts, old browsers)
//!   keep the `Origin` rule, and a `Referer` they send is held to the
//!   same test.
//!
//! It refuses, with `403`, what comes from another guest's page; it never
//! looks at what a guest's body says, so a guest that echoes whatever it is
//! given cannot help another one past it.

use super::routes::{Route, Routes};
use super::rules::Refusal;
use crate::manifest::BrowserGrant;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

/// The policy of every response but a script-granted guest's: same-origin
/// resources, no script, no plugins, no frames, never framed.
pub(super) const POLICY: &str = "default-src 'self'; script-src 'none'; object-src 'none'; frame-src 'none'; worker-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The Content-Security-Policy for a guest's response: [`POLICY`], or with
/// its granted scripts, each at this site's origin (`http://host`).
pub(super) fn policy(grant: &BrowserGrant, origin: &str) -> HeaderValue {
    if grant.scripts.is_empty() {
        return HeaderValue::from_static(POLICY);
    }
    let scripts: Vec<String> = grant
        .scripts
        .iter()
        .map(|path| format!("{origin}{path}"))
        .collect();
    let policy = POLICY.replace(
        "script-src 'none'",
        &format!("script-src {}", scripts.join(" ")),
    );
    // The origin is a Host the site answers to and the paths were checked
    // at load, so this is a valid header; if not, no script at all.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(POLICY))
}

/// Why a guest may not answer with `content_type`, if it may not: a type a
/// browser runs as code, or one that cannot be read.
pub(super) fn refused_type(content_type: &str) -> Option<&'static str> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // Lowercased only when it is not already (a page's own type rarely is).
    let essence: std::borrow::Cow<str> = if essence.bytes().any(|b| b.is_ascii_uppercase()) {
        essence.to_ascii_lowercase().into()
    } else {
        essence.into()
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let Some((kind, subtype)) = essence
        .split_once('/')
        .filter(|(k, s)| token(k) && token(s))
    else {
        return Some("it is not a media type such as text/html");
    };
    let script = ["javascript", "ecmascript", "jscript", "livescript"]
        .iter()
        .any(|word| subtype.contains(word));
    let active = script
        || kind == "multipart"
        || matches!(
            subtype,
            "xsl" | "xslt+xml" | "x-shockwave-flash" | "futuresplash" | "x-component" | "java-vm"
        )
        || subtype.starts_with("x-java");
    if active {
        return Some("browsers run it as code; serve scripts from the app's static directory");
    }
    if !matches!(
        kind,
        "text" | "image" | "audio" | "video" | "font" | "application"
    ) {
        return Some("it is not a text, image, audio, video, font or application type");
    }
    None
}

/// Whether the request may reach `target`: see the module's top comment.
/// `origin` is this site's (`http://host`), `routes` the table that says
/// which guest a page belongs to.
pub(super) fn check_sender(
    method: &Method,
    headers: &HeaderMap,
    target: &Route,
    routes: &Routes,
    origin: &str,
) -> Result<(), Refusal> {
    let safe = [Method::GET, Method::HEAD, Method::OPTIONS].contains(method);
    let fetch = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    let referer = headers.get(header::REFERER);
    let Some(site) = fetch("sec-fetch-site") else {
        // No Fetch Metadata: the Origin rule has run; a Referer, if sent,
        // must be one of the target's pages for a state change.
        return match referer {
            Some(referer) if !safe => from_own_page(referer, target, routes, origin),
            _ => Ok(()),
        };
    };
    let navigation = fetch("sec-fetch-mode") == Some(b"navigate")
        && matches!(fetch("sec-fetch-dest"), None | Some(b"document"));
    if safe && navigation {
        // A link, a typed address, a bookmark.
        return Ok(());
    }
    if site != b"same-origin" {
        // From another site: without its cookie (SameSite=Strict), and a
        // state change already failed the Origin rule.
        return if safe { Ok(()) } else { Err(refusal()) };
    }
    match referer {
        Some(referer) => from_own_page(referer, target, routes, origin),
        None => Err(refusal()),
    }
}

/// Whether `referer` is a page of this site that belongs to `target` or to
/// a guest it accepts requests from.
fn from_own_page(
    referer: &HeaderValue,
    target: &Route,
    routes: &Routes,
    origin: &str,
) -> Result<(), Refusal> {
    let sender = referer
        .to_str()
        .ok()
        .and_then(|r| page_path(r, origin))
        .and_then(|path| routes.find(path));
    match sender {
        Some(sender)
            if sender.guest.name() == target.guest.name()
                || target
                    .browser
                    .accept_from
                    .iter()
                    .any(|name| name == sender.guest.name()) =>
        {
            Ok(())
        }
        _ => Err(refusal()),
    }
}

/// The path of `referer` when it is a page of this site (`origin`, such
/// as `http://localhost:8080`) that a guest serves: not the host's own
/// `/static/` or `/healthz`.
pub(super) fn page_path<'r>(referer: &'r str, origin: &str) -> Option<&'r str> {
    let rest = referer
        .get(..origin.len())
        .filter(|head| head.eq_ignore_ascii_case(origin))
        .map(|_| &referer[origin.len()..])?;
    if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
        // `http://localhost:8080.evil.example/…`: another host.
        return None;
    }
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    let host_own = path.starts_with("/static/") || path == "/healthz";
    (!host_own).then_some(path)
}

fn refusal() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        message: "This request came from a page of another part of the app, which may not send it here, so it was refused.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn script_types_and_other_active_types_are_refused() {
        for refused in [
            "text/javascript",
            "application/javascript; charset=utf-8",
            "TEXT/JavaScript",
            "application/x-javascript",
            "text/ecmascript",
            "text/javascript1.5",
            "application/x-shockwave-flash",
            "multipart/x-mixed-replace; boundary=x",
            "text/xsl",
            "",
            "html",
            "text/",
            "model/vrml",
            "text/html\r\nx: y",
        ] {
            assert!(refused_type(refused).is_some(), "{refused:?}");
        }
        for allowed in [
            "text/html; charset=utf-8",
            "text/csv",
            "application/json",
            "image/png",
            "image/svg+xml",
            "application/pdf",
            "application/octet-stream",
            "font/woff2",
        ] {
            assert_eq!(refused_type(allowed), None, "{allowed:?}");
        }
    }

    #[test]
    fn a_granted_script_is_named_at_this_origin_and_nothing_else() {
        let none = policy(&BrowserGrant::default(), "http://localhost:8080");
        assert_eq!(none, POLICY);
        assert!(POLICY.contains("script-src 'none'"));
        let grant = BrowserGrant {
            scripts: vec!["/static/app.js".into()],
            accept_from: vec![],
        };
        let some = policy(&grant, "http://localhost:8080");
        let some = some.to_str().unwrap();
        assert!(
            some.contains("script-src http://localhost:8080/static/app.js;"),
            "{some}"
        );
        assert!(!some.contains("'self';") || !some.contains("script-src 'self'"));
    }

    #[test]
    fn referers_name_a_guest_page_of_this_origin_only() {
        let origin = "http://localhost:8080";
        for (referer, path) in [
            (
                "http://localhost:8080/customers/7?x=1",
                Some("/customers/7"),
            ),
            ("http://LOCALHOST:8080/", Some("/")),
            ("http://localhost:8080", Some("/")),
            ("http://localhost:8080?x", Some("/")),
            ("http://localhost:8080/static/app.css", None),
            ("http://localhost:8080/healthz", None),
            ("http://localhost:8080.evil.example/customers", None),
            ("http://localhost:80801/customers", None),
            ("https://localhost:8080/customers", None),
            ("http://evil.example/customers", None),
            ("/customers", None),
            ("", None),
        ] {
            assert_eq!(page_path(referer, origin), path, "{referer:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the Referer holds, a path comes out only when the text
        /// starts with exactly this origin followed by a path, query or
        /// nothing, and the path is what follows.
        #[test]
        fn page_path_never_leaves_the_origin(referer in "(https?://)?[a-zA-Z0-9.:\\[\\]]{0,20}[/?#]?[ -~]{0,30}") {
            let origin = "http://localhost:8080";
            if let Some(path) = page_path(&referer, origin) {
                prop_assert!(referer.to_ascii_lowercase().starts_with(origin));
                let rest = &referer[origin.len()..];
                prop_assert!(rest.is_empty() || rest.starts_with(['/', '?', '#']));
                prop_assert!(path.starts_with('/'));
                prop_assert!(rest.starts_with(path) || path == "/");
                prop_assert!(!path.contains(['?', '#']));
            }
        }

        /// Any content type: no panic, and a refused one is never a plain
        /// page or data type.
        #[test]
        fn any_content_type_is_judged_without_harm(value in "[ -~]{0,40}") {
            if refused_type(&value).is_none() {
                let essence = value.split(';').next().unwrap().trim().to_ascii_lowercase();
                prop_assert!(!essence.contains("javascript") && !essence.contains("ecmascript"));
                prop_assert!(essence.contains('/'));
            }
        }

        /// The judgment ignores case (a type is lowercased only when it
        /// has capitals, so both ways must agree).
        #[test]
        fn a_content_type_is_judged_alike_in_any_case(value in "[ -~]{0,40}") {
            prop_assert_eq!(refused_type(&value), refused_type(&value.to_ascii_lowercase()));
            prop_assert_eq!(refused_type(&value), refused_type(&value.to_ascii_uppercase()));
        }
    }
}
