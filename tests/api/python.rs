//! Python guests, built with componentize-py by `rawalite build`: the SDK's
//! conveniences, its typed errors, a bug stopped with its line, and the
//! import surface narrowed to the grants. One app for the whole file: a
//! Python component takes seconds to compile.

use crate::common;

use common::{ProbeApp, assert_code, body, get, get_with, guest, json, rawalite, stderr};
use rawalite_host::capabilities::ErrorCode;
use rawalite_host::capabilities::session::Caller;
use rawalite_host::runtime::{Outcome, Stopped};
use std::sync::OnceLock;

fn app() -> &'static ProbeApp {
    static APP: OnceLock<ProbeApp> = OnceLock::new();
    APP.get_or_init(|| {
        let probe = guest("python-probe").display().to_string();
        let reports = guest("reports").display().to_string();
        let f = ProbeApp::open(&format!(
            "[paths]\nscratch = \"scratch\"\n\n\
             [[guest]]\nname = \"python-probe\"\ncomponent = \"{probe}\"\n\
             [guest.db]\nread = [\"customers\"]\n\
             [guest.paths]\nscratch = {{ access = \"read-write\", quota = \"1 MiB\" }}\n\n\
             [[guest]]\nname = \"reports\"\ncomponent = \"{reports}\"\nroute = \"/reports\"\n\
             [guest.db]\nread = [\"customers\", \"invoices\"]\n"
        ));
        let db = f.db();
        db.execute_batch(
            "INSERT INTO customers (id, name) VALUES (1, 'Ada <Lovelace>'), (2, 'Bob');
             INSERT INTO invoices (number, customer_id, issued_on, status, total_cents) VALUES
               (1, 1, '2026-01-15', 'paid', 150000), (2, 1, '2026-02-03', 'open', 2500),
               (3, 2, '2026-02-20', 'paid', 1000), (4, 2, '2025-12-01', 'paid', 99);",
        )
        .unwrap();
        f
    })
}

/// `app.py:N`, where N is the line of python-probe's source holding `needle`.
fn probe_line(needle: &str) -> String {
    common::sdk::line_of("python-probe", "app.py", needle)
}

fn render(guest: &str, req: &rawalite_host::capabilities::Request) -> Outcome {
    app().guest(guest).render(req, Caller::default()).outcome
}

#[test]
fn request_query_form_and_headers_read_as_in_rust() {
    common::sdk::request_reads_as_in_rust(app(), "python-probe");
}

#[test]
fn escape_matches_the_rust_sdk() {
    common::sdk::escape_matches_rust(app(), "python-probe");
}

#[test]
fn every_kind_of_value_crosses_the_packed_rows() {
    let row = json(render("python-probe", &get("/values")));
    assert_eq!(row["n"], serde_json::Value::Null);
    assert_eq!(row["i"], i64::MIN);
    assert_eq!(row["r"], 1.5);
    assert_eq!(row["t"], "grüße <&>");
    assert_eq!(row["b"], "00ff");
    assert_eq!(row["yes"], 1);
    let customers = json(render(
        "python-probe",
        &get_with("/customers", &[("limit", "5")]),
    ));
    assert_eq!(customers["columns"], serde_json::json!(["id", "name"]));
    assert_eq!(
        customers["names"],
        serde_json::json!(["Ada <Lovelace>", "Bob"])
    );
}

#[test]
fn the_time_and_random_numbers_come_from_sqlite() {
    let row = json(render("python-probe", &get("/now")));
    let now = row["now"].as_str().unwrap();
    assert!(
        now.len() == 20 && now.starts_with("20") && now.ends_with('Z'),
        "{now}"
    );
    assert!(row["r"].is_i64(), "{row}");
}

#[test]
fn a_capability_error_is_a_typed_error_that_names_the_grant() {
    assert_code(
        render("python-probe", &get("/denied")),
        ErrorCode::Denied,
        "invoices",
    );
    assert_code(
        render("python-probe", &get("/nowhere")),
        ErrorCode::NotFound,
        "no route /nowhere",
    );
}

#[test]
fn paths_and_session_work_through_the_sdk() {
    common::sdk::paths_and_session_work(app(), "python-probe");
}

#[test]
fn an_uncaught_exception_stops_the_guest_with_its_line_and_the_next_request_works() {
    match render("python-probe", &get("/crash")) {
        Outcome::Stopped(Stopped::Panic { message, location }) => {
            assert_eq!(message, "KeyError: 'missing'");
            assert_eq!(location, Some(probe_line("{\"not\": \"a response\"}[")));
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    match render("python-probe", &get("/wrong")) {
        Outcome::Stopped(Stopped::Panic { message, location }) => {
            assert_eq!(
                message,
                "TypeError: render must return a Response, not dict"
            );
            // Nothing was raised: where the renderer is defined.
            assert_eq!(location, Some(probe_line("def render(")));
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    let again = json(render("python-probe", &get("/user")));
    assert_eq!(again["user"], serde_json::Value::Null);
}

#[test]
fn print_goes_to_the_log_and_the_traceback_with_it() {
    let f = app();
    let empty = f.dir.path().join("empty-body");
    std::fs::write(&empty, "").unwrap();
    let out = common::render_post(f, "python-probe", &empty, "/crash", "rawalite::guest=info");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("Traceback (most recent call last):"), "{err}");
    let line = probe_line("{\"not\": \"a response\"}[");
    let n = line.trim_start_matches("app.py:");
    let frame = format!(r#"File \"app.py\", line {n}, in crash"#);
    assert!(err.contains(&frame), "{err}");
    let stopped = format!("stopped: panic at {line}: KeyError: 'missing'");
    assert!(err.contains(&stopped), "{err}");
    let out = common::render_post(f, "python-probe", &empty, "/print", "rawalite::guest=info");
    assert!(
        stderr(&out).contains("hello from python"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_reports_page_sums_per_month_and_customer_and_escapes_names() {
    let page = String::from_utf8(body(render("reports", &get("/")))).unwrap();
    // January 1,500.00 paid; February 25.00 open + 10.00 paid; December 2025 0.99.
    for expected in [
        "<td>2026-02</td><td class=\"num\">2</td><td class=\"num\">35.00</td><td class=\"num\">10.00</td>",
        "<td>2026-01</td><td class=\"num\">1</td><td class=\"num\">1,500.00</td>",
        "<td>2025-12</td>",
        "Ada &lt;Lovelace&gt;</a></td><td class=\"num\">2</td><td class=\"num\">1,525.00</td><td class=\"num\">25.00</td>",
        "<td class=\"num\">4</td><td class=\"num\">1,535.99</td>",
    ] {
        assert!(page.contains(expected), "`{expected}` not in {page}");
    }
    let year = String::from_utf8(body(render("reports", &get("/?year=2025")))).unwrap();
    assert!(
        year.contains("<td>2025-12</td>") && !year.contains("2026-01</td>"),
        "{year}"
    );
    // A year that is not in the data shows every year, not an error.
    let odd = body(render("reports", &get("/?year=%27%20OR%201")));
    assert!(String::from_utf8(odd).unwrap().contains("2026-01"));
}

#[test]
fn a_python_guest_imports_only_what_its_manifest_grants() {
    let cache = tempfile::tempdir().unwrap();
    let out = rawalite(
        &["inspect", guest("reports").to_str().unwrap()],
        cache.path(),
    );
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for import in [
        "rawalite:bridge/db",
        "rawalite:bridge/session",
        "rawalite:bridge/log",
    ] {
        assert!(text.contains(import), "{import} missing: {text}");
    }
    assert!(!text.contains("rawalite:bridge/paths"), "{text}");
    assert!(!text.contains("wasi:"), "no WASI at all: {text}");
}

/// `rawalite render --trace ARGS` with the app's manifest.
fn traced(target: &str) -> std::process::Output {
    let f = app();
    std::process::Command::new(common::bin())
        .args(["render", "--trace", "--manifest"])
        .arg(&f.manifest)
        .args(["--guest", "python-probe", target])
        .env("RAWALITE_CACHE_DIR", f.dir.path().join("cache"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn render_trace_lists_each_capability_call_and_what_the_guest_printed() {
    let out = traced("/files?text=hi");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("capability call(s)"), "{err}");
    let write = err
        .lines()
        .find(|l| l.contains(" write ") && l.contains("scratch note.txt"))
        .unwrap_or_else(|| panic!("no write in {err}"));
    assert!(
        write.trim_start().starts_with("paths") && write.contains("µs  ok"),
        "{write}"
    );
    // A denial in the trace names the manifest key that would grant it.
    let err = stderr(&traced("/denied"));
    assert!(
        err.contains("denied: table `invoices` is not in this guest's db.read grant (`read = [...]` under [guest.db]"),
        "{err}"
    );
    // The guest's output, escaped: a traceback on stderr.
    let err = stderr(&traced("/crash"));
    let n = probe_line("{\"not\": \"a response\"}[").replace("app.py:", "");
    let frame = format!("stderr:   File \"app.py\", line {n}, in crash");
    assert!(err.contains(&frame), "{err}");
}

#[test]
fn log_write_is_held_to_the_output_caps() {
    common::sdk::output_is_held_to_the_caps(app(), "python-probe");
}

#[test]
fn the_time_and_entropy_are_the_hosts_on_every_request() {
    let first = json(render("python-probe", &get("/fresh")));
    let second = json(render("python-probe", &get("/fresh")));
    for key in ["random", "early", "urandom", "token", "system"] {
        assert_ne!(first[key], second[key], "{key} repeated: {first} {second}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for row in [&first, &second] {
        let time = row["time"].as_f64().unwrap();
        assert!((now - time).abs() < 60.0, "{time} is not now ({now})");
        let ns = row["time_ns"].as_u64().unwrap() as f64 / 1e9;
        assert!((ns - time).abs() < 60.0, "{row}");
    }
    assert!(second["time_ns"].as_u64() >= first["time_ns"].as_u64());
}
