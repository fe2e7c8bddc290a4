//! The probe: a test instrument that exposes every capability call, and
//! every way a guest can misbehave, as one route each. Tests and reviewers
//! drive it from `rawalite render` or HTTP without writing a new guest.
//!
//! A capability error is returned from `render` unchanged, so the host
//! reports exactly what the capability said.

use rawalite_guest::db::{self, Value};
use rawalite_guest::paths::{self, Access, EntryKind};
use rawalite_guest::{Error, Renderer, Request, Response, session};
use serde_json::{Value as Json, json};

struct Probe;

impl Renderer for Probe {
    fn render(req: Request) -> Result<Response, Error> {
        match req.path.as_str() {
            "/db/query" => db_query(&req, db::query),
            // `db.query` itself, value by value, as guests built before
            // `query-packed` call it.
            "/db/query-rows" => {
                db_query(&req, rawalite_guest::bindings::rawalite::bridge::db::query)
            }
            "/db/execute" => db_execute(&req),
            "/db/transaction" => db_transaction(&req),
            "/paths/granted" => Ok(Response::json(&paths::granted())),
            "/paths/read" => Ok(Response::bytes(
                "application/octet-stream",
                open_root(&req)?.read(param(&req, "path")?)?,
            )),
            "/paths/write" => {
                open_root(&req)?.write(param(&req, "path")?, &req.body)?;
                Ok(Response::json(
                    &json!({"ok": true, "bytes": req.body.len()}),
                ))
            }
            "/paths/list" => paths_list(&req),
            "/paths/churn" => paths_churn(&req),
            "/paths/hold" => {
                // Opens the root `n` times and keeps every handle until the
                // answer: for the host's cap on open handles.
                let n: usize = param(&req, "n")?
                    .parse()
                    .map_err(|_| Error::invalid_input("`n` must be a whole number"))?;
                let held = (0..n)
                    .map(|_| open_root(&req))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Response::json(&json!({"held": held.len()})))
            }
            "/paths/remove" => {
                open_root(&req)?.remove(param(&req, "path")?)?;
                ok()
            }
            "/paths/mkdir" => {
                open_root(&req)?.create_dir(param(&req, "path")?)?;
                ok()
            }
            "/paths/access" => Ok(Response::json(&access_name(open_root(&req)?.access()))),
            // The clock and entropy std reads through WASI: the host's.
            "/fresh" => {
                use std::hash::BuildHasher;
                let time = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let seeded = std::hash::RandomState::new().hash_one(0u8);
                Ok(Response::json(&json!({"time": time, "seeded": seeded})))
            }
            // The bridge's `random`, as a guest without WASI calls it.
            "/random" => {
                let n: u32 = param(&req, "n")?
                    .parse()
                    .map_err(|_| Error::invalid_input("`n` must be a whole number"))?;
                let bytes = rawalite_guest::bindings::rawalite::bridge::random::bytes(n);
                Ok(Response::json(&json!({"len": bytes.len()})))
            }
            "/session/current" => Ok(Response::json(&session::current().map(user_json))),
            "/session/has-role" => Ok(Response::json(&session::has_role(param(&req, "role")?))),
            "/session/login" => {
                let form = req.form();
                let user = session::login(form.text("username"), form.text("password"))?;
                Ok(Response::json(&user_json(user)))
            }
            "/session/logout" => {
                session::logout();
                ok()
            }
            "/spin" => spin(),
            "/sleep" => {
                // A guest that waits inside a host call (WASI's monotonic
                // clock and poll), where the epoch deadline cannot reach it.
                let ms: u64 = param(&req, "ms")?
                    .parse()
                    .map_err(|_| Error::invalid_input("`ms` must be a whole number"))?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(Response::json(&json!({"slept_ms": ms})))
            }
            "/alloc" => alloc(mebibytes(&req)?),
            "/panic" => panic!("the probe was asked to panic"),
            "/big" => Ok(Response::bytes(
                "application/octet-stream",
                vec![b'x'; mebibytes(&req)? << 20],
            )),
            // Answers with the query pairs as response headers: for the
            // host's header allowlist.
            "/headers" => Ok(req
                .query
                .iter()
                .fold(Response::text("headers"), |res, (k, v)| {
                    res.with_header(k, v)
                })),
            "/echo" => Ok(Response::json(&json!({
                "method": req.method,
                "base": req.base,
                "path": req.path,
                "query": req.query,
                "headers": req.headers,
                "body_len": req.body.len(),
            }))),
            other => Err(Error::not_found(format!("the probe has no route {other}"))),
        }
    }
}

rawalite_guest::export!(Probe);

fn ok() -> Result<Response, Error> {
    Ok(Response::json(&json!({"ok": true})))
}

fn param<'a>(req: &'a Request, key: &str) -> Result<&'a str, Error> {
    req.query(key)
        .ok_or_else(|| Error::invalid_input(format!("missing query parameter `{key}`")))
}

fn mebibytes(req: &Request) -> Result<usize, Error> {
    param(req, "mb")?
        .parse()
        .map_err(|_| Error::invalid_input("`mb` must be a whole number"))
}

fn db_query(
    req: &Request,
    query: fn(&str, &[Value]) -> Result<db::Rows, Error>,
) -> Result<Response, Error> {
    let rows = query(sql(req)?, &query_params(req)?)?;
    let body: Vec<Vec<Json>> = rows
        .rows
        .iter()
        .map(|row| row.iter().map(value_json).collect())
        .collect();
    Ok(Response::json(
        &json!({"columns": rows.columns, "rows": body}),
    ))
}

/// The statement: the `sql` query parameter, or else the body (for SQL
/// longer than a URL may be).
fn sql(req: &Request) -> Result<&str, Error> {
    match req.query("sql") {
        Some(sql) => Ok(sql),
        None if !req.body.is_empty() => std::str::from_utf8(&req.body)
            .map_err(|_| Error::invalid_input("the body must be SQL in UTF-8")),
        None => param(req, "sql"),
    }
}

fn db_execute(req: &Request) -> Result<Response, Error> {
    let outcome = db::execute(sql(req)?, &query_params(req)?)?;
    Ok(Response::json(&outcome_json(&outcome)))
}

fn db_transaction(req: &Request) -> Result<Response, Error> {
    let parsed: Vec<JsonStatement> = serde_json::from_slice(&req.body).map_err(|e| {
        Error::invalid_input(format!(
            "body must be JSON [{{\"sql\": …, \"params\": […]}}]: {e}"
        ))
    })?;
    let statements = parsed
        .into_iter()
        .map(|s| {
            let params = s.params.iter().map(json_param).collect::<Result<_, _>>()?;
            Ok(db::Statement { sql: s.sql, params })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let outcomes = db::transaction(&statements)?;
    Ok(Response::json(
        &outcomes.iter().map(outcome_json).collect::<Vec<_>>(),
    ))
}

#[derive(serde::Deserialize)]
struct JsonStatement {
    sql: String,
    #[serde(default)]
    params: Vec<Json>,
}

fn query_params(req: &Request) -> Result<Vec<Value>, Error> {
    req.query_all("p").map(typed_param).collect()
}

/// A parameter typed by its prefix: `n`, `i:42`, `r:1.5`, `t:text`, `b:<hex>`.
fn typed_param(text: &str) -> Result<Value, Error> {
    let bad = || {
        Error::invalid_input(format!(
            "parameter `{text}` must be n, i:<int>, r:<real>, t:<text> or b:<hex>"
        ))
    };
    if text == "n" {
        return Ok(Value::Null);
    }
    let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
    match kind {
        "i" => rest.parse().map(Value::Integer).map_err(|_| bad()),
        "r" => rest.parse().map(Value::Real).map_err(|_| bad()),
        "t" => Ok(Value::Text(rest.to_owned())),
        "b" => hex(rest).map(Value::Blob).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// In a transaction body, JSON null and numbers stand for themselves and a
/// string is typed by its prefix, as in the query string.
fn json_param(v: &Json) -> Result<Value, Error> {
    match v {
        Json::Null => Ok(Value::Null),
        Json::Number(n) => Ok(n.as_i64().map_or_else(
            || Value::Real(n.as_f64().unwrap_or(f64::NAN)),
            Value::Integer,
        )),
        Json::String(s) => typed_param(s),
        other => Err(Error::invalid_input(format!(
            "parameter {other} must be null, a number or a typed string"
        ))),
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => json!(i),
        Value::Real(r) => json!(r),
        Value::Text(t) => json!(t),
        Value::Blob(b) => {
            json!({"blob": b.iter().map(|x| format!("{x:02x}")).collect::<String>()})
        }
    }
}

fn outcome_json(o: &db::Outcome) -> Json {
    json!({"changed": o.changed, "last_insert_rowid": o.last_insert_rowid})
}

fn open_root(req: &Request) -> Result<paths::Root, Error> {
    paths::open(param(req, "root")?)
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "read-only",
        Access::ReadWrite => "read-write",
    }
}

fn paths_list(req: &Request) -> Result<Response, Error> {
    let entries = open_root(req)?.list_dir(req.query("path").unwrap_or(""))?;
    let body: Vec<Json> = entries
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "kind": match e.kind { EntryKind::File => "file", EntryKind::Directory => "directory" },
                "size": e.size,
                "modified_ms": e.modified_ms,
            })
        })
        .collect();
    Ok(Response::json(&body))
}

/// Writes the body `n` times (forever when `n` is absent), each version
/// stamped with its number in the first 8 bytes: a crash test kills the
/// host mid-loop and checks that the file is always one whole version.
fn paths_churn(req: &Request) -> Result<Response, Error> {
    let root = open_root(req)?;
    let path = param(req, "path")?;
    let rounds: u64 = match req.query("n") {
        Some(n) => n
            .parse()
            .map_err(|_| Error::invalid_input("`n` must be a whole number"))?,
        None => u64::MAX,
    };
    let mut contents = vec![0u8; 8];
    contents.extend_from_slice(&req.body);
    for round in 0..rounds {
        contents[..8].copy_from_slice(&round.to_le_bytes());
        root.write(path, &contents)?;
    }
    Ok(Response::json(&json!({"ok": true, "rounds": rounds})))
}

fn user_json(u: session::User) -> Json {
    json!({"id": u.id, "username": u.username, "display_name": u.display_name, "roles": u.roles})
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn alloc(mb: usize) -> Result<Response, Error> {
    let mut block = vec![0u8; mb << 20];
    // Touch every page so the memory is really used, not just reserved.
    for page in block.chunks_mut(4096) {
        page[0] = 1;
    }
    let touched = std::hint::black_box(&block).iter().step_by(4096).count();
    Ok(Response::json(
        &json!({"allocated_mb": mb, "pages": touched}),
    ))
}
