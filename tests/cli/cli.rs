//! The `rawalite` command line as a user and a reviewer meet it: exit codes,
//! one-line errors, `inspect`, and `render` with and without a manifest.

use crate::common;

use common::{guest, rawalite, stderr, stdout, workspace};
use std::path::Path;

fn cache() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

/// A load error is exit 2 with exactly one line on stderr and no panic.
fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 2, "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn render_hello_prints_the_page() {
    let c = cache();
    let hello = guest("hello");
    let out = rawalite(&["render", hello.to_str().unwrap(), "/greet?x=1"], c.path());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("<p>GET /greet</p>"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn render_include_shows_status_and_headers() {
    let c = cache();
    let hello = guest("hello");
    let out = rawalite(
        &[
            "render",
            "-i",
            "--method",
            "post",
            hello.to_str().unwrap(),
            "/",
        ],
        c.path(),
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("HTTP 200\ncontent-type: text/html"),
        "{text}"
    );
    assert!(text.contains("<p>POST /</p>"), "{text}");
}

#[test]
fn guest_error_exits_3_with_code_and_message() {
    let c = cache();
    let probe = guest("probe");
    let out = rawalite(
        &["render", probe.to_str().unwrap(), "/no-such-route"],
        c.path(),
    );
    assert_eq!(code(&out), 3);
    assert_eq!(
        stderr(&out).trim(),
        "error: not-found: the probe has no route /no-such-route"
    );
}

#[test]
fn capability_call_without_grant_exits_3_denied() {
    let c = cache();
    let probe = guest("probe");
    let out = rawalite(
        &[
            "render",
            probe.to_str().unwrap(),
            "/db/query?sql=select%201",
        ],
        c.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out).trim(),
        "error: denied: this guest has no db grant ([guest.db] in the manifest)"
    );
}

#[test]
fn stopped_guests_exit_4_and_say_why() {
    let c = cache();
    let probe = guest("probe");
    let probe = probe.to_str().unwrap();
    for (route, why) in [
        ("/spin", "stopped: deadline"),
        ("/alloc?mb=500", "stopped: memory"),
        ("/panic", "stopped: panic at guests/probe/src/lib.rs:"),
        ("/panic", ": the probe was asked to panic"),
        ("/big?mb=9", "stopped: response too large"),
    ] {
        let out = rawalite(&["render", probe, route], c.path());
        assert_eq!(code(&out), 4, "{route}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{route}: {}", stderr(&out));
    }
}

#[test]
fn big_response_over_the_cap_is_too_large_even_with_memory_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"t\"\n\n[[guest]]\nname = \"probe\"\ncomponent = \"{}\"\nroute = \"/probe\"\n[guest.limits]\nmemory = \"512 MiB\"\n",
            guest("probe").display()
        ),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let out = rawalite(
        &["render", "--manifest", m, "--guest", "probe", "/big?mb=100"],
        dir.path(),
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("response too large"),
        "{}",
        stderr(&out)
    );

    // The guest sees its route as `base` and the rest as `path`.
    let out = rawalite(
        &[
            "render",
            "--manifest",
            m,
            "--guest",
            "probe",
            "/echo?a=b%20c",
        ],
        dir.path(),
    );
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["base"], "/probe");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], serde_json::json!([["a", "b c"]]));
}

#[test]
fn missing_file_is_exit_2() {
    let c = cache();
    let out = rawalite(&["render", "/nonexistent/x.wasm", "/"], c.path());
    assert_one_line_error(&out, "cannot read /nonexistent/x.wasm");
}

#[test]
fn random_file_is_exit_2() {
    let c = cache();
    let file = c.path().join("random.wasm");
    std::fs::write(
        &file,
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out = rawalite(&["render", file.to_str().unwrap(), "/"], c.path());
    assert_one_line_error(&out, "is not a WebAssembly file");
    let out = rawalite(&["inspect", file.to_str().unwrap()], c.path());
    assert_one_line_error(&out, "is not a WebAssembly file");
}

#[test]
fn core_module_is_exit_2() {
    let c = cache();
    let file = c.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&file, b"\0asm\x01\0\0\0").unwrap();
    let out = rawalite(&["render", file.to_str().unwrap(), "/"], c.path());
    assert_one_line_error(&out, "is a core WebAssembly module, not a component");
}

#[test]
fn truncated_component_is_exit_2() {
    let c = cache();
    let bytes = std::fs::read(guest("hello")).unwrap();
    let file = c.path().join("truncated.wasm");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let out = rawalite(&["render", file.to_str().unwrap(), "/"], c.path());
    assert_one_line_error(&out, "is not a valid component");
}

#[test]
fn forbidden_import_is_refused_by_render_and_inspect() {
    let c = cache();
    let hostile = guest("forbidden-import");
    let out = rawalite(&["render", hostile.to_str().unwrap(), "/"], c.path());
    assert_one_line_error(&out, "wasi:sockets/tcp@0.2");

    let out = rawalite(&["inspect", hostile.to_str().unwrap()], c.path());
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.contains("REFUSED") && l.contains("wasi:sockets/tcp@")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("allowed") && l.contains("wasi:cli/stdout@")),
        "{text}"
    );
}

#[test]
fn inspect_lists_the_bridge_imports_and_the_render_export() {
    let c = cache();
    let probe = guest("probe");
    let out = rawalite(&["inspect", "--json", probe.to_str().unwrap()], c.path());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let imports: Vec<&str> = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for cap in ["db", "paths", "session"] {
        assert!(
            imports.contains(&format!("rawalite:bridge/{cap}@0.1.0").as_str()),
            "{imports:?}"
        );
    }
    assert_eq!(report["refused"], 0);
    assert_eq!(report["exports"][0]["name"], "render");
}

#[test]
fn bad_manifest_is_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(&manifest, "[app]\nname = \"t\"\n\n[[guest]]\nname = \"x\"\ncomponent = \"x.wasm\"\n[guest.limits]\nmemroy = \"1 MiB\"\n").unwrap();
    let out = rawalite(
        &[
            "render",
            "--manifest",
            manifest.to_str().unwrap(),
            "--guest",
            "x",
            "/",
        ],
        dir.path(),
    );
    assert_one_line_error(
        &out,
        "rawalite.toml:8: guest[0].limits.memroy: unknown field `memroy`",
    );
}

#[test]
fn unknown_guest_lists_the_guests() {
    let out = rawalite(
        &[
            "render",
            "--manifest",
            workspace().join("rawalite.toml").to_str().unwrap(),
            "--guest",
            "nope",
            "/",
        ],
        Path::new("/tmp"),
    );
    assert_one_line_error(&out, "no guest named `nope`");
}

#[test]
fn every_command_has_help() {
    let c = cache();
    for args in [
        &["--help"][..],
        &["render", "--help"],
        &["inspect", "--help"],
        &["serve", "--help"],
        &["audit", "--help"],
        &["new", "--help"],
        &["build", "--help"],
        &["compile", "--help"],
        &["migrate", "--help"],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["user", "disable", "--help"],
        &["session", "list", "--help"],
        &["session", "revoke", "--help"],
        &["backup", "--help"],
        &["restore", "--help"],
        &["doctor", "--help"],
    ] {
        let out = rawalite(args, c.path());
        assert_eq!(code(&out), 0, "{args:?}");
        assert!(stdout(&out).contains("Usage: rawalite"), "{args:?}");
    }
}

#[test]
fn usage_error_is_exit_2() {
    let c = cache();
    let out = rawalite(&["render"], c.path());
    assert_eq!(code(&out), 2);
    let out = rawalite(&["render", "--bogus"], c.path());
    assert_eq!(code(&out), 2);
}

#[test]
fn audit_of_the_demo_app_shows_least_privilege_and_flags_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::demo_manifest(dir.path(), false);
    let out = rawalite(
        &["audit", "--manifest", file.to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let guest = |name: &str| {
        report["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    let customers = guest("customers");
    assert_eq!(customers["db"]["write"], serde_json::json!(["customers"]));
    assert_eq!(customers["session"]["require_login"], true);
    assert_eq!(customers["imports"], serde_json::json!(["db", "session"]));
    assert_eq!(customers["sha256"].as_str().unwrap().len(), 64);
    let exports = guest("exports");
    assert_eq!(exports["paths"][0]["root"], "exports");
    assert_eq!(exports["paths"][0]["access"], "read-write");
    assert_eq!(exports["paths"][0]["quota"], 50 << 20);
    assert_eq!(guest("login")["db"]["read"], serde_json::json!([]));
    // Only the invoices' pages may post to exports, besides its own.
    assert_eq!(
        exports["browser"]["accept_from"],
        serde_json::json!(["invoices"])
    );
    for g in report["guests"].as_array().unwrap() {
        // No guest of the demo runs script in the browser.
        assert_eq!(
            g["browser"]["scripts"],
            serde_json::json!([]),
            "{}",
            g["name"]
        );
        assert_eq!(g["flags"], serde_json::json!([]), "{}", g["name"]);
        // Only the sign-in screen may sign users in and out.
        assert_eq!(g["session"]["login"], g["name"] == "login", "{}", g["name"]);
        assert_eq!(g["limits"]["db_bytes"], 16 << 20);
        assert!(g["limits"]["worst_case_bytes"].as_u64().unwrap() > 128 << 20);
    }
    let text = stdout(&rawalite(
        &["audit", "--manifest", file.to_str().unwrap()],
        dir.path(),
    ));
    assert!(text.contains("guest exports  route /exports"), "{text}");
    assert!(
        text.contains("paths      exports (read-write, quota 50.0 MiB)"),
        "{text}"
    );
    assert!(
        text.contains("session    anyone; may sign users in and out"),
        "{text}"
    );
    assert!(
        text.contains(
            "browser    scripts -; forms and requests from its own pages and those of invoices"
        ),
        "{text}"
    );
}

#[test]
fn audit_flags_imports_beyond_the_grant_and_grants_beyond_the_imports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rawalite.toml");
    std::fs::write(
        &file,
        format!(
            "[app]\nname = \"t\"\n\n[[guest]]\nname = \"probe\"\ncomponent = \"{}\"\n[guest.db]\nread = [\"customers\"]\n\n[[guest]]\nname = \"hello\"\ncomponent = \"{}\"\n[guest.db]\nread = [\"customers\"]\n\n[[guest]]\nname = \"gone\"\ncomponent = \"missing.wasm\"\n\n[[guest]]\nname = \"hostile\"\ncomponent = \"{}\"\n",
            guest("probe").display(),
            guest("hello").display(),
            guest("forbidden-import").display()
        ),
    )
    .unwrap();
    let out = rawalite(&["audit", "--manifest", file.to_str().unwrap()], dir.path());
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    for flag in [
        "FLAG       imports paths, but the manifest grants it no root",
        "FLAG       is granted tables but does not import db: remove [guest.db]",
        "FLAG       cannot read the component",
        "FLAG       would be refused at load: imports wasi:sockets/tcp@",
    ] {
        assert!(text.contains(flag), "`{flag}` missing in:\n{text}");
    }
}

#[test]
fn compile_names_each_guest_and_fails_on_one_that_cannot_load() {
    let c = cache();
    let manifest = c.path().join("rawalite.toml");
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"c\"\n\n[[guest]]\nname = \"hello\"\ncomponent = \"{}\"\n\n\
             [[guest]]\nname = \"broken\"\ncomponent = \"{}\"\n",
            guest("hello").display(),
            guest("forbidden-import").display()
        ),
    )
    .unwrap();
    let out = rawalite(
        &["compile", "--manifest", manifest.to_str().unwrap()],
        c.path(),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("hello: compiled in"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("error: broken:") && stderr(&out).contains("wasi:sockets"),
        "{}",
        stderr(&out)
    );
    // Compiled already the second time.
    let out = rawalite(
        &["compile", "--manifest", manifest.to_str().unwrap()],
        c.path(),
    );
    assert!(
        stdout(&out).contains("hello: compiled already"),
        "{}",
        stdout(&out)
    );
}
