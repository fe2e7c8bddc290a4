//! What `fuzz/`'s request target calls, and nothing else does: the
//! host's decoders of what a client sends (a static file's conditions
//! too), which are private to `server`, run on one request as `serve`
//! runs them.

use super::guest_io::percent_decode;
use super::{isolation, rules, static_files};
use crate::net::Network;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};

/// A `Referer` the host took for a page of this site.
pub struct Page {
    /// This site's origin, from the request's `Host`.
    pub origin: String,
    pub referer: String,
    /// The page's path, as the host read it.
    pub path: String,
}

/// Decodes one request's target and headers every way `serve` does, on a
/// loopback site and on a named one behind a trusted proxy. Returns the
/// `Referer` when the host took it for a page of this site, for the
/// target to check against a URL parser's reading.
pub fn request(method: &[u8], target: &str, headers: &[(Vec<u8>, Vec<u8>)]) -> Option<Page> {
    let method = Method::from_bytes(method).ok()?;
    let uri: Uri = target.parse().ok()?;
    let mut request = axum::extract::Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri.clone();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            request.headers_mut().append(name, value);
        }
    }
    let hosts = ["example.org".to_owned(), "example.org:8443".to_owned()];
    for site in [
        rules::Site {
            loopback: true,
            hosts: &[],
            addresses: false,
        },
        rules::Site {
            loopback: false,
            hosts: &hosts,
            addresses: true,
        },
    ] {
        let _ = rules::check_request(&request, &site);
    }
    let headers = request.headers();
    let proxies: Vec<Network> = ["127.0.0.0/8", "::1", "10.0.0.0/8"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let peer = "127.0.0.1:40000".parse().expect("an address");
    let (_client, secure) = rules::client(peer, headers, &proxies);
    let _ = rules::same_origin(headers);
    let _ = rules::session_token(headers, secure);
    let _ = rules::wants_html(headers);
    if let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let _ = isolation::refused_type(kind);
    }
    let _ = percent_decode(uri.path());
    let _ = static_files::fuzzing::conditions(headers);
    let _ = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).count();
    let origin = rules::origin(headers, secure);
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let path = isolation::page_path(referer, &origin)?.to_owned();
    Some(Page {
        referer: referer.to_owned(),
        origin,
        path,
    })
}
