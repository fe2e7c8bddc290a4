//! TypeScript guests, built with componentize-qjs by `rawalite build`: the
//! SDK's conveniences, its typed errors, the host's time and entropy, a bug
//! stopped with its message and stack, `console` into the log, and the
//! import surface narrowed to the grants.

use crate::common;

use common::{ProbeApp, assert_code, get, get_with, guest, json, rawalite, stderr};
use rawalite_host::capabilities::ErrorCode;
use rawalite_host::capabilities::session::Caller;
use rawalite_host::runtime::{Outcome, Stopped};
use std::sync::OnceLock;

fn app() -> &'static ProbeApp {
    static APP: OnceLock<ProbeApp> = OnceLock::new();
    APP.get_or_init(|| {
        let probe = guest("ts-probe").display().to_string();
        let pdf = guest("invoice-pdf").display().to_string();
        let f = ProbeApp::open(&format!(
            "[paths]\nscratch = \"scratch\"\n\n\
             [[guest]]\nname = \"ts-probe\"\ncomponent = \"{probe}\"\n\
             [guest.db]\nread = [\"customers\"]\n\
             [guest.paths]\nscratch = {{ access = \"read-write\", quota = \"1 MiB\" }}\n\n\
             [[guest]]\nname = \"invoice-pdf\"\ncomponent = \"{pdf}\"\nroute = \"/invoices/pdf\"\n\
             [guest.db]\nread = [\"customers\", \"invoices\", \"invoice_items\"]\n"
        ));
        f.db()
            .execute_batch(
                "INSERT INTO customers (id, name) VALUES (1, 'Ada <Lovelace>'), (2, 'Bob');",
            )
            .unwrap();
        f
    })
}

/// `src/app.ts:N`, where N is the line of ts-probe's source holding `needle`.
fn probe_line(needle: &str) -> String {
    common::sdk::line_of("ts-probe", "src/app.ts", needle)
}

fn render(guest: &str, req: &rawalite_host::capabilities::Request) -> Outcome {
    app().guest(guest).render(req, Caller::default()).outcome
}

#[test]
fn request_query_form_and_headers_read_as_in_rust() {
    common::sdk::request_reads_as_in_rust(app(), "ts-probe");
}

#[test]
fn escape_matches_the_rust_sdk() {
    common::sdk::escape_matches_rust(app(), "ts-probe");
}

#[test]
fn every_kind_of_value_crosses_as_typed_rows() {
    let row = json(render("ts-probe", &get("/values")));
    assert_eq!(row["n"], serde_json::Value::Null);
    assert_eq!(row["i"], -(2_i64.pow(53)) + 1);
    assert_eq!(row["r"], 1.5);
    assert_eq!(row["t"], "grüße <&> 😀", "UTF-8 both ways, astral too");
    assert_eq!(row["b"], "00ff");
    assert_eq!(row["yes"], 1);
    assert_eq!(row["big"], 2_i64.pow(40), "a bigint parameter");
    let customers = json(render(
        "ts-probe",
        &get_with("/customers", &[("limit", "5")]),
    ));
    assert_eq!(customers["columns"], serde_json::json!(["id", "name"]));
    assert_eq!(
        customers["names"],
        serde_json::json!(["Ada <Lovelace>", "Bob"])
    );
}

#[test]
fn the_time_and_entropy_are_the_hosts_on_every_request() {
    let first = json(render("ts-probe", &get("/fresh")));
    let second = json(render("ts-probe", &get("/fresh")));
    for key in ["random", "bytes", "uuid"] {
        assert_ne!(first[key], second[key], "{key} repeated: {first} {second}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    for row in [&first, &second] {
        let ms = row["now"].as_f64().unwrap();
        assert!((now - ms).abs() < 60_000.0, "{ms} is not now ({now})");
        let date = row["date"].as_str().unwrap();
        assert!(date.starts_with("20") && date.ends_with('Z'), "{date}");
        let uuid = row["uuid"].as_str().unwrap();
        assert!(uuid.len() == 36 && uuid.as_bytes()[14] == b'4', "{uuid}");
        let random = row["random"].as_f64().unwrap();
        assert!((0.0..1.0).contains(&random), "{random}");
        assert!(row["elapsed"].as_f64().unwrap() >= 0.0, "{row}");
    }
    assert!(second["now"].as_f64() >= first["now"].as_f64());
}

#[test]
fn a_capability_error_is_a_typed_error_that_names_the_grant() {
    assert_code(
        render("ts-probe", &get("/denied")),
        ErrorCode::Denied,
        "invoices",
    );
    assert_code(
        render("ts-probe", &get("/nowhere")),
        ErrorCode::NotFound,
        "no route /nowhere",
    );
    let caught = json(render("ts-probe", &get("/caught")));
    assert_eq!(caught["code"], "denied");
    assert!(
        caught["message"]
            .as_str()
            .unwrap()
            .contains("db.read grant"),
        "{caught}"
    );
}

#[test]
fn paths_and_session_work_through_the_sdk() {
    common::sdk::paths_and_session_work(app(), "ts-probe");
}

#[test]
fn an_uncaught_exception_stops_the_guest_with_its_message_and_the_next_request_works() {
    match render("ts-probe", &get("/crash")) {
        Outcome::Stopped(Stopped::Panic { message, location }) => {
            assert!(message.starts_with("TypeError: "), "{message}");
            // The line of the TypeScript source, through the bundle's source map.
            assert_eq!(location, Some(probe_line("].name)")));
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    for (route, want) in [
        ("/throw", "uncaught a string, not an Error"),
        (
            "/wrong",
            "TypeError: render must return a Response (e.g. `Response.html(page)`)",
        ),
    ] {
        match render("ts-probe", &get(route)) {
            Outcome::Stopped(Stopped::Panic { message, .. }) => assert_eq!(message, want),
            other => panic!("{route}: expected a panic, got {other:?}"),
        }
    }
    let again = json(render("ts-probe", &get("/user")));
    assert_eq!(again["user"], serde_json::Value::Null);
}

#[test]
fn console_goes_to_the_log_and_the_stack_with_it() {
    let f = app();
    let empty = f.dir.path().join("empty-body");
    std::fs::write(&empty, "").unwrap();
    let out = common::render_post(f, "ts-probe", &empty, "/crash", "rawalite::guest=info");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let line = probe_line("].name)");
    assert!(
        err.contains(&format!("stopped: panic at {line}: TypeError")),
        "{err}"
    );
    // The stack names the sources' lines, the app's and the SDK's.
    assert!(err.contains(&format!("({line})")), "the stack: {err}");
    assert!(
        err.contains("(target/rawalite-sdk/guest-sdk-ts/index.ts:"),
        "the stack: {err}"
    );
    let out = common::render_post(f, "ts-probe", &empty, "/print", "rawalite::guest=info");
    let err = stderr(&out);
    assert!(err.contains(r#"hello from typescript {\"n\":1}"#), "{err}");
    assert!(err.contains("to stderr"), "{err}");
}

#[test]
fn console_is_held_to_the_output_caps() {
    common::sdk::output_is_held_to_the_caps(app(), "ts-probe");
}

#[test]
fn a_typescript_guest_imports_only_what_its_manifest_grants() {
    let cache = tempfile::tempdir().unwrap();
    let out = rawalite(
        &["inspect", guest("invoice-pdf").to_str().unwrap()],
        cache.path(),
    );
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for import in [
        "rawalite:bridge/db",
        "rawalite:bridge/session",
        "rawalite:bridge/clock",
    ] {
        assert!(text.contains(import), "{import} missing: {text}");
    }
    assert!(!text.contains("rawalite:bridge/paths"), "{text}");
    assert!(!text.contains("wasi:"), "no WASI at all: {text}");
}
