//! Between HTTP and the bridge: a request as the guest sees it, and a
//! guest's error, stop or session change as the client sees it.

use super::page::RequestId;
use super::{Server, page, rules};
use crate::capabilities::session::SessionChange;
use crate::capabilities::{Error, ErrorCode, Request as GuestRequest};
use crate::runtime::Stopped;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, StatusCode, header};
use std::time::Duration;

/// `503` with `Retry-After`: the server has no room for this now.
pub(super) fn busy(id: RequestId) -> Response<Body> {
    let mut response = page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "This page is busy. Try again in a moment.",
        id,
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// The request as the guest sees it: its route removed from the path, the
/// query decoded, and without the headers that carry credentials.
pub(super) fn guest_request(
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    route: &str,
    path: &str,
    body: Bytes,
) -> GuestRequest {
    let rest = if route == "/" {
        path
    } else {
        &path[route.len()..]
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    GuestRequest {
        method: method.as_str().to_owned(),
        base: if route == "/" {
            String::new()
        } else {
            route.to_owned()
        },
        path: percent_decode(rest),
        query: form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        headers: headers
            .iter()
            .filter(|(name, _)| !rules::HIDDEN_FROM_GUESTS.contains(name))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.into(),
    }
}

/// Decodes %XX in a path (not `+`, which only means space in a query).
pub(super) fn percent_decode(path: &str) -> String {
    if !path.contains('%') {
        return path.to_owned();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn guest_error(
    server: &Server,
    error: &Error,
    browser: bool,
    uri: &axum::http::Uri,
    id: RequestId,
) -> Response<Body> {
    if error.code == ErrorCode::Unauthenticated
        && browser
        && let Some(login) = &server.login
    {
        let next = uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!(
            "{login}?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish()
        );
        return page::redirect(&location);
    }
    let status =
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // The message is safe to show a user by the bridge's contract, except
    // `internal`, whose details belong in the log.
    let message = if status.is_server_error() && error.code == ErrorCode::Internal {
        tracing::error!(request = %id, error = ?error.message, "the guest reported an internal error");
        page::INTERNAL
    } else {
        &error.message
    };
    page::error(status, message, id)
}

pub(super) fn stopped(guest: &str, why: &Stopped, id: RequestId) -> Response<Body> {
    tracing::error!(request = %id, guest, reason = ?why.to_string(), "the guest was stopped");
    crate::metrics::stopped(guest, why.cause());
    let status = match why {
        Stopped::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    page::error(status, page::INTERNAL, id)
}

/// The session cookie for a sign-in or sign-out. Over HTTPS it is
/// `Secure` and named with the `__Host-` prefix.
pub(super) fn cookie(
    change: &SessionChange,
    secure: bool,
    max_age: Duration,
) -> Option<axum::http::HeaderValue> {
    let name = rules::cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    let value = match change {
        SessionChange::Unchanged => return None,
        SessionChange::SignedIn(token) => format!(
            "{name}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            token.expose(),
            max_age.as_secs()
        ),
        SessionChange::SignedOut => {
            format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
        }
    };
    axum::http::HeaderValue::from_str(&value).ok()
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The query a guest sees is the pairs the client encoded, in
        /// order, whatever they hold.
        #[test]
        fn guests_see_the_query_the_client_sent(
            pairs in prop::collection::vec((".{0,12}", ".{0,12}"), 0..6),
            path in "/[a-z/]{0,12}",
        ) {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let uri: axum::http::Uri = format!("{path}?{query}").parse().unwrap();
            let seen = guest_request(&Method::GET, &uri, &HeaderMap::new(), "/", uri.path(), Bytes::new());
            prop_assert_eq!(seen.query, pairs);
            prop_assert_eq!(seen.path, path);
        }

        /// Decoding undoes encoding, and any text decodes without a panic.
        #[test]
        fn percent_decoding_undoes_encoding(path in ".{0,60}", junk in "[%0-9a-fA-Fz/]{0,20}") {
            let encoded: String = path
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b == b'/' { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            prop_assert_eq!(percent_decode(&encoded), path);
            let _ = percent_decode(&junk);
        }
    }

    #[test]
    fn paths_are_percent_decoded_but_plus_is_kept() {
        assert_eq!(percent_decode("/a%20b/c+d"), "/a b/c+d");
        assert_eq!(percent_decode("/%zz%4"), "/%zz%4");
        assert_eq!(percent_decode("/K%C3%B6ln"), "/Köln");
    }

    #[test]
    fn the_session_cookie_is_http_only_and_strict() {
        let token = crate::auth::Token::from_cookie("abc");
        let c = cookie(
            &SessionChange::SignedIn(token),
            false,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            c,
            "rawalite_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        let c = cookie(&SessionChange::SignedOut, true, Duration::from_secs(60)).unwrap();
        assert_eq!(
            c,
            "__Host-rawalite_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"
        );
        assert!(cookie(&SessionChange::Unchanged, false, Duration::from_secs(60)).is_none());
    }
}
