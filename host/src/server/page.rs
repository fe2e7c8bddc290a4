//! The host's own responses and the rules for what goes out: a guest's
//! headers pass through an allowlist, and every response carries the
//! security headers. Error pages show a request id; the log has the rest.

use crate::capabilities::Response as GuestResponse;
use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, Response, StatusCode, header};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a user sees when the host failed or stopped a guest.
pub(super) const INTERNAL: &str =
    "Something went wrong on our side. The request id below helps find out what.";

/// Headers a guest may set. Everything else (Set-Cookie, security headers,
/// hop-by-hop headers) is dropped.
const GUEST_HEADERS: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::LOCATION,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CONTENT_LANGUAGE,
];

/// A short id for one request, unique within a run and unpredictable
/// across runs, shown as 16 hex digits. It stays a number until an error
/// page or a log line shows it: most requests never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RequestId(pub u64);

impl RequestId {
    pub(super) fn next() -> Self {
        static BASE: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = *BASE.get_or_init(|| {
            let mut bytes = [0u8; 8];
            let _ = getrandom::fill(&mut bytes);
            u64::from_le_bytes(bytes)
        });
        RequestId(base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Headers a response of the host's carries at most: the five security
/// headers, and a static file's type, length, caching rule, ETag and
/// Last-Modified.
const HEADERS: usize = 10;

/// A response whose header map has room for every header it will get, so
/// that adding them never grows it (a grow is an allocation and a rehash).
pub(super) fn sized(body: Body, status: StatusCode) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().reserve(HEADERS);
    response
}

pub(super) fn secured(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(super::isolation::POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Every page of the site shares its one origin: a page a guest's
    // granted script opens (`window.open`) is cut off from its opener, as
    // is the opener from it, so no guest's script reaches into another
    // guest's page and submits its forms with that page's own Referer.
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("noopener-allow-popups"),
    );
    response
}

/// A guest's response (its body already taken out of it), with only the
/// allowed headers and a status that is one; a page that sets no caching
/// rule is not cached.
pub(super) fn from_guest(guest: GuestResponse, body: Bytes, id: RequestId) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(guest.status) else {
        tracing::error!(request = %id, status = guest.status, "the guest answered an invalid status");
        return error(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL, id);
    };
    let mut response = sized(Body::from(body), status);
    let headers = response.headers_mut();
    for (name, value) in guest.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if !GUEST_HEADERS.contains(&name) {
            tracing::debug!(request = %id, header = %name, "dropped a header the guest may not set");
            continue;
        }
        if name == header::LOCATION {
            // A redirect stays on this site, read the way a browser reads
            // it; one that would leave goes to the start page instead.
            let location = rawalite_location::same_site(&value).unwrap_or_else(|| {
                tracing::warn!(request = %id, location = ?value, "replaced a redirect off this site with /");
                "/".into()
            });
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(name, value);
            }
            continue;
        }
        if name == header::CONTENT_TYPE
            && let Some(why) = super::isolation::refused_type(&value)
        {
            tracing::error!(request = %id, content_type = ?value, why, "the guest answered a content type it may not serve");
            return error(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL, id);
        }
        // The guest's string becomes the value as it is, checked, not copied.
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
            headers.append(name, value);
        }
    }
    headers
        .entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/octet-stream"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    secured(response)
}

pub(super) fn redirect(location: &str) -> Response<Body> {
    let mut response = sized(Body::empty(), StatusCode::SEE_OTHER);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secured(response)
}

/// The host's error page.
pub(super) fn error(status: StatusCode, message: &str, id: RequestId) -> Response<Body> {
    let title = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} {title}</title>\
         <link rel=\"stylesheet\" href=\"/static/app.css\"></head>\n<body><main class=\"error-page\">\
         <h1>{code} {title}</h1><p>{message}</p><p>Request id <code>{id}</code></p>\
         <p><a href=\"/\">Back to the start page</a></p></main></body></html>\n",
        code = status.as_u16(),
        message = escape(message),
    );
    let mut response = sized(Body::from(html), status);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secured(response)
}

/// `text` for HTML, in one pass; borrowed when there is nothing to escape
/// (the host's own messages).
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"']) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: RequestId = RequestId(0);

    fn guest(headers: &[(&str, &str)]) -> GuestResponse {
        GuestResponse {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    fn from_guest(guest: GuestResponse, id: RequestId) -> Response<Body> {
        super::from_guest(guest, Bytes::from_static(b"x"), id)
    }

    #[test]
    fn guest_headers_pass_an_allowlist() {
        let r = from_guest(
            guest(&[
                ("Content-Type", "text/csv"),
                ("set-cookie", "rawalite_session=stolen"),
                ("content-security-policy", "default-src *"),
                ("x-frame-options", "ALLOWALL"),
                ("access-control-allow-origin", "*"),
                ("location", "https://evil.example/"),
                ("content-disposition", "attachment; filename=\"a.csv\""),
            ]),
            ID,
        );
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/csv");
        assert!(h.get(header::SET_COOKIE).is_none());
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(h[header::LOCATION], "/", "an off-site redirect goes home");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            "attachment; filename=\"a.csv\""
        );
    }

    #[test]
    fn redirects_stay_on_the_site() {
        for (sent, kept) in [
            ("/invoices/7", "/invoices/7"),
            ("/\t/evil.example", "/"),
            ("\\\\evil.example", "/"),
            ("\\evil.example", "/evil.example"),
            ("/K\u{f6}ln", "/K%C3%B6ln"),
            ("https://evil.example", "/"),
        ] {
            let r = from_guest(guest(&[("location", sent)]), ID);
            assert_eq!(r.headers()[header::LOCATION], kept, "{sent:?}");
        }
    }

    #[test]
    fn a_script_typed_response_is_refused() {
        let r = from_guest(guest(&[("content-type", "text/javascript")]), ID);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'none'")
        );
    }

    #[test]
    fn header_injection_is_dropped() {
        let r = from_guest(
            guest(&[("cache-control", "no-cache\r\nset-cookie: x=y")]),
            ID,
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn an_invalid_status_is_a_server_error() {
        let mut g = guest(&[]);
        g.status = 1000;
        assert_eq!(
            from_guest(g, ID).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn error_pages_escape_the_message() {
        let r = error(StatusCode::BAD_REQUEST, "<script>", ID);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
        assert!(matches!(escape(INTERNAL), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn every_page_has_room_for_its_headers() {
        for response in [
            error(StatusCode::NOT_FOUND, "no", ID),
            redirect("/x"),
            from_guest(guest(&[("content-type", "text/html")]), ID),
        ] {
            assert!(
                response.headers().len() <= HEADERS,
                "{:?}",
                response.headers()
            );
        }
    }

    proptest::proptest! {
        /// Escaped text has no markup left and reads back as the text.
        #[test]
        fn escaping_leaves_no_markup_and_reads_back(text in "\\PC{0,60}") {
            let escaped = escape(&text);
            proptest::prop_assert!(!escaped.contains(['<', '>', '"']));
            let back = escaped
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&");
            proptest::prop_assert_eq!(back, text);
        }
    }
}
