//! A full request to the `hello` guest (new store, instantiate from the
//! `InstancePre`, render, drop) against the same HTML from a plain function
//! in the host. `cargo xtask bench` runs this and prints the ratio.

use criterion::{Criterion, criterion_group, criterion_main};
use rawalite_host::capabilities::Request;
use rawalite_host::runtime::{Limits, Outcome, Runtime};
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

fn render(c: &mut Criterion) {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests/hello.wasm");
    let runtime = Runtime::new(None).expect("runtime");
    let hello = runtime
        .load("hello", &wasm, Limits::default())
        .expect("hello.wasm is built by `cargo xtask build`");
    let req = request();

    let mut group = c.benchmark_group("hello");
    group.bench_function("guest", |b| {
        b.iter(|| match hello.render(black_box(&req)) {
            Outcome::Response(res) => res,
            other => panic!("hello failed: {other:?}"),
        })
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            let req = black_box(&req);
            hello::page(&req.method, &req.path)
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
