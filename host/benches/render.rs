//! Each group measures a sandboxed request against a `native` baseline that
//! does the same work in the host; `cargo xtask bench` prints the ratios.
//!
//! - `hello`: a full request to the `hello` guest (new store, instantiate
//!   from the `InstancePre`, render, drop) against the same HTML from a
//!   plain function; `hello/python` and `hello/typescript` are the same
//!   page from a Python and a TypeScript guest;
//! - `db-10-rows`: a request to the `bench-customers` guest (one 10-row
//!   `db.query`, rendered as an HTML table) against the same query through
//!   rusqlite and the same page function in the host;
//! - `db-query`: one 10-row `db.query` from inside a guest (a request that
//!   makes N of them, less a request that makes none, over N) against the
//!   same query through rusqlite, rows collected;
//! - `db-query-postgres`: the same query on PostgreSQL (the app migrated
//!   into a throwaway cluster that `cargo xtask bench` starts), through the
//!   boundary (the checked statement from the cache, the guest's own role,
//!   a transaction of its own) against a prepared statement through
//!   tokio-postgres;
//! - `session-lookup`: what `serve` does for every request with a session
//!   cookie (`Auth::resolve`: the session joined to its user, on a pooled
//!   read-only connection) against the same query through rusqlite;
//! - `paths-{read,write}-{4k,1m}`: the probe reading or writing a file
//!   through `paths` against `std::fs` doing the same in the host (for
//!   writes, the same durable recipe: temporary file, fsync, rename, fsync
//!   of the directory).

use criterion::{Criterion, criterion_group, criterion_main};
use rawalite_host::app::App;
use rawalite_host::capabilities::session::Caller;
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
    match guest.render(req, Caller::default()).outcome {
        Outcome::Response(res) => res.body,
        other => panic!("{} failed: {other:?}", guest.name()),
    }
}

fn guests_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests")
}

/// An app in `dir` whose manifest is `[app]` plus `rest`.
fn bench_app(dir: &Path, rest: &str) -> App {
    let manifest = dir.join("rawalite.toml");
    std::fs::write(&manifest, format!("[app]\nname = \"bench\"\n{rest}"))
        .expect("write the manifest");
    App::open(
        Manifest::load(&manifest).expect("manifest"),
        None,
        Runtime::new(None).expect("runtime"),
    )
    .expect("app")
}

fn render(c: &mut Criterion) {
    let wasm = guests_dir().join("hello.wasm");
    let runtime = Runtime::new(None).expect("runtime");
    let hello = runtime
        .load("hello", &wasm, Limits::default(), Grants::default())
        .expect("hello.wasm is built by `cargo xtask build`");
    let python = runtime
        .load(
            "python-hello",
            &guests_dir().join("python-hello.wasm"),
            Limits::default(),
            Grants::default(),
        )
        .expect("python-hello.wasm is built by `cargo xtask build`");
    let typescript = runtime
        .load(
            "ts-hello",
            &guests_dir().join("ts-hello.wasm"),
            Limits::default(),
            Grants::default(),
        )
        .expect("ts-hello.wasm is built by `cargo xtask build`");
    let req = request();
    for other in [&python, &typescript] {
        assert_eq!(
            expect_response(other, &req),
            expect_response(&hello, &req),
            "the {} and Rust hello pages differ",
            other.name()
        );
    }

    let mut group = c.benchmark_group("hello");
    group.bench_function("guest", |b| {
        b.iter(|| expect_response(&hello, black_box(&req)))
    });
    group.bench_function("python", |b| {
        b.iter(|| expect_response(&python, black_box(&req)))
    });
    group.bench_function("typescript", |b| {
        b.iter(|| expect_response(&typescript, black_box(&req)))
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            let req = black_box(&req);
            pages::hello(&req.method, &req.path)
        })
    });
    group.finish();
}

fn db_query(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = bench_app(
        dir.path(),
        &format!(
            "[[guest]]\nname = \"customers\"\ncomponent = \"{}\"\n[guest.limits]\ntimeout_ms = 60000\n[guest.db]\nread = [\"customers\"]\n",
            guests_dir().join("bench-customers.wasm").display()
        ),
    );
    let conn = rusqlite::Connection::open(dir.path().join("data/rawalite.db")).expect("open");
    for i in 0..20 {
        conn.execute(
            "INSERT INTO customers (name, email) VALUES (?, ?)",
            (format!("Customer <{i}>"), format!("c{i}@example.org")),
        )
        .expect("insert");
    }
    let guest = app.load("customers").expect("the bench guest loads");
    let req = request();
    // The baseline's query: a cached statement, rows into owned values.
    let native_rows = || -> Vec<(i64, String, Option<String>)> {
        let mut stmt = conn
            .prepare_cached(pages::CUSTOMERS_QUERY)
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let native_page = || {
        let rows = native_rows();
        pages::customers(
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

    one_query(c, "db-query", &guest, native_rows);
}

fn db_query_postgres(c: &mut Criterion) {
    let Ok(socket) = std::env::var("RAWALITE_BENCH_POSTGRES") else {
        eprintln!(
            "db-query-postgres: skipped, RAWALITE_BENCH_POSTGRES is not set (`cargo xtask bench` sets it)"
        );
        return;
    };
    let url = format!("postgres://postgres@/bench?host={socket}");
    let dir = tempfile::tempdir().expect("temp dir");
    let rest = format!(
        "database = \"{url}\"\n[[guest]]\nname = \"customers\"\ncomponent = \"{}\"\n[guest.limits]\ntimeout_ms = 60000\n[guest.db]\nread = [\"customers\"]\n",
        guests_dir().join("bench-customers.wasm").display()
    );
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(&manifest, format!("[app]\nname = \"bench\"\n{rest}")).expect("manifest");
    let postgres = rawalite_host::database::postgres::Postgres::connect(
        &rawalite_host::database::postgres::DatabaseUrl::parse(&url).expect("url"),
    )
    .expect("the bench database");
    postgres
        .migrate(rawalite_host::app::db_grants(
            &Manifest::load(&manifest).expect("manifest"),
        ))
        .expect("migrate");
    drop(postgres);
    let app = bench_app(dir.path(), &rest);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config: tokio_postgres::Config = url.parse().expect("url");
    config.options("-c search_path=app");
    let (client, statement) = runtime.block_on(async {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        for i in 0..20 {
            client
                .execute(
                    "INSERT INTO customers (name, email) VALUES ($1, $2)",
                    &[&format!("Customer <{i}>"), &format!("c{i}@example.org")],
                )
                .await
                .expect("insert");
        }
        let statement = client
            .prepare(pages::CUSTOMERS_QUERY)
            .await
            .expect("prepare");
        (client, statement)
    });
    // The baseline's query: a prepared statement, rows into owned values.
    let native_rows = || -> Vec<(i64, String, Option<String>)> {
        runtime.block_on(async {
            client
                .query(&statement, &[])
                .await
                .expect("query")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        })
    };
    let guest = app.load("customers").expect("the bench guest loads");
    let page = pages::customers(
        native_rows()
            .iter()
            .map(|(id, name, email)| (*id, name.as_str(), email.as_deref().unwrap_or(""))),
    );
    assert_eq!(
        String::from_utf8(expect_response(&guest, &request())).expect("utf-8"),
        page,
        "the guest and the baseline render the same page"
    );
    one_query(c, "db-query-postgres", &guest, native_rows);
}

/// Group `name`: one `db.query` of the 10 rows from inside `guest`, the
/// fixed cost of its request taken off (the guest runs it N times in one
/// render, `?queries=N`, and a render with none is subtracted), beside
/// `native_rows`.
fn one_query<R>(c: &mut Criterion, name: &str, guest: &Guest, native_rows: impl Fn() -> R) {
    let queries = |n: u64| {
        let mut req = request();
        req.query = vec![("queries".into(), n.to_string())];
        req
    };
    let none = queries(0);
    let mut group = c.benchmark_group(name);
    group.bench_function("guest", |b| {
        b.iter_custom(|iters| {
            let many = queries(iters);
            let started = std::time::Instant::now();
            expect_response(guest, &none);
            let base = started.elapsed();
            let started = std::time::Instant::now();
            let body = expect_response(guest, &many);
            let all = started.elapsed();
            assert_eq!(body, (iters * 10).to_string().as_bytes());
            all.saturating_sub(base)
        })
    });
    group.bench_function("native", |b| b.iter(&native_rows));
    group.finish();
}

fn paths(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = bench_app(
        dir.path(),
        &format!(
            "[paths]\nfiles = \"files\"\n[[guest]]\nname = \"probe\"\ncomponent = \"{}\"\n[guest.paths]\nfiles = {{ access = \"read-write\", quota = \"1 GiB\" }}\n",
            guests_dir().join("probe.wasm").display()
        ),
    );
    let probe = app.load("probe").expect("probe");
    let files = dir.path().join("data/files");

    for (label, size) in [("4k", 4usize << 10), ("1m", 1 << 20)] {
        let contents: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let name = format!("bench-{label}.bin");
        std::fs::write(files.join(&name), &contents).expect("seed the file");

        let mut read = request();
        read.path = "/paths/read".into();
        read.query = vec![
            ("root".into(), "files".into()),
            ("path".into(), name.clone()),
        ];
        assert_eq!(expect_response(&probe, &read), contents);
        let mut group = c.benchmark_group(format!("paths-read-{label}"));
        group.bench_function("guest", |b| {
            b.iter(|| expect_response(&probe, black_box(&read)))
        });
        group.bench_function("native", |b| {
            b.iter(|| std::fs::read(files.join(black_box(&name))).expect("read"))
        });
        group.finish();

        let mut write = request();
        write.method = "POST".into();
        write.path = "/paths/write".into();
        write.query = vec![
            ("root".into(), "files".into()),
            ("path".into(), format!("w-{name}")),
        ];
        write.body = contents.clone();
        let mut group = c.benchmark_group(format!("paths-write-{label}"));
        group.bench_function("guest", |b| {
            b.iter(|| expect_response(&probe, black_box(&write)))
        });
        group.bench_function("native", |b| {
            b.iter(|| native_write(&files, &format!("n-{name}"), black_box(&contents)))
        });
        group.finish();
    }
}

/// What `paths.write` does, with `std::fs` and no sandbox.
fn native_write(dir: &Path, name: &str, contents: &[u8]) {
    use std::io::Write;
    let temp = dir.join(format!(".tmp-{name}"));
    let mut file = std::fs::File::create(&temp).expect("create");
    file.write_all(contents).expect("write");
    file.sync_all().expect("fsync");
    std::fs::rename(&temp, dir.join(name)).expect("rename");
    std::fs::File::open(dir)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
}

fn session_lookup(c: &mut Criterion) {
    use rawalite_host::auth::password::Password;
    let dir = tempfile::tempdir().expect("temp dir");
    let app = bench_app(dir.path(), "");
    let password = Password::new("a long bench password".into());
    app.auth
        .add_user("bench", None, &["admin".into()], &password)
        .expect("a user");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let token = app
        .auth
        .login("bench", &password, None, deadline)
        .expect("signed in")
        .token;
    let conn = rusqlite::Connection::open(dir.path().join("data/rawalite.db")).expect("open");
    let hash: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        token.expose(),
    ))
    .into();
    let mut group = c.benchmark_group("session-lookup");
    group.bench_function("guest", |b| {
        b.iter(|| app.auth.resolve(black_box(&token)).expect("a live session"))
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.last_seen_at, s.expires_at, u.id, u.username, u.display_name, u.roles, u.disabled FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
                )
                .expect("prepare");
            stmt.query_row([black_box(&hash[..])], |r| r.get::<_, i64>(0))
                .expect("the session row")
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    render,
    db_query,
    db_query_postgres,
    session_lookup,
    paths
);
criterion_main!(benches);
