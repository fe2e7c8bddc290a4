//! `serve --watch` and compiling at start: a replaced component, a
//! changed grant, a guest still compiling or one that never loads.

use super::serve::*;
use crate::common;

use common::{Served, agent};
use std::time::Duration;

/// `serve --watch` with one guest, `page`, whose component is a copy in
/// the test's directory; the log goes to `dir/serve.log`.
fn start_watching(dir: &std::path::Path, first: &str) -> Served {
    start_watching_with(dir, first, &[])
}

/// [`start_watching`] with more environment (`RUST_LOG`, say).
fn start_watching_with(dir: &std::path::Path, first: &str, envs: &[(&str, &str)]) -> Served {
    std::fs::copy(common::guest(first), dir.join("page.wasm")).unwrap();
    std::fs::write(
        dir.join("rawalite.toml"),
        "[app]\nname = \"watch\"\ndata_dir = \"data\"\n\n\
         [[guest]]\nname = \"page\"\ncomponent = \"page.wasm\"\nroute = \"/page\"\n\
         [guest.limits]\ntimeout_ms = 5000\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    Served::start_with(
        &dir.join("rawalite.toml"),
        &dir.join("data"),
        &common::shared_cache(),
        &["--watch"],
        envs,
        log.into(),
    )
}

/// Replaces `path` the way `rawalite build` does: beside it, then renamed.
pub(super) fn replace(path: &std::path::Path, bytes: &[u8]) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// Polls `path` until its body contains `needle`, for at most 10 s.
pub(super) fn eventually(served: &Served, path: &str, needle: &str) -> Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(served, path, None);
        if r.body.contains(needle) || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_swaps_a_replaced_component_while_requests_in_flight_finish_on_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let served = start_watching(dir.path(), "probe");
    let r = get(&served, "/page/echo?x=1", None);
    assert_eq!(r.status, 200, "{}", r.body);

    // A request in flight on the probe while the component is replaced.
    let slow = {
        let url = served.url("/page/sleep?ms=1500");
        std::thread::spawn(move || agent().get(&url).call().map(|r| r.status().as_u16()))
    };
    std::thread::sleep(Duration::from_millis(200));
    replace(
        &dir.path().join("page.wasm"),
        &std::fs::read(common::guest("hello")).unwrap(),
    );
    let r = eventually(&served, "/page/greet", "<p>GET /greet</p>");
    assert!(
        r.body.contains("<p>GET /greet</p>"),
        "hello never took over: {}",
        r.body
    );
    assert_eq!(
        slow.join().unwrap().unwrap(),
        200,
        "the old version finished its request"
    );

    // A file that is not a component: the log says why and hello serves on.
    replace(&dir.path().join("page.wasm"), b"not a component");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
        if log.contains("reload failed") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        log.contains("reload failed: the previous version keeps serving"),
        "{log}"
    );
    assert!(
        log.contains("guest=page") && log.contains("page.wasm"),
        "{log}"
    );
    let r = get(&served, "/page/greet", None);
    assert!(r.body.contains("<p>GET /greet</p>"), "{}", r.body);
}

#[test]
fn watch_keeps_each_guests_share_across_a_reload_and_refuses_a_root_added_since_start() {
    let dir = tempfile::tempdir().unwrap();
    let served = start_watching_with(dir.path(), "probe", &[("RUST_LOG", "info")]);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let share = (cores * 8).clamp(16, 128) / 2;
    let sleepers = |n: usize, ms: u64| -> Vec<std::thread::JoinHandle<(u16, std::time::Instant)>> {
        (0..n)
            .map(|_| {
                let url = served.url(&format!("/page/sleep?ms={ms}"));
                std::thread::spawn(move || {
                    let status = agent().get(&url).call().map_or(0, |r| r.status().as_u16());
                    (status, std::time::Instant::now())
                })
            })
            .collect()
    };
    // The guest's whole share sleeps; then the component is replaced (the
    // same bytes, a new file) and reloaded.
    let first = sleepers(share, 3500);
    std::thread::sleep(Duration::from_millis(1000));
    replace(
        &dir.path().join("page.wasm"),
        &std::fs::read(common::guest("probe")).unwrap(),
    );
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let waited = std::time::Instant::now();
    while !log().contains("reloaded") {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "no reload: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new version has the same share, still held by the old renders:
    // its renders wait for them instead of doubling the guest's threads.
    let second = sleepers(share, 3000);
    let first: Vec<_> = first.into_iter().map(|t| t.join().unwrap()).collect();
    let second: Vec<_> = second.into_iter().map(|t| t.join().unwrap()).collect();
    let statuses: Vec<u16> = first.iter().chain(&second).map(|(s, _)| *s).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let first_done = first.iter().map(|(_, at)| *at).min().unwrap();
    for (_, done) in &second {
        assert!(
            *done >= first_done + Duration::from_millis(2500),
            "a render of the new version ran beside the old ones: it ended {:?} after the first old one",
            done.saturating_duration_since(first_done)
        );
    }

    // A root added to the manifest since start: refused with what to do,
    // and the running version keeps serving.
    let manifest = dir.path().join("rawalite.toml");
    let with_root = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[[guest]]", "[paths]\nnewroot = \"newroot\"\n\n[[guest]]")
        + "[guest.paths]\nnewroot = { access = \"read-write\", quota = \"1 MiB\" }\n";
    replace(&manifest, with_root.as_bytes());
    let waited = std::time::Instant::now();
    while !log().contains("was added to [paths] after this server started") {
        assert!(waited.elapsed() < Duration::from_secs(30), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!log().contains("panicked"), "{}", log());
    assert_eq!(get(&served, "/page/echo", None).status, 200);
}

#[test]
fn watch_applies_a_changed_grant_on_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let served = start_watching(dir.path(), "probe");
    let count = "/page/db/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20customers";
    let r = get(&served, count, None);
    assert!(r.body.contains("[guest.db]"), "denied first: {}", r.body);

    let manifest = dir.path().join("rawalite.toml");
    let granted =
        std::fs::read_to_string(&manifest).unwrap() + "[guest.db]\nread = [\"customers\"]\n";
    replace(&manifest, granted.as_bytes());
    let r = eventually(&served, count, "\"n\"");
    assert_eq!(
        r.status,
        200,
        "the grant never took effect: {}\nserve's log:\n{}",
        r.body,
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );

    // A manifest with an error changes nothing.
    replace(&manifest, b"[[guest]]\nname = 7\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(&served, count, None).status, 200);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("the manifest has an error"), "{log}");
}

#[test]
fn a_guest_still_compiling_answers_503_with_retry_after_until_it_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"c\"\ndata_dir = \"data\"\n\n\
             [[guest]]\nname = \"big\"\ncomponent = \"{}\"\nroute = \"/big\"\n\n\
             [[guest]]\nname = \"small\"\ncomponent = \"{}\"\nroute = \"/\"\n",
            common::guest("python-hello").display(),
            common::guest("ts-hello").display()
        ),
    )
    .unwrap();
    // An empty compile cache: the Python guest takes seconds to compile.
    let cache = dir.path().join("cache");
    let served = Served::start_compiling(&manifest, &dir.path().join("data"), &cache);
    let r = get(&served, "/big/page", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(r.body.contains("still compiling"), "{}", r.body);
    let health = get(&served, "/healthz", None);
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(
        health.body.contains("\"big\":\"compiling\""),
        "{}",
        health.body
    );
    // Ready once compiled: /healthz says so, and the route answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while get(&served, "/healthz", None).status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&served, "/big/page", None).status, 200);
    assert_eq!(get(&served, "/other", None).status, 200);
    drop(served);

    // `rawalite compile` fills another cache ahead of a start: every route
    // answers at once.
    let cache = dir.path().join("cache-2");
    let out = std::process::Command::new(common::bin())
        .args(["compile", "--manifest"])
        .arg(&manifest)
        .env("RAWALITE_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let printed = common::stdout(&out);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        printed.contains("big: compiled in") && printed.contains("small: compiled in"),
        "{printed}"
    );
    // `doctor` says which guests a start would still have to compile.
    let doctor = |cache: &std::path::Path| {
        let out = std::process::Command::new(common::bin())
            .args(["doctor", "--manifest"])
            .arg(&manifest)
            .env("RAWALITE_CACHE_DIR", cache)
            .output()
            .unwrap();
        common::stdout(&out)
    };
    let said = doctor(&cache);
    assert!(said.contains("every guest is compiled"), "{said}");
    let said = doctor(&dir.path().join("cache-3"));
    assert!(
        said.contains("WARN  not compiled yet: big, small;"),
        "{said}"
    );
    assert!(said.contains("`rawalite compile` first"), "{said}");

    let served = Served::start_compiling(&manifest, &dir.path().join("data"), &cache);
    assert_eq!(get(&served, "/healthz", None).status, 200);
    assert_eq!(get(&served, "/big/page", None).status, 200);
}

/// An app in `dir` with hello at `/page`, from a copy of its component.
pub(super) fn hello_app(dir: &std::path::Path) {
    std::fs::copy(common::guest("hello"), dir.join("page.wasm")).unwrap();
    std::fs::write(
        dir.join("rawalite.toml"),
        "[app]\nname = \"h\"\ndata_dir = \"data\"\n\n[[guest]]\nname = \"page\"\ncomponent = \"page.wasm\"\nroute = \"/page\"\n",
    )
    .unwrap();
}

#[test]
fn watch_reports_a_guest_that_never_loaded_as_unhealthy_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    hello_app(dir.path());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let served = Served::start_with(
        &dir.path().join("rawalite.toml"),
        &dir.path().join("data"),
        &common::shared_cache(),
        &["--watch", "--log-format", "json"],
        &[("RUST_LOG", "info")],
        log.into(),
    );
    assert_eq!(get(&served, "/healthz", None).status, 200);
    // A second guest whose component does not exist: never loaded.
    let manifest = dir.path().join("rawalite.toml");
    let more = std::fs::read_to_string(&manifest).unwrap()
        + "\n[[guest]]\nname = \"ghost\"\ncomponent = \"ghost.wasm\"\nroute = \"/ghost\"\n";
    replace(&manifest, more.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = get(&served, "/healthz", None);
        if r.status != 200 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("\"ghost\":\"not loaded\""), "{}", r.body);
    // Every log line is one JSON object (the log is written out within a
    // moment, not at once).
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let waited = std::time::Instant::now();
    while !log().contains("reload failed") {
        assert!(waited.elapsed() < Duration::from_secs(10), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&served, "/page/last", None).status, 200);
    drop(served);
    for line in log().lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["level"].is_string(), "{line}");
    }
    // The request just before SIGTERM is logged: the log is written out
    // at exit.
    assert!(
        log().contains(r#""method":"GET","path":"/page/last","status":200"#),
        "{}",
        log()
    );
}
