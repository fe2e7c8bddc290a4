//! The host's rules for what comes in: sizes, the host name, methods, the
//! same-origin check for state changes, who the client is behind a proxy,
//! the session cookie, and which request headers a guest may see.

use super::limits::{MAX_HEADERS, MAX_URL};
use crate::auth::Token;
use crate::net::Network;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use std::net::{IpAddr, SocketAddr};

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "rawalite_session";
/// Its name over HTTPS: the `__Host-` prefix makes a browser refuse it
/// unless it is `Secure`, has `Path=/` and no `Domain`, so a sibling
/// subdomain or a plain-HTTP page cannot plant or overwrite it.
pub const SECURE_COOKIE: &str = "__Host-rawalite_session";

/// Headers that carry credentials: the host reads them, guests never see them.
pub(super) const HIDDEN_FROM_GUESTS: [HeaderName; 3] = [
    header::COOKIE,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
];

/// Why a request was refused before any guest saw it.
pub(super) struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

fn refuse(status: StatusCode, message: &'static str) -> Result<(), Refusal> {
    Err(Refusal { status, message })
}

/// What a request is checked against: where the server listens and which
/// names it answers to.
pub(super) struct Site<'a> {
    /// Listening on loopback: only loopback names are accepted.
    pub loopback: bool,
    /// Off loopback: the names of `[app] hosts`.
    pub hosts: &'a [String],
    /// Off loopback, also a `Host` that is an address (the metrics
    /// listener: a scraper reaches it by address).
    pub addresses: bool,
}

pub(super) fn check_request(
    request: &axum::extract::Request,
    site: &Site<'_>,
) -> Result<(), Refusal> {
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
    check_host(headers, site)?;
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

/// The `Host` must be one of this site's names: on loopback a loopback
/// name, off it one of `[app] hosts` (DNS rebinding protection).
pub(super) fn check_host(headers: &HeaderMap, site: &Site<'_>) -> Result<(), Refusal> {
    if site.loopback && !loopback_host(headers) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "This server answers only to localhost.",
        );
    }
    let named = listed_host(headers, site.hosts) || (site.addresses && address_host(headers));
    if !site.loopback && !named {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "This server does not answer to that name.",
        );
    }
    Ok(())
}

/// Whether the `Host` is an address rather than a name: no DNS answer can
/// rebind it.
fn address_host(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| {
            host_name(host)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
        })
}

/// A state-changing request must show it came from a page of this site:
/// an `Origin` equal to ours, or (without `Origin`) `Sec-Fetch-Site:
/// same-origin`. Without either it is refused, and so is an `Origin` that
/// is present but not plain ASCII: a header that cannot be read is no
/// evidence either way, so it fails closed.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    match headers.get(header::ORIGIN) {
        Some(origin) => {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            let origin = origin.to_ascii_lowercase();
            let host = host.to_ascii_lowercase();
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        None => headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"),
    }
}

/// The host name of a `Host` value and whether a port followed it.
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether the `Host` is one of `hosts` (ignoring case; an entry without a
/// port matches any port).
fn listed_host(headers: &HeaderMap, hosts: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    hosts.iter().any(|listed| {
        host.eq_ignore_ascii_case(listed)
            || (!listed.contains(':') && host_name(host).eq_ignore_ascii_case(listed))
    })
}

/// Whether the `Host` names this machine (DNS rebinding protection).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = host_name(host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Who sent a request, and whether it came over HTTPS. `X-Forwarded-For`
/// and `X-Forwarded-Proto` are believed only from a peer in
/// `[app] trusted_proxies`; then the client is the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub(super) fn client(peer: SocketAddr, headers: &HeaderMap, proxies: &[Network]) -> (IpAddr, bool) {
    let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(*ip));
    let peer = peer.ip();
    if !trusted(&peer) {
        return (peer, false);
    }
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        // An entry that is not an address ends the chain: what lies before
        // it was written by someone we cannot vouch for. The client stays
        // the last proxy, which then speaks for everyone behind it: that
        // is a proxy to fix, so it is said loudly.
        let Some(ip) = hop_address(hop) else {
            tracing::warn!(hop = ?hop, proxy = %client, "X-Forwarded-For holds an entry that is not an address; counting the request as the proxy's own");
            break;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    (client, secure)
}

/// The address of one `X-Forwarded-For` entry: `203.0.113.9`,
/// `203.0.113.9:51000`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:443` (some proxies add the client's port).
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .or_else(|_| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(hop)
                .parse::<IpAddr>()
        })
        .ok()
}

/// This site's origin as a browser names it (`http://localhost:8080`), from
/// the `Host` the request was checked against and its scheme.
pub(super) fn origin(headers: &HeaderMap, secure: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    format!("{}://{host}", if secure { "https" } else { "http" })
}

/// Whether the client is a browser navigating (it accepts HTML).
pub(super) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// The session cookie's name for a request over HTTPS (`secure`) or not.
pub(super) fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// The session token from the `Cookie` header: the cookie of the name for
/// this scheme, if it looks like a token.
pub(super) fn session_token(headers: &HeaderMap, secure: bool) -> Option<Token> {
    let name = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(Token::from_cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    /// Bytes a header value may hold: visible ASCII, space, tab, and
    /// anything from 0x80 up.
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..80)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// A token comes only from a well-formed cookie of the right name,
        /// whatever else the header holds.
        #[test]
        fn cookies_yield_only_well_formed_tokens(
            before in "[ -~]{0,40}",
            token in "[0-9a-fA-F]{60,68}",
            after in "[ -~]{0,40}",
            secure in any::<bool>(),
        ) {
            let name = cookie_name(secure);
            let value = format!("{before}; {name}={token}; {after}");
            let Ok(header) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, header);
            if let Some(found) = session_token(&h, secure) {
                prop_assert_eq!(found.expose().len(), 64);
                prop_assert!(found.expose().bytes().all(|b| b.is_ascii_hexdigit()));
                let pair = format!("{name}={}", found.expose());
                prop_assert!(value.contains(&pair));
            }
        }

        /// Any header bytes at all: no panic, and no token unless the bytes
        /// hold one.
        #[test]
        fn any_cookie_header_is_safe(bytes in header_bytes(), secure in any::<bool>()) {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_bytes(&bytes).unwrap());
            if let Some(found) = session_token(&h, secure) {
                let text = String::from_utf8_lossy(&bytes);
                prop_assert!(text.contains(found.expose()));
            }
        }

        /// A state change passes only with the exact origin of the host (or
        /// no origin and `Sec-Fetch-Site: same-origin`); any other bytes in
        /// `Origin` refuse it, even with `Sec-Fetch-Site: same-origin`.
        #[test]
        fn same_origin_needs_the_exact_origin(
            origin in prop_oneof![
                header_bytes(),
                ("(?i)https?://app\\.example(:8080)?", header_bytes())
                    .prop_map(|(o, tail)| [o.into_bytes(), tail].concat()),
            ],
            host in "app\\.example(:8080)?",
        ) {
            let mut h = headers(&[("host", &host), ("sec-fetch-site", "same-origin")]);
            h.insert(header::ORIGIN, HeaderValue::from_bytes(&origin).unwrap());
            let text = String::from_utf8_lossy(&origin).to_ascii_lowercase();
            let exact = text == format!("http://{host}") || text == format!("https://{host}");
            prop_assert_eq!(same_origin(&h), exact && origin.is_ascii());
        }

        /// The client is the peer unless the peer is a trusted proxy, and
        /// then an address the forwarding header names.
        #[test]
        fn the_client_is_the_peer_or_a_forwarded_address(
            forwarded in "([0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?|[a-z:\\[\\]]{1,8}|10\\.0\\.0\\.[0-9])(, ?([0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?|10\\.0\\.0\\.[0-9])){0,4}",
            trusted_peer in any::<bool>(),
        ) {
            let proxies = ["10.0.0.0/8".parse::<Network>().unwrap()];
            let peer: SocketAddr = if trusted_peer { "10.1.2.3:1" } else { "192.0.2.1:1" }.parse().unwrap();
            let h = headers(&[("x-forwarded-for", &forwarded)]);
            let (client, _) = client(peer, &h, &proxies);
            if trusted_peer {
                prop_assert!(client == peer.ip() || forwarded.split(',').any(|hop| hop_address(hop.trim()) == Some(client)));
            } else {
                prop_assert_eq!(client, peer.ip());
            }
        }

        /// Only loopback names pass on loopback, whatever the `Host` holds.
        #[test]
        fn only_loopback_hosts_pass(host in header_bytes()) {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_bytes(&host).unwrap());
            if loopback_host(&h) {
                let text = String::from_utf8(host).unwrap();
                let name = host_name(&text).trim_start_matches('[').trim_end_matches(']');
                prop_assert!(
                    name.eq_ignore_ascii_case("localhost")
                        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
                    "{:?}", text
                );
            }
        }
    }

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
        assert_eq!(session_token(&h, false).unwrap().expose(), token);
        assert!(session_token(&h, true).is_none(), "not the HTTPS cookie");
        let h = headers(&[("cookie", &format!("{SECURE_COOKIE}={token}"))]);
        assert_eq!(session_token(&h, true).unwrap().expose(), token);
        let short = headers(&[("cookie", &format!("{COOKIE}=short"))]);
        assert!(session_token(&short, false).is_none());
        assert!(session_token(&headers(&[]), false).is_none());
    }

    #[test]
    fn an_origin_that_is_not_ascii_is_refused() {
        let mut h = headers(&[("host", "127.0.0.1:8080")]);
        h.insert(
            header::ORIGIN,
            axum::http::HeaderValue::from_bytes(b"http://127.0.0.1:8080\xff").unwrap(),
        );
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(!same_origin(&h));
    }

    #[test]
    fn only_listed_names_pass_off_loopback() {
        let hosts = ["app.example".to_owned(), "alt.example:8443".to_owned()];
        for ok in ["app.example", "APP.example:443", "alt.example:8443"] {
            assert!(listed_host(&headers(&[("host", ok)]), &hosts), "{ok}");
        }
        for bad in ["evil.example", "alt.example:9999", "app.example.evil", ""] {
            assert!(!listed_host(&headers(&[("host", bad)]), &hosts), "{bad}");
        }
    }

    #[test]
    fn forwarded_entries_with_a_port_name_their_address() {
        for (hop, ip) in [
            ("203.0.113.9", "203.0.113.9"),
            ("203.0.113.9:51000", "203.0.113.9"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
        ] {
            assert_eq!(hop_address(hop), Some(ip.parse().unwrap()), "{hop}");
        }
        for bad in ["unknown", "203.0.113.9:", "[2001:db8::1", "_hidden", ""] {
            assert_eq!(hop_address(bad), None, "{bad}");
        }
        let proxies = ["127.0.0.1".parse::<Network>().unwrap()];
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.7:40007")]);
        assert_eq!(
            client(proxy, &h, &proxies).0,
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = ["10.0.0.0/8".parse::<Network>().unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let proxy: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        assert_eq!(
            client(proxy, &h, &proxies),
            ("203.0.113.9".parse().unwrap(), true)
        );
        let stranger: SocketAddr = "198.51.100.4:5000".parse().unwrap();
        assert_eq!(
            client(stranger, &h, &proxies),
            ("198.51.100.4".parse().unwrap(), false)
        );
        assert_eq!(
            client(proxy, &h, &[]).0,
            "10.0.0.2".parse::<IpAddr>().unwrap(),
            "nothing is trusted by default"
        );
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, garbage, 203.0.113.9")]);
        assert_eq!(
            client(proxy, &spoofed, &proxies).0,
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }
}
