//! The native baseline of `cargo xtask bench serve`: the two bench pages
//! (`/hello/...` and `/customers-page`) served by axum with rusqlite and no
//! sandbox, rendering the same HTML from the same database as RawaLite.
//!
//! Usage: `native-baseline ADDR DATABASE`

use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OpenFlags};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::OnceLock;

static DATABASE: OnceLock<PathBuf> = OnceLock::new();

thread_local! {
    /// One connection per worker thread, with its statement cache: the
    /// best a native server does with SQLite.
    static CONN: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

#[tokio::main]
async fn main() -> Result<()> {
    const USAGE: &str = "usage: native-baseline ADDR DATABASE\n\nServes /hello/... and /customers-page from the SQLite file DATABASE on ADDR\n(e.g. 127.0.0.1:9000), for `cargo xtask bench serve`.";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let [addr, db] = args.as_slice() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    DATABASE.set(PathBuf::from(db)).ok();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("native baseline on http://{}/", listener.local_addr()?);
    axum::serve(listener, axum::Router::new().fallback(handle)).await?;
    Ok(())
}

async fn handle(request: Request) -> Response {
    let path = request.uri().path();
    if path == "/customers-page" {
        return match customers() {
            Ok(page) => html(page),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
    }
    match path.strip_prefix("/hello") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let rest = if rest.is_empty() { "/" } else { rest };
            html(pages::hello(request.method().as_str(), rest))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn html(page: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn customers() -> rusqlite::Result<String> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let path = DATABASE.get().expect("set in main");
            *slot = Some(Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?);
        }
        let conn = slot.as_ref().expect("just opened");
        let mut stmt = conn.prepare_cached(pages::CUSTOMERS_QUERY)?;
        let rows: Vec<(i64, String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(pages::customers(rows.iter().map(|(id, name, email)| {
            (*id, name.as_str(), email.as_deref().unwrap_or(""))
        })))
    })
}
