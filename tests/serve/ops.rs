//! `serve` as an operator runs it: sessions and users changed from the
//! command line, sign-in limits across a crash, `/healthz`, metrics, the
//! compile cache's cap, the log and the audit trail, and a stop.

use super::serve::*;
use super::watch::{eventually, hello_app, replace};
use crate::common;

use common::{Served, agent, demo_manifest};
use std::io::{BufRead, Read, Write};
use std::time::Duration;

/// `rawalite ARGS --data DIR` against a running server's data directory.
fn operate(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let data = dir.join("data");
    common::run(&[args, &["--data", data.to_str().unwrap()]].concat())
}

#[test]
fn an_operator_sees_sessions_ends_them_and_disables_a_user_at_once() {
    let (dir, served) = start();
    let cookie = sign_in(&served);
    assert_eq!(get(&served, "/", Some(&cookie)).status, 200);

    // Who is signed in, from where, never the token.
    let (code, list) = operate(dir.path(), &["session", "list"]);
    assert_eq!(code, 0, "{list}");
    let row = list
        .lines()
        .find(|l| l.contains("admin"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("127.0.0.1"), "{row}");
    let token = cookie.split_once('=').unwrap().1;
    assert!(!list.contains(token), "the token must never show: {list}");
    let id = row.split_whitespace().next().unwrap().to_owned();

    // Revoking the session signs the browser out.
    let (code, out) = operate(dir.path(), &["session", "revoke", &id]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(get(&served, "/", Some(&cookie)).status, 303);
    let (code, out) = operate(dir.path(), &["session", "revoke", &id]);
    assert_eq!(code, 2, "a second revoke finds nothing: {out}");

    // Disabling ends the new session at once and refuses sign-in.
    let cookie = sign_in(&served);
    let (code, out) = operate(dir.path(), &["user", "disable", "admin"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(get(&served, "/", Some(&cookie)).status, 303);
    let refused = post(
        &served,
        "/login",
        None,
        &[("username", "admin"), ("password", &served.admin_password)],
    );
    assert_ne!(refused.status, 303, "a disabled user cannot sign in");
    let (_, users) = operate(dir.path(), &["user", "list"]);
    assert!(users.contains("(disabled)"), "{users}");

    // Enabled again, the same password works.
    let (code, out) = operate(dir.path(), &["user", "enable", "admin"]);
    assert_eq!(code, 0, "{out}");
    let cookie = sign_in(&served);
    assert_eq!(get(&served, "/", Some(&cookie)).status, 200);
    let (code, out) = operate(dir.path(), &["session", "revoke", "--user", "admin"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ended 1 session"), "{out}");
    assert_eq!(get(&served, "/", Some(&cookie)).status, 303);
}

#[test]
fn sign_in_limits_survive_a_crash_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::demo_manifest(dir.path(), false);
    let data = dir.path().join("data");
    let mut served = Served::start(&file, &data, &common::shared_cache());
    let password = served.admin_password.clone();
    let try_password = |served: &Served, password: &str| {
        post(
            served,
            "/login",
            None,
            &[("username", "admin"), ("password", password)],
        )
    };
    for _ in 0..5 {
        assert_ne!(try_password(&served, "wrong password").status, 303);
    }
    let refused = try_password(&served, &password);
    assert_ne!(refused.status, 303, "the pair is stopped: {}", refused.body);

    // Killed after the counts were saved (every 2 s): still stopped.
    std::thread::sleep(Duration::from_millis(2500));
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    let mut served = Served::start(&file, &data, &common::shared_cache());
    let refused = try_password(&served, &password);
    assert_ne!(
        refused.status, 303,
        "forgotten by a crash: {}",
        refused.body
    );

    // A clean stop saves them too.
    served.stop();
    let served = Served::start(&file, &data, &common::shared_cache());
    assert_ne!(
        try_password(&served, &password).status,
        303,
        "forgotten by a restart"
    );
}

#[test]
fn healthz_says_the_database_migrations_and_guests_are_ready() {
    let (_dir, served) = start();
    let r = get(&served, "/healthz", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let health: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["migrations"], "current");
    assert_eq!(health["guests"]["dashboard"], "loaded");
    assert_eq!(health["guests"]["reports"], "loaded");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_security_headers(&r);
}

#[test]
fn metrics_count_requests_renders_stops_denials_and_sign_in_failures_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::demo_manifest(dir.path(), true);
    let served = Served::start_with(
        &file,
        &dir.path().join("data"),
        &common::shared_cache(),
        &["--metrics", "127.0.0.1:0"],
        &[],
        std::process::Stdio::null(),
    );
    let metrics_url = loop {
        let line = served
            .stdout
            .recv_timeout(Duration::from_secs(30))
            .expect("the metrics address");
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_owned();
        }
    };
    let wrong = post(
        &served,
        "/login",
        None,
        &[("username", "admin"), ("password", "not it")],
    );
    assert_ne!(wrong.status, 303);
    let cookie = sign_in(&served);
    assert_eq!(get(&served, "/", Some(&cookie)).status, 200);
    get(
        &served,
        "/probe/db/query?sql=SELECT%20*%20FROM%20invoices",
        None,
    );
    get(&served, "/probe/panic", None);
    // Never on the app's own listener.
    assert_ne!(get(&served, "/metrics", None).status, 200);

    let mut scraped = agent().get(&metrics_url).call().unwrap();
    let text = scraped.body_mut().read_to_string().unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
    };
    assert!(value(r#"rawalite_requests_total{guest="dashboard",status="200"}"#) >= 1.0);
    assert!(value(r#"rawalite_render_seconds_count{guest="dashboard"}"#) >= 1.0);
    assert_eq!(
        value(r#"rawalite_guests_stopped_total{guest="probe",cause="panic"}"#),
        1.0
    );
    assert_eq!(
        value(r#"rawalite_capability_calls_total{guest="probe",capability="db",outcome="denied"}"#),
        1.0
    );
    assert!(
        value(r#"rawalite_capability_calls_total{guest="dashboard",capability="db",outcome="ok"}"#)
            >= 1.0
    );
    assert_eq!(value("rawalite_sign_in_failures_total"), 1.0);
    assert!(value("rawalite_database_bytes") > 0.0);
    value(r#"rawalite_root_bytes{root="exports"}"#);
    // The log's file keeps up: no line dropped.
    assert_eq!(value("rawalite_log_lines_dropped_total"), 0.0);

    // The metrics listener answers only loopback names on loopback...
    let evil = agent()
        .get(&metrics_url)
        .header("Host", "evil.example")
        .call()
        .unwrap();
    assert_eq!(evil.status(), 421);
    // ...and holds few connections: half-sent heads past its cap get 503,
    // while the app's own port serves on.
    let addr: std::net::SocketAddr = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let held: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut refused = std::net::TcpStream::connect(addr).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = [0u8; 12];
    refused.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
    assert_eq!(get(&served, "/healthz", None).status, 200);
    drop(held);
}

#[test]
fn the_compile_cache_keeps_what_is_served_and_drops_the_rest_past_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::copy(common::guest("hello"), dir.path().join("page.wasm")).unwrap();
    std::fs::write(
        dir.path().join("rawalite.toml"),
        "[app]\nname = \"c\"\ndata_dir = \"data\"\n\n[[guest]]\nname = \"page\"\ncomponent = \"page.wasm\"\nroute = \"/page\"\n",
    )
    .unwrap();
    let artifacts = || -> usize {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
    };
    // A cap of one byte: only what a route uses may stay.
    let served = Served::start_with(
        &dir.path().join("rawalite.toml"),
        &dir.path().join("data"),
        &cache,
        &["--watch"],
        &[("RAWALITE_CACHE_MAX", "1")],
        std::process::Stdio::null(),
    );
    assert_eq!(artifacts(), 1, "hello's artifact, in use, stays");
    replace(
        &dir.path().join("page.wasm"),
        &std::fs::read(common::guest("probe")).unwrap(),
    );
    let r = eventually(&served, "/page/echo", "\"path\":\"/echo\"");
    assert_eq!(r.status, 200, "{}", r.body);
    // Pruning follows the swap; give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while artifacts() != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(artifacts(), 1, "only the probe's artifact is left");
}

#[test]
fn a_log_nobody_reads_never_holds_up_a_request() {
    let dir = tempfile::tempdir().unwrap();
    hello_app(dir.path());
    // stderr is a pipe this test never reads: it is full after a few
    // hundred access lines, and a write to it would wait forever.
    let mut served = Served::start_with(
        &dir.path().join("rawalite.toml"),
        &dir.path().join("data"),
        &common::shared_cache(),
        &[],
        &[("RUST_LOG", "info")],
        std::process::Stdio::piped(),
    );
    let agent = agent();
    for i in 0..3000 {
        let r = agent
            .get(served.url(&format!("/page/{i}")))
            .call()
            .expect("the server answers");
        assert_eq!(r.status(), 200);
    }
    // Nor its exit: the last write is given a few seconds, not forever.
    assert!(served.stop().success());
}

/// A log destination that stalls (a pipe nobody reads) loses ordinary
/// lines, counted, but never the evidence: denied calls, sign-ins (right
/// and wrong), sign-outs and a revoke are all there once it is read, and
/// no request waited for it meanwhile.
#[test]
fn audit_evidence_survives_a_stalled_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), false);
    let mut manifest = std::fs::read_to_string(&file).unwrap();
    manifest += &format!(
        "\n[[guest]]\nname = \"flood\"\ncomponent = \"{}\"\nroute = \"/flood\"\n",
        common::guest("flood").display()
    );
    std::fs::write(&file, manifest).unwrap();
    let data = dir.path().join("data");
    let mut served = Served::start_with(
        &file,
        &data,
        &common::shared_cache(),
        &[],
        &[("RUST_LOG", "info")],
        std::process::Stdio::piped(),
    );
    let stderr = served.child.stderr.take().unwrap();
    // 64 lines of guest output per request: some 16 MiB in all, far past
    // the log's 4 MiB and the pipe's 64 KiB.
    for _ in 0..2000 {
        assert_eq!(get(&served, "/flood/print?lines=64", None).status, 200);
    }
    let mut denied = 0;
    for _ in 0..5 {
        assert_eq!(get(&served, "/flood/calls?n=3", None).status, 200);
        denied += 3;
    }
    let wrong = post(
        &served,
        "/login",
        None,
        &[("username", "admin"), ("password", "not the password")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let cookie = sign_in(&served);
    assert_eq!(
        post(&served, "/login/logout", Some(&cookie), &[]).status,
        303
    );
    // Read at last: everything kept comes out, then the server stops.
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_string(&mut log);
        log
    });
    served.stop();
    let log = reader.join().unwrap();
    let count = |needles: &[&str]| {
        log.lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    };
    assert_eq!(
        count(&[
            "rawalite::audit",
            "capability=\"paths\"",
            "outcome=\"denied\""
        ]),
        denied
    );
    assert_eq!(count(&["op=\"login\"", "outcome=\"ok\""]), 1);
    assert_eq!(count(&["op=\"login\"", "outcome=\"unauthenticated\""]), 1);
    assert_eq!(count(&["op=\"logout\"", "outcome=\"ok\""]), 1);
    assert_eq!(
        count(&["log lines were dropped because the log's destination did not keep up"]),
        1,
        "ordinary lines were dropped: the destination did stall"
    );
    // A revoke from the command line writes its event too.
    let out = std::process::Command::new(common::bin())
        .args(["session", "revoke", "--user", "admin", "--manifest"])
        .arg(&file)
        .arg("--data")
        .arg(&data)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let revoked = common::stderr(&out);
    assert!(
        revoked.contains("op=\"revoke\"") && revoked.contains("username=\"admin\""),
        "{revoked}"
    );
}

/// Requests whose connections the kernel completed, but `serve` had not
/// taken from its listener, when SIGTERM came (here: sent while the
/// process is stopped, as on a machine too busy to run it) are answered,
/// not reset; so is a request sent on a kept-alive connection then.
#[test]
fn requests_waiting_to_be_read_at_sigterm_are_answered() {
    let (_dir, mut served) = start();
    let address = served.base.trim_start_matches("http://").to_owned();
    let request = format!("GET /login HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    // A connection kept alive after one answer, idle between requests.
    let mut kept = std::net::TcpStream::connect(&address).unwrap();
    write!(kept, "GET /login HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut kept = std::io::BufReader::new(kept);
    let mut line = String::new();
    let mut length = 0;
    loop {
        line.clear();
        kept.read_line(&mut line).unwrap();
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    kept.read_exact(&mut body).unwrap();

    let pid = served.child.id().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    let mut waiting: Vec<Box<dyn Read>> = (0..8)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            Box::new(stream) as Box<dyn Read>
        })
        .collect();
    kept.get_mut().write_all(request.as_bytes()).unwrap();
    kept.get_ref()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    waiting.push(Box::new(kept));
    signal("-TERM");
    signal("-CONT");
    for (i, stream) in waiting.iter_mut().enumerate() {
        let mut answer = String::new();
        let read = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "request {i} was not answered: {read:?} {answer:?}"
        );
    }
    assert!(served.child.wait().unwrap().success());
}
