//! One request, from the host's rules on the way in to the guest's answer
//! with the host's headers on the way out.

use super::guest_io::{busy, cookie, guest_error, guest_request, stopped};
use super::limits::{BODY_TIMEOUT, MAX_BODY, OUTGOING_WAIT, QUEUE_WAIT, RETRY_AFTER};
use super::routes::Routes;
use super::{Server, access_log, health, isolation, page, rules};
use crate::capabilities::session::Caller;
use crate::runtime::Outcome;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Response, StatusCode, header};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub(super) async fn handle(
    State(server): State<Arc<Server>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response<Body> {
    let started = Instant::now();
    let id = page::request_id();
    // Kept for the log line; both clones share the request's bytes.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let routes = server.routes();
    let (status, guest, response) = respond(&server, &routes, client, request, &id).await;
    crate::metrics::request(guest, status.as_u16());
    access_log::Access {
        id: &id,
        method: &method,
        path: uri.path(),
        status: status.as_u16(),
        guest: guest.unwrap_or("-"),
        us: started.elapsed().as_micros() as u64,
    }
    .record();
    response
}

/// The response, its status, and the guest that made it (for the log).
async fn respond<'s>(
    server: &Server,
    routes: &'s Routes,
    client: SocketAddr,
    request: axum::extract::Request,
    id: &str,
) -> (StatusCode, Option<&'s str>, Response<Body>) {
    let (client, secure) = rules::client(
        client,
        request.headers(),
        &server.app.manifest.trusted_proxies,
    );
    let site = rules::Site {
        loopback: server.loopback,
        hosts: &server.app.manifest.hosts,
        addresses: false,
    };
    if let Err(refusal) = rules::check_request(&request, &site) {
        return (
            refusal.status,
            None,
            page::error(refusal.status, refusal.message, id),
        );
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if path == "/healthz" {
        let response = page::secured(health::check(server).await);
        return (response.status(), None, response);
    }
    if let Some(asset) = path.strip_prefix("/static/") {
        let response = page::static_asset(server.static_root.as_ref(), &parts.method, asset, id);
        return (response.status(), None, response);
    }
    if let Some(name) = routes.loading(path) {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let mut response = page::error(
            status,
            "This page is starting: its guest is still compiling. Try again in a few seconds.",
            id,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER),
        );
        return (status, Some(name), response);
    }
    let Some(route) = routes.find(path) else {
        let status = StatusCode::NOT_FOUND;
        return (
            status,
            None,
            page::error(status, "There is no page here.", id),
        );
    };
    let guest = &route.guest;
    let name = guest.name();
    // This site's origin, as the browser names it: needed only to read a
    // Referer or to name a granted script.
    let origin = (parts.headers.contains_key(header::REFERER) || !route.browser.scripts.is_empty())
        .then(|| rules::origin(&parts.headers, secure));
    if let Err(refusal) = isolation::check_sender(
        &parts.method,
        &parts.headers,
        route,
        routes,
        origin.as_deref().unwrap_or(""),
    ) {
        tracing::warn!(request = %id, guest = name, referer = ?parts.headers.get(header::REFERER), "refused a request from another guest's page");
        return (
            refusal.status,
            Some(name),
            page::error(refusal.status, refusal.message, id),
        );
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            let status = StatusCode::PAYLOAD_TOO_LARGE;
            let message = "The request body is larger than 1 MiB.";
            return (status, Some(name), page::error(status, message, id));
        }
        Err(_) => {
            let status = StatusCode::REQUEST_TIMEOUT;
            return (
                status,
                Some(name),
                page::error(status, "The request body took too long.", id),
            );
        }
    };
    let browser = rules::wants_html(&parts.headers);
    let token = rules::session_token(&parts.headers, secure);
    let guest_request = guest_request(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &route.prefix,
        path,
        body,
    );

    // One permit of the guest's share and one of the pool per render: a
    // slow guest holds one thread, and at most its share of them.
    let permits = tokio::time::timeout(QUEUE_WAIT, async {
        let share = route.share.acquire().await;
        let render = server.renders.acquire().await;
        share.and_then(|share| Ok((share, render?)))
    })
    .await;
    let _permits = match permits {
        Ok(Ok(permits)) => permits,
        Ok(Err(_closed)) => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            return (
                status,
                Some(name),
                page::error(status, "The server is stopping.", id),
            );
        }
        Err(_waited) => {
            tracing::warn!(request = %id, guest = name, "no render thread came free in time");
            return (StatusCode::SERVICE_UNAVAILABLE, Some(name), busy(id));
        }
    };
    // The render runs right here, on the async worker: the guest yields at
    // every epoch tick and its blocking calls step off the worker, so no
    // request waits behind it (and none pays a hand-off to another thread).
    let signed = match token {
        Some(token) => server.app.auth.resolve_async(&token).await,
        None => None,
    };
    let caller = Caller {
        user: signed.as_ref().map(|s| s.user.clone()),
        token: signed.map(|s| s.token),
        client: Some(client),
    };
    let render_started = Instant::now();
    let rendered = guest.render_async(&guest_request, caller).await;
    crate::metrics::render(name, render_started.elapsed());
    let mut response = match rendered.outcome {
        Outcome::Response(mut response) => {
            // Held with the render's permits: a body waiting for room does
            // not let another render make one more.
            let body = std::mem::take(&mut response.body);
            match server.outgoing.hold(body, OUTGOING_WAIT).await {
                Some(body) => {
                    let mut response = page::from_guest(response, body, id);
                    if let Some(origin) = origin
                        .as_deref()
                        .filter(|_| !route.browser.scripts.is_empty())
                    {
                        response.headers_mut().insert(
                            header::CONTENT_SECURITY_POLICY,
                            isolation::policy(&route.browser, origin),
                        );
                    }
                    response
                }
                None => {
                    tracing::warn!(request = %id, guest = name, "no room for the response: too many bodies wait for slow clients");
                    busy(id)
                }
            }
        }
        Outcome::Error(error) => guest_error(server, &error, browser, &parts.uri, id),
        Outcome::Stopped(why) => stopped(name, &why, id),
    };
    if let Some(cookie) = cookie(&rendered.session, secure, server.app.auth.policy().absolute) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    (response.status(), Some(name), response)
}
