//! Each group measures a sandboxed request against a `native` baseline that
//! does the same work in the host; `cargo xtask bench` prints the ratios.
//!
//! - `hello`: a full request to the `hello` guest (new store, instantiate
//!   from the `InstancePre`, render, drop) against the same HTML from a
//!   plain function;
//! - `db-10-rows`: a request to the `bench-customers` guest (one 10-row
//!   `db.query`, rendered as an HTML table) against the same query through
//!   rusqlite and the same page function in the host.

use criterion::{Criterion, criterion_group, criterion_main};
use rawalite_host::app::App;
use rawalite_host::capabilities::{Grants, Request};
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{Guest, Limits, Outcome, Runtime};
use std::hint::black_box;
use std::path::Path;

fn request() -> Request {
    Request {
        method: "GET".into(),
        base: "/hello".into(),
        path: "/bench".into(),
        query: vec![("q".into(), "1".into())],
        headers: vec![("accept".into(), "text/html".into())],
        body: Vec::new(),
    }
}

fn expect_response(guest: &Guest, req: &Request) -> Vec<u8> {
    match guest.render(req) {
        Outcome::Response(res) => res.body,
        other => panic!("{} failed: {other:?}", guest.name()),
    }
}

fn guests_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests")
}

fn render(c: &mut Criterion) {
    let wasm = guests_dir().join("hello.wasm");
    let runtime = Runtime::new(None).expect("runtime");
    let hello = runtime
        .load("hello", &wasm, Limits::default(), Grants::default())
        .expect("hello.wasm is built by `cargo xtask build`");
    let req = request();

    let mut group = c.benchmark_group("hello");
    group.bench_function("guest", |b| {
        b.iter(|| expect_response(&hello, black_box(&req)))
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            let req = black_box(&req);
            hello::page(&req.method, &req.path)
        })
    });
    group.finish();
}

fn db_query(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"bench\"\n[[guest]]\nname = \"customers\"\ncomponent = \"{}\"\n[guest.db]\nread = [\"customers\"]\n",
            guests_dir().join("bench-customers.wasm").display()
        ),
    )
    .expect("write the manifest");
    let app = App::open(
        Manifest::load(&manifest).expect("manifest"),
        None,
        Runtime::new(None).expect("runtime"),
    )
    .expect("app");
    let conn = rusqlite::Connection::open(app.database.path()).expect("open");
    for i in 0..20 {
        conn.execute(
            "INSERT INTO customers (name, email) VALUES (?, ?)",
            (format!("Customer <{i}>"), format!("c{i}@example.org")),
        )
        .expect("insert");
    }
    let guest = app.load("customers").expect("the bench guest loads");
    let req = request();
    let native_page = || {
        let mut stmt = conn
            .prepare_cached(bench_customers::QUERY)
            .expect("prepare");
        let rows: Vec<(i64, String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        bench_customers::page(
            rows.iter()
                .map(|(id, name, email)| (*id, name.as_str(), email.as_deref().unwrap_or(""))),
        )
    };
    assert_eq!(
        String::from_utf8(expect_response(&guest, &req)).expect("utf-8"),
        native_page(),
        "the guest and the baseline render the same page"
    );

    let mut group = c.benchmark_group("db-10-rows");
    group.bench_function("guest", |b| {
        b.iter(|| expect_response(&guest, black_box(&req)))
    });
    group.bench_function("native", |b| b.iter(native_page));
    group.finish();
}

criterion_group!(benches, render, db_query);
criterion_main!(benches);
