//! The runtime against real built guests, in process: limits stop hostile
//! behaviour, the host carries on, and components are compiled once.

use crate::common;

use rawalite_host::capabilities::session::Caller;

use common::{get, guest};
use rawalite_host::capabilities::{ErrorCode, Grants, Response};
use rawalite_host::runtime::{Guest, Limits, LoadError, Outcome, Runtime, Stopped};

fn runtime() -> (Runtime, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    (Runtime::new(Some(cache.path().to_owned())).unwrap(), cache)
}

fn load(runtime: &Runtime, name: &str, limits: Limits) -> Guest {
    runtime
        .load(name, &guest(name), limits, Grants::default())
        .unwrap()
}

fn response(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Response(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn stopped(outcome: Outcome) -> Stopped {
    match outcome {
        Outcome::Stopped(why) => why,
        other => panic!("expected the guest to be stopped, got {other:?}"),
    }
}

#[test]
fn hello_renders_method_and_path_escaped() {
    let (rt, _cache) = runtime();
    let hello = load(&rt, "hello", Limits::default());
    let res = response(hello.render(&get("/<b>&\"x\""), Caller::default()).outcome);
    assert_eq!(res.status, 200);
    let body = String::from_utf8(res.body).unwrap();
    assert!(
        body.contains("<p>GET /&lt;b&gt;&amp;&quot;x&quot;</p>"),
        "{body}"
    );
    assert!(
        res.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/html"))
    );
}

#[test]
fn spin_is_stopped_by_the_deadline_and_the_next_request_succeeds() {
    let (rt, _cache) = runtime();
    let limits = Limits {
        timeout: std::time::Duration::from_millis(200),
        ..Limits::default()
    };
    let probe = load(&rt, "probe", limits);
    assert_eq!(
        stopped(probe.render(&get("/spin"), Caller::default()).outcome),
        Stopped::Deadline {
            timeout: limits.timeout
        }
    );
    let res = response(probe.render(&get("/echo?x=1"), Caller::default()).outcome);
    assert_eq!(res.status, 200);
}

#[test]
fn alloc_past_the_memory_cap_is_stopped() {
    let (rt, _cache) = runtime();
    let probe = load(&rt, "probe", Limits::default());
    assert_eq!(
        stopped(
            probe
                .render(&get("/alloc?mb=500"), Caller::default())
                .outcome
        ),
        Stopped::Memory { limit: 64 << 20 }
    );
    // Well under the cap is fine, in the same guest, right after.
    let res = response(probe.render(&get("/alloc?mb=8"), Caller::default()).outcome);
    assert!(String::from_utf8_lossy(&res.body).contains("\"allocated_mb\":8"));
}

#[test]
fn a_render_that_grows_its_memory_is_counted_and_hello_grows_none() {
    let (rt, _cache) = runtime();
    let probe = load(&rt, "probe", Limits::default());
    let grown = probe.render(&get("/alloc?mb=8"), Caller::default());
    assert!(grown.memory_grows > 0, "8 MiB needs the memory to grow");
    let hello = load(&rt, "hello", Limits::default());
    for _ in 0..3 {
        let page = hello.render(&get("/x"), Caller::default());
        assert_eq!(
            page.memory_grows, 0,
            "each request starts from the snapshot"
        );
    }
}

#[test]
fn panic_is_reported_as_stopped_with_its_message() {
    let (rt, _cache) = runtime();
    let probe = load(&rt, "probe", Limits::default());
    match stopped(probe.render(&get("/panic"), Caller::default()).outcome) {
        Stopped::Panic { message, location } => {
            assert_eq!(message, "the probe was asked to panic");
            // Where in the guest's source, so its developer can go there.
            let location = location.expect("a Rust panic says where");
            assert!(
                location.starts_with("guests/probe/src/lib.rs:"),
                "{location}"
            );
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        response(probe.render(&get("/echo"), Caller::default()).outcome).status,
        200
    );
}

#[test]
fn oversized_response_is_refused() {
    let (rt, _cache) = runtime();
    // Enough memory to build a 100 MiB body, so the response cap is what stops it.
    let limits = Limits {
        memory: 512 << 20,
        ..Limits::default()
    };
    let probe = load(&rt, "probe", limits);
    match stopped(probe.render(&get("/big?mb=100"), Caller::default()).outcome) {
        Stopped::ResponseTooLarge { size, limit } => {
            assert!(size >= 100 << 20, "{size}");
            assert_eq!(limit, 8 << 20);
        }
        other => panic!("expected too large, got {other:?}"),
    }
    // Just under the cap passes.
    let res = response(probe.render(&get("/big?mb=7"), Caller::default()).outcome);
    assert_eq!(res.body.len(), 7 << 20);
}

#[test]
fn a_guest_loaded_without_grants_is_denied_db_and_paths() {
    let (rt, _cache) = runtime();
    let probe = load(&rt, "probe", Limits::default());
    for route in [
        "/db/query?sql=select%201",
        "/paths/read?root=exports&path=a.txt",
    ] {
        match probe.render(&get(route), Caller::default()).outcome {
            Outcome::Error(e) => assert_eq!(e.code, ErrorCode::Denied, "{route}: {e:?}"),
            other => panic!("{route}: expected denied, got {other:?}"),
        }
    }
    assert_eq!(
        response(
            probe
                .render(&get("/paths/granted"), Caller::default())
                .outcome
        )
        .body,
        b"[]"
    );
}

#[test]
fn forbidden_import_is_refused_at_load_with_the_import_named() {
    let (rt, _cache) = runtime();
    let err = rt
        .load(
            "forbidden-import",
            &guest("forbidden-import"),
            Limits::default(),
            Grants::default(),
        )
        .err()
        .expect("the hostile guest must not load");
    match &err {
        LoadError::ForbiddenImports { refused, .. } => {
            assert!(
                refused.iter().any(|i| i.starts_with("wasi:sockets/")),
                "{refused:?}"
            );
        }
        other => panic!("expected a refused import, got {other}"),
    }
    assert!(err.to_string().contains("wasi:sockets/tcp@"), "{err}");
    assert_eq!(rt.cache_stats().compiled, 0, "refused before compiling");
}

#[test]
fn a_thousand_renders_compile_the_component_once() {
    let (rt, cache) = runtime();
    let hello = load(&rt, "hello", Limits::default());
    for i in 0..1000 {
        let res = response(
            hello
                .render(&get(&format!("/{i}")), Caller::default())
                .outcome,
        );
        assert_eq!(res.status, 200);
    }
    // Loading it again in the same process reuses the compiled component.
    let _again = load(&rt, "hello", Limits::default());
    let stats = rt.cache_stats();
    assert_eq!(stats.compiled, 1);
    assert_eq!(stats.from_memory, 1);

    // A restart finds it on disk and does not compile at all.
    drop(rt);
    let restarted = Runtime::new(Some(cache.path().to_owned())).unwrap();
    let hello = load(&restarted, "hello", Limits::default());
    assert_eq!(
        response(hello.render(&get("/"), Caller::default()).outcome).status,
        200
    );
    let stats = restarted.cache_stats();
    assert_eq!((stats.compiled, stats.from_disk), (0, 1));
}

#[test]
fn a_corrupt_cache_entry_is_recompiled_not_trusted() {
    let (rt, cache) = runtime();
    load(&rt, "hello", Limits::default());
    drop(rt);
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a compiled component").unwrap();
    }
    let restarted = Runtime::new(Some(cache.path().to_owned())).unwrap();
    let hello = load(&restarted, "hello", Limits::default());
    assert_eq!(
        response(hello.render(&get("/"), Caller::default()).outcome).status,
        200
    );
    assert_eq!(restarted.cache_stats().compiled, 1);
}

/// The only artifact in a cache directory.
fn only_artifact(dir: &std::path::Path) -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

#[test]
fn an_artifact_not_made_from_this_component_or_not_private_is_recompiled_not_run() {
    // The probe's artifact, copied over the file named for hello.
    let (rt, hello_cache) = runtime();
    load(&rt, "hello", Limits::default());
    let (other, probe_cache) = runtime();
    load(&other, "probe", Limits::default());
    drop((rt, other));
    let hello_artifact = only_artifact(hello_cache.path());
    std::fs::copy(only_artifact(probe_cache.path()), &hello_artifact).unwrap();
    let restarted = Runtime::new(Some(hello_cache.path().to_owned())).unwrap();
    let hello = load(&restarted, "hello", Limits::default());
    let page = response(hello.render(&get("/greet"), Caller::default()).outcome);
    assert!(
        String::from_utf8_lossy(&page.body).contains("<p>GET /greet</p>"),
        "hello's own code answered"
    );
    assert_eq!(restarted.cache_stats().compiled, 1);
    drop((hello, restarted));

    // An artifact others may read, or one with a second name, is not used.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hello_artifact, std::fs::Permissions::from_mode(0o644)).unwrap();
    let restarted = Runtime::new(Some(hello_cache.path().to_owned())).unwrap();
    load(&restarted, "hello", Limits::default());
    assert_eq!(restarted.cache_stats().compiled, 1, "readable by others");
    drop(restarted);
    let linked = hello_cache.path().join("second-name");
    std::fs::hard_link(only_artifact(hello_cache.path()), &linked).unwrap();
    let restarted = Runtime::new(Some(hello_cache.path().to_owned())).unwrap();
    load(&restarted, "hello", Limits::default());
    assert_eq!(restarted.cache_stats().compiled, 1, "a hard link");
}

#[test]
fn a_rust_guest_reads_the_hosts_clock_and_fresh_entropy_on_every_request() {
    let (rt, _cache) = runtime();
    let probe = load(&rt, "probe", Limits::default());
    let fresh = || -> serde_json::Value {
        let res = response(probe.render(&get("/fresh"), Caller::default()).outcome);
        serde_json::from_slice(&res.body).unwrap()
    };
    let (first, second) = (fresh(), fresh());
    assert_ne!(first["seeded"], second["seeded"], "{first} {second}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(first["time"].as_u64().unwrap()) < 60,
        "{first}"
    );
}

#[test]
fn random_bytes_are_bounded_per_call() {
    let (rt, _cache) = runtime();
    let probe = load(&rt, "probe", Limits::default());
    let random = |n: u32| {
        probe
            .render(
                &common::get_with("/random", &[("n", &n.to_string())]),
                Caller::default(),
            )
            .outcome
    };
    let res = response(random(65536));
    assert_eq!(res.body, br#"{"len":65536}"#);
    let why = stopped(random(65537));
    assert!(
        format!("{why:?}").contains("at most 65536 per call"),
        "{why:?}"
    );
}
