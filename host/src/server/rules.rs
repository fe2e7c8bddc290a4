//! The host's rules for what comes in: sizes, the host name, methods, the
//! same-origin check for state changes, and which request headers a guest
//! may see.

use super::{COOKIE, MAX_HEADERS, MAX_URL};
use crate::auth::Token;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};

/// Headers that carry credentials: the host reads them, guests never see them.
pub const HIDDEN_FROM_GUESTS: [HeaderName; 3] = [
    header::COOKIE,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
];

/// Why a request was refused before any guest saw it.
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

fn refuse(status: StatusCode, message: &'static str) -> Result<(), Refusal> {
    Err(Refusal { status, message })
}

pub fn check_request(request: &axum::extract::Request, loopback: bool) -> Result<(), Refusal> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URL {
        return refuse(StatusCode::URI_TOO_LONG, "The address is too long.");
    }
    let headers = request.headers();
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > MAX_HEADERS {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "The request headers are too large.",
        );
    }
    if loopback && !loopback_host(headers) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "This server answers only to localhost.",
        );
    }
    let method = request.method();
    if method == Method::TRACE || method == Method::CONNECT {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "This method is not allowed.",
        );
    }
    let safe = [Method::GET, Method::HEAD, Method::OPTIONS].contains(method);
    if !safe && !same_origin(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This request did not come from this site, so it was refused.",
        );
    }
    Ok(())
}

/// A state-changing request must show it came from a page of this site:
/// an `Origin` equal to ours, or (without `Origin`) `Sec-Fetch-Site:
/// same-origin`. Without either it is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) => {
            let origin = origin.to_ascii_lowercase();
            let host = host.to_ascii_lowercase();
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        None => headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"),
    }
}

/// Whether the `Host` names this machine (DNS rebinding protection).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a TLS proxy in front says the browser used https.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Whether the client is a browser navigating (it accepts HTML).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// The session token from the `Cookie` header.
pub fn session_token(headers: &HeaderMap) -> Option<Token> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(Token::from_cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse::<HeaderName>().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn same_origin_needs_positive_evidence() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&headers(&[host])));
    }

    #[test]
    fn only_loopback_names_pass_on_loopback() {
        for ok in ["localhost:8080", "127.0.0.1:1", "[::1]:80", "LOCALHOST"] {
            assert!(loopback_host(&headers(&[("host", ok)])), "{ok}");
        }
        for bad in ["evil.example:8080", "192.168.1.2", "localhost.evil.example"] {
            assert!(!loopback_host(&headers(&[("host", bad)])), "{bad}");
        }
    }

    #[test]
    fn the_session_token_is_read_from_the_cookie() {
        let token = "a".repeat(64);
        let h = headers(&[("cookie", &format!("theme=dark; {COOKIE}={token}; x=y"))]);
        assert_eq!(session_token(&h).unwrap().expose(), token);
        assert!(session_token(&headers(&[("cookie", &format!("{COOKIE}=short"))])).is_none());
        assert!(session_token(&headers(&[])).is_none());
    }
}
