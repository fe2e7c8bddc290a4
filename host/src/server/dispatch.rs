//! One request, from the host's rules on the way in to the guest's answer
//! with the host's headers on the way out, in phases: [`admit`] (the
//! host's rules, its own pages, the route and the sender's page),
//! [`read_body`], [`permits`] (a share of the render threads), the caller
//! ([`caller`]), the render, and [`finish`] (the host's headers on the
//! guest's answer). A phase that refuses the request answers it: its
//! `Err` is the response.

use super::guest_io::{busy, cookie, guest_error, guest_request, stopped};
use super::limits::{BODY_TIMEOUT, MAX_BODY, OUTGOING_WAIT, QUEUE_WAIT, RETRY_AFTER};
use super::page::RequestId;
use super::routes::{Route, Routes};
use super::{Server, access_log, health, isolation, page, rules};
use crate::capabilities::session::Caller;
use crate::runtime::{Outcome, Rendered};
use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{Response, StatusCode, header};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::SemaphorePermit;

/// Answers one request `client` sent.
pub(super) async fn handle(
    server: Arc<Server>,
    request: axum::extract::Request,
    client: SocketAddr,
) -> Response<Body> {
    let id = RequestId::next();
    // Kept for the log line, if there is one (the clone of the URI is the
    // first to share its bytes, which costs an allocation).
    let logged = access_log::on().then(|| {
        let started = Instant::now();
        (started, request.method().clone(), request.uri().clone())
    });
    let routes = server.routes();
    let (status, guest, response) = match respond(&server, &routes, client, request, id).await {
        Ok(answer) | Err(answer) => answer,
    };
    crate::metrics::request(guest, status.as_u16());
    if let Some((started, method, uri)) = &logged {
        access_log::Access {
            id,
            method,
            path: uri.path(),
            status: status.as_u16(),
            guest: guest.unwrap_or("-"),
            us: started.elapsed().as_micros() as u64,
        }
        .record();
    }
    response
}

/// The response, its status, and the guest that made it (for the log).
type Answer<'s> = (StatusCode, Option<&'s str>, Response<Body>);

/// An error page as an answer.
fn refused<'s>(
    status: StatusCode,
    guest: Option<&'s str>,
    message: &str,
    id: RequestId,
) -> Answer<'s> {
    (status, guest, page::error(status, message, id))
}

/// A request the host's rules let through to a guest's route.
struct Admitted<'s> {
    route: &'s Route,
    parts: Parts,
    client: IpAddr,
    /// Whether it came over HTTPS (to the host or a trusted proxy).
    secure: bool,
    /// This site's origin, as the browser names it: read only when a
    /// Referer is to be checked or a granted script named.
    origin: Option<String>,
}

async fn respond<'s>(
    server: &Server,
    routes: &'s Routes,
    client: SocketAddr,
    request: axum::extract::Request,
    id: RequestId,
) -> Result<Answer<'s>, Answer<'s>> {
    let (admitted, body) = admit(server, routes, client, request, id).await?;
    let route = admitted.route;
    let name = route.guest.name();
    let body = read_body(body, name, id).await?;
    let parts = &admitted.parts;
    let browser = rules::wants_html(&parts.headers);
    let token = rules::session_token(&parts.headers, admitted.secure);
    let guest_request = guest_request(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &route.prefix,
        parts.uri.path(),
        body,
    );
    let _permits = permits(server, route, id).await?;
    // The render runs right here, on the async worker: the guest yields at
    // every epoch tick and its blocking calls step off the worker, so no
    // request waits behind it (and none pays a hand-off to another thread).
    let caller = caller(server, token, admitted.client).await;
    let render_started = Instant::now();
    let rendered = route.guest.render_async(&guest_request, caller).await;
    crate::metrics::render(name, render_started.elapsed());
    let response = finish(server, &admitted, rendered, browser, id).await;
    Ok((response.status(), Some(name), response))
}

/// The host's rules, its own pages (`/healthz`, `/static/`, a route whose
/// guest is compiling, no route), and the sender's page; what is left is a
/// guest's request, and its body, still to be read.
async fn admit<'s>(
    server: &Server,
    routes: &'s Routes,
    peer: SocketAddr,
    request: axum::extract::Request,
    id: RequestId,
) -> Result<(Admitted<'s>, Body), Answer<'s>> {
    let (client, secure) = rules::client(
        peer,
        request.headers(),
        &server.app.manifest.trusted_proxies,
    );
    let site = rules::Site {
        loopback: server.loopback,
        hosts: &server.app.manifest.hosts,
        addresses: false,
    };
    if let Err(refusal) = rules::check_request(&request, &site) {
        return Err(refused(refusal.status, None, refusal.message, id));
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if path == "/healthz" {
        let response = page::secured(health::check(server).await);
        return Err((response.status(), None, response));
    }
    if let Some(asset) = path.strip_prefix("/static/") {
        let response = match &server.static_files {
            Some(files) => files.answer(&parts.method, asset, &parts.headers, id),
            None => page::error(StatusCode::NOT_FOUND, "There is no page here.", id),
        };
        return Err((response.status(), None, response));
    }
    if let Some(name) = routes.loading(path) {
        let (status, guest, mut response) = refused(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(name),
            "This page is starting: its guest is still compiling. Try again in a few seconds.",
            id,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER),
        );
        return Err((status, guest, response));
    }
    let Some(route) = routes.find(path) else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            None,
            "There is no page here.",
            id,
        ));
    };
    let name = route.guest.name();
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
        return Err(refused(refusal.status, Some(name), refusal.message, id));
    }
    let admitted = Admitted {
        route,
        parts,
        client,
        secure,
        origin,
    };
    Ok((admitted, body))
}

/// The request's body, at most [`MAX_BODY`], read within [`BODY_TIMEOUT`].
async fn read_body<'s>(body: Body, name: &'s str, id: RequestId) -> Result<Bytes, Answer<'s>> {
    // Most requests (a GET) have none: no reader, no timer.
    if axum::body::HttpBody::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(name),
            "The request body is larger than 1 MiB.",
            id,
        )),
        Err(_) => Err(refused(
            StatusCode::REQUEST_TIMEOUT,
            Some(name),
            "The request body took too long.",
            id,
        )),
    }
}

/// One permit of the guest's share and one of the pool per render: a slow
/// guest holds one thread, and at most its share of them.
async fn permits<'a, 's>(
    server: &'a Server,
    route: &'s Route,
    id: RequestId,
) -> Result<(SemaphorePermit<'s>, SemaphorePermit<'a>), Answer<'s>> {
    let name = route.guest.name();
    let permits = tokio::time::timeout(QUEUE_WAIT, async {
        let share = route.share.acquire().await;
        let render = server.renders.acquire().await;
        share.and_then(|share| Ok((share, render?)))
    })
    .await;
    match permits {
        Ok(Ok(permits)) => Ok(permits),
        Ok(Err(_closed)) => Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(name),
            "The server is stopping.",
            id,
        )),
        Err(_waited) => {
            tracing::warn!(request = %id, guest = name, "no render thread came free in time");
            Err((StatusCode::SERVICE_UNAVAILABLE, Some(name), busy(id)))
        }
    }
}

/// Who asks: the user of the session `token` names, if it is live.
async fn caller(server: &Server, token: Option<crate::auth::Token>, client: IpAddr) -> Caller {
    let signed = match token {
        Some(token) => server.app.auth.resolve_async(&token).await,
        None => None,
    };
    Caller {
        user: signed.as_ref().map(|s| s.user.clone()),
        token: signed.map(|s| s.token),
        client: Some(client),
    }
}

/// The guest's answer with the host's headers: its page (with the policy
/// of its granted scripts), or the host's page for its error or its stop,
/// and the session cookie a sign-in or sign-out set.
async fn finish(
    server: &Server,
    admitted: &Admitted<'_>,
    rendered: Rendered,
    browser: bool,
    id: RequestId,
) -> Response<Body> {
    let route = admitted.route;
    let name = route.guest.name();
    let mut response = match rendered.outcome {
        Outcome::Response(mut response) => {
            // Held with the render's permits: a body waiting for room does
            // not let another render make one more.
            let body = std::mem::take(&mut response.body);
            match server.outgoing.hold(body, OUTGOING_WAIT).await {
                Some(body) => {
                    let mut response = page::from_guest(response, body, id);
                    if let Some(origin) = admitted
                        .origin
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
        Outcome::Error(error) => guest_error(server, &error, browser, &admitted.parts.uri, id),
        Outcome::Stopped(why) => stopped(name, &why, id),
    };
    if let Some(cookie) = cookie(
        &rendered.session,
        admitted.secure,
        server.app.auth.policy().absolute,
    ) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}
