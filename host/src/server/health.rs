//! `GET /healthz`: whether this server can do its work, for a load
//! balancer or a monitor: the database answers, its migrations are the
//! ones this binary knows, and every routed guest is loaded (not still
//! compiling). 200 when all hold, 503 otherwise; the body says which.
//! While the server drains (after SIGTERM) it is 503 `draining`, so a
//! balancer stops sending.

use super::Server;
use crate::database::MigrationState;
use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use serde_json::{Value, json};

pub(super) async fn check(server: &Server) -> Response<Body> {
    if server.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return respond(false, json!({"status": "draining"}));
    }
    let database = server.app.database.clone();
    let state = tokio::task::spawn_blocking(move || {
        database.migration_state().map_err(|e| format!("{e:#}"))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let (database, migrations) = match state {
        Ok(MigrationState::Current) => (json!("ok"), json!("current")),
        Ok(MigrationState::Pending(n)) => (json!("ok"), json!({ "pending": n })),
        Ok(MigrationState::Unknown(newer)) => (json!("ok"), json!({ "unknown": newer })),
        Err(e) => (json!({ "error": e }), Value::Null),
    };
    // The table serving now (`--watch` may have changed it since start).
    let routes = server.routes();
    let guests: serde_json::Map<String, Value> = routes
        .guests()
        .map(|guest| (guest.name().to_owned(), json!("loaded")))
        .chain(
            routes
                .loading
                .iter()
                .map(|(_, name)| (name.clone(), json!("compiling"))),
        )
        .chain(
            routes
                .missing
                .iter()
                .map(|name| (name.clone(), json!("not loaded"))),
        )
        .collect();
    let healthy = migrations == json!("current") && guests.values().all(|v| v == "loaded");
    let body = json!({
        "status": if healthy { "ok" } else { "failing" },
        "database": database,
        "migrations": migrations,
        "guests": guests,
    });
    respond(healthy, body)
}

fn respond(healthy: bool, body: Value) -> Response<Body> {
    Response::builder()
        .status(if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        })
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}
