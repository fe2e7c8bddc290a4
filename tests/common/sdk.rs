//! What every guest SDK promises alike (Python, TypeScript): each check
//! renders through the SDK's probe guest (`python-probe`, `ts-probe`),
//! whose routes are the same, and asserts what the Rust SDK does.

use super::{ProbeApp, body, get, get_with, json, render_post, stderr};
use rawalite_host::capabilities::Request;
use rawalite_host::capabilities::session::Caller;
use rawalite_host::runtime::Outcome;

/// `FILE:N`, where N is the line of `guests/<probe>/FILE` holding `needle`:
/// where the SDK says a bug is.
pub fn line_of(probe: &str, file: &str, needle: &str) -> String {
    let path = super::workspace().join("guests").join(probe).join(file);
    let source = std::fs::read_to_string(&path).unwrap();
    let n = source
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` is not in {}", path.display()))
        + 1;
    format!("{file}:{n}")
}

fn render(app: &ProbeApp, probe: &str, req: &Request) -> Outcome {
    app.guest(probe).render(req, Caller::default()).outcome
}

/// `/echo`: the query (repeated keys kept), a form body, headers, `link`.
pub fn request_reads_as_in_rust(app: &ProbeApp, probe: &str) {
    let mut req = get_with("/echo", &[("q", "1"), ("name", "  Ada "), ("q", "2")]);
    req.method = "POST".into();
    req.base = "/p".into();
    req.headers = vec![("user-agent".into(), "tester".into())];
    req.body = b"city=K%C3%B6ln&tag=a+b&tag=&broken=%zz".to_vec();
    let page = json(render(app, probe, &req));
    assert_eq!(page["query"], serde_json::json!(["1", "2"]));
    assert_eq!(page["name"], "Ada");
    assert_eq!(page["post"], true);
    assert_eq!(page["agent"], "tester");
    assert_eq!(page["link"], "/p/x");
    assert_eq!(
        page["form"],
        serde_json::json!([
            ["city", "Köln"],
            ["tag", "a b"],
            ["tag", ""],
            ["broken", "%zz"]
        ])
    );
}

/// `/escape`: the five characters the Rust SDK escapes.
pub fn escape_matches_rust(app: &ProbeApp, probe: &str) {
    let text = r#"<script>alert('x' & "y")</script>"#;
    let out = body(render(app, probe, &get_with("/escape", &[("text", text)])));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
    );
}

/// `/files` writes and lists the `scratch` root; `/user` reads the session.
pub fn paths_and_session_work(app: &ProbeApp, probe: &str) {
    let files = json(render(
        app,
        probe,
        &get_with("/files", &[("text", "grüße")]),
    ));
    assert_eq!(files["read"], "grüße");
    assert_eq!(files["granted"], serde_json::json!(["scratch"]));
    assert_eq!(files["writable"], true);
    assert_eq!(files["entries"][0]["name"], "note.txt");
    assert_eq!(files["entries"][0]["kind"], "file");
    assert_eq!(
        std::fs::read_to_string(app.data_path("scratch/note.txt")).unwrap(),
        "grüße"
    );
    let who = json(render(app, probe, &get("/user")));
    assert_eq!(who, serde_json::json!({"user": null, "admin": false}));
}

/// `/flood` prints 5,000 lines: 64 reach the log, then one summary.
pub fn output_is_held_to_the_caps(app: &ProbeApp, probe: &str) {
    let empty = app.dir.path().join(format!("empty-flood-{probe}"));
    std::fs::write(&empty, "").unwrap();
    let out = render_post(
        app,
        probe,
        &empty,
        "/flood?lines=5000",
        "rawalite::guest=info",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = err.lines().filter(|l| l.contains("line=\"line ")).count();
    assert_eq!(lines, 64, "{err}");
    assert!(err.contains("was not logged"), "one summary: {err}");
}
