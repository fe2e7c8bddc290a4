//! The native baseline of `cargo xtask bench serve`: the two bench pages
//! (`/hello/...` and `/customers-page`) served by axum with no sandbox,
//! rendering the same HTML from the same database as RawaLite: rusqlite
//! for a SQLite file, tokio-postgres for a `postgres://` URL.
//!
//! Usage: `native-baseline ADDR DATABASE [--pool]`

use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OpenFlags};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the customers come from.
enum Database {
    Sqlite(PathBuf),
    /// Connections with the query prepared, used either in turn, shared
    /// (tokio-postgres pipelines the requests of concurrent callers on one
    /// connection), or with `--pool` one request per connection at a time,
    /// as a pool such as deadpool-postgres lends them (and as RawaLite
    /// does: a call never shares its connection).
    Postgres {
        clients: Vec<(tokio_postgres::Client, tokio_postgres::Statement)>,
        pool: Option<Pool>,
    },
}

/// Which connections are free, for `--pool`.
struct Pool {
    free: std::sync::Mutex<Vec<usize>>,
    permits: tokio::sync::Semaphore,
}

impl Pool {
    /// A free connection's index, given back when the loan is dropped,
    /// also when a client hangs up and its request is cancelled midway.
    async fn lend(&self) -> Lent<'_> {
        let permit = self.permits.acquire().await.expect("never closed");
        let index = self
            .free
            .lock()
            .unwrap()
            .pop()
            .expect("a permit means a free one");
        Lent {
            pool: self,
            index,
            _permit: permit,
        }
    }
}

/// A connection lent by [`Pool::lend`].
struct Lent<'a> {
    pool: &'a Pool,
    index: usize,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        // Before the permit goes (fields drop after this).
        self.pool.free.lock().unwrap().push(self.index);
    }
}

/// As many connections as RawaLite gives one guest on one host.
const POSTGRES_CONNECTIONS: usize = 8;

static DATABASE: OnceLock<Database> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// One connection per worker thread, with its statement cache: the
    /// best a native server does with SQLite.
    static CONN: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

#[tokio::main]
async fn main() -> Result<()> {
    const USAGE: &str = "usage: native-baseline ADDR DATABASE [--pool]\n\nServes /hello/... and /customers-page on ADDR (e.g. 127.0.0.1:9000) from\nDATABASE, a SQLite file or a postgres:// URL, for `cargo xtask bench serve`.\nWith --pool, a PostgreSQL connection serves one request at a time.";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let (addr, db, pooled) = match args.as_slice() {
        [addr, db] => (addr, db, false),
        [addr, db, flag] if flag == "--pool" => (addr, db, true),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let database = if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        let clients = connect(db).await?;
        let pool = pooled.then(|| Pool {
            free: std::sync::Mutex::new((0..clients.len()).collect()),
            permits: tokio::sync::Semaphore::new(clients.len()),
        });
        Database::Postgres { clients, pool }
    } else {
        Database::Sqlite(PathBuf::from(db))
    };
    DATABASE.set(database).ok();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("native baseline on http://{}/", listener.local_addr()?);
    axum::serve(listener, axum::Router::new().fallback(handle)).await?;
    Ok(())
}

/// The connections to `url`, the app's schema first on the search path.
async fn connect(url: &str) -> Result<Vec<(tokio_postgres::Client, tokio_postgres::Statement)>> {
    let mut config: tokio_postgres::Config = url.parse().context("the database URL")?;
    config.options("-c search_path=app");
    let mut clients = Vec::new();
    for _ in 0..POSTGRES_CONNECTIONS {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .context("cannot connect to PostgreSQL")?;
        tokio::spawn(connection);
        let statement = client.prepare(pages::CUSTOMERS_QUERY).await?;
        clients.push((client, statement));
    }
    Ok(clients)
}

async fn handle(request: Request) -> Response {
    let path = request.uri().path();
    if path == "/customers-page" {
        let page = match DATABASE.get().expect("set in main") {
            Database::Sqlite(path) => sqlite_customers(path).map_err(|e| e.to_string()),
            Database::Postgres { clients, pool } => postgres_customers(clients, pool.as_ref())
                .await
                .map_err(|e| e.to_string()),
        };
        return match page {
            Ok(page) => html(page),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
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

fn sqlite_customers(path: &PathBuf) -> rusqlite::Result<String> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
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

async fn postgres_customers(
    clients: &[(tokio_postgres::Client, tokio_postgres::Statement)],
    pool: Option<&Pool>,
) -> Result<String, tokio_postgres::Error> {
    let rows = match pool {
        None => {
            let (client, statement) =
                &clients[NEXT.fetch_add(1, Ordering::Relaxed) % clients.len()];
            client.query(statement, &[]).await?
        }
        Some(pool) => {
            let lent = pool.lend().await;
            let (client, statement) = &clients[lent.index];
            client.query(statement, &[]).await?
        }
    };
    Ok(pages::customers(rows.iter().map(|r| {
        (
            r.get::<_, i64>(0),
            r.get::<_, &str>(1),
            r.get::<_, Option<&str>>(2).unwrap_or(""),
        )
    })))
}
