//! `--metrics ADDR`: Prometheus metrics on a listener of their own, with caps
//! of its own and the app's `Host` rule.

use super::{Server, listen, rules};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::sync::Arc;
use std::time::Duration;

/// The metrics listener's own connection caps: a scraper needs one or two.
const METRICS_CAPS: listen::Caps = listen::Caps {
    total: 64,
    per_address: 8,
};

/// `GET /metrics` on the metrics listener: the sizes read now, then the
/// exposition. The listener has the app's timeouts, caps of its own and
/// the same `Host` rule (on loopback only loopback names, so a page that
/// rebinds its name to 127.0.0.1 cannot read it).
pub(super) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    server: Arc<Server>,
) {
    let loopback = listener
        .local_addr()
        .is_ok_and(|addr| addr.ip().is_loopback());
    let scrape = move |request: axum::extract::Request, _client| {
        let (handle, server) = (handle.clone(), server.clone());
        async move {
            let site = rules::Site {
                loopback,
                hosts: &server.app.manifest.hosts,
                addresses: true,
            };
            if let Err(refusal) = rules::check_host(request.headers(), &site) {
                return (refusal.status, refusal.message).into_response();
            }
            if request.uri().path() != "/metrics" {
                return (StatusCode::NOT_FOUND, "metrics are at /metrics").into_response();
            }
            let database = server.app.database.clone();
            let bytes = tokio::task::spawn_blocking(move || database.size())
                .await
                .unwrap_or(0);
            crate::metrics::sizes(
                bytes,
                server
                    .app
                    .roots()
                    .map(|(name, root)| (name, root.usage().bytes)),
            );
            handle.run_upkeep();
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
    };
    let nobody: listen::Exempt = Arc::new(|_| false);
    listen::serve(
        listener,
        scrape,
        METRICS_CAPS,
        nobody,
        std::future::pending(),
        Duration::ZERO,
    )
    .await;
}
