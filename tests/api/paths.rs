//! The `paths` capability against real directories, driven through the
//! probe: no path leaves its root, access and quotas hold, writes are
//! atomic even when the host is killed mid-write.

use crate::common;

use rawalite_host::capabilities::session::Caller;

use common::{ProbeApp, assert_code, body, err, get_with, json, stderr};
use rawalite_host::app::App;
use rawalite_host::capabilities::{ErrorCode, Request};
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{Guest, Outcome, Runtime};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MANIFEST: &str = r#"
[paths]
files = "files"
archive = "archive"

[[guest]]
name = "writer"
component = "{probe}"
[guest.paths]
files = { access = "read-write", quota = "1 MiB" }

[[guest]]
name = "small"
component = "{probe}"
[guest.paths]
files = { access = "read-write", quota = "10 KiB" }

[[guest]]
name = "reader"
component = "{probe}"
[guest.paths]
archive = { access = "read-only" }

[[guest]]
name = "nogrant"
component = "{probe}"

[[guest]]
name = "big"
component = "{probe}"
[guest.limits]
memory = "512 MiB"
response = "64 MiB"
timeout_ms = 20000
[guest.paths]
files = { access = "read-write", quota = "200 MiB" }

[[guest]]
name = "churner"
component = "{probe}"
[guest.limits]
timeout_ms = 600000
[guest.paths]
files = { access = "read-write", quota = "100 MiB" }
"#;

/// A directory outside every root, with a secret in it.
fn outside(f: &ProbeApp) -> PathBuf {
    let outside = f.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"top secret").unwrap();
    outside
}

fn call(guest: &Guest, route: &str, pairs: &[(&str, &str)], body: &[u8]) -> Outcome {
    let mut req: Request = get_with(route, pairs);
    if !body.is_empty() {
        req.method = "POST".into();
        req.body = body.to_vec();
    }
    guest.render(&req, Caller::default()).outcome
}

fn op(guest: &Guest, op: &str, root: &str, path: &str) -> Outcome {
    call(
        guest,
        &format!("/paths/{op}"),
        &[("root", root), ("path", path)],
        b"",
    )
}

fn write(guest: &Guest, root: &str, path: &str, body: &[u8]) -> Outcome {
    call(
        guest,
        "/paths/write",
        &[("root", root), ("path", path)],
        body,
    )
}

/// Deterministic bytes that are not all alike.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn write_read_list_remove_round_trip() {
    let f = ProbeApp::open(MANIFEST);
    let w = f.guest("writer");
    assert_eq!(json(write(&w, "files", "a.txt", b"hello"))["bytes"], 5);
    assert_eq!(body(op(&w, "read", "files", "a.txt")), b"hello");
    body(op(&w, "mkdir", "files", "reports"));
    body(write(
        &w,
        "files",
        "reports/2026-11.csv",
        b"n,total\n1,100\n",
    ));

    let list = json(op(&w, "list", "files", ""));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "reports"]);
    assert_eq!(list[0]["kind"], "file");
    assert_eq!(list[0]["size"], 5);
    assert_eq!(list[1]["kind"], "directory");
    assert!(list[0]["modified_ms"].as_u64().unwrap() > 1_700_000_000_000);
    let inner = json(op(&w, "list", "files", "reports"));
    assert_eq!(inner[0]["name"], "2026-11.csv");

    assert_code(
        op(&w, "remove", "files", "reports"),
        ErrorCode::Conflict,
        "not empty",
    );
    body(op(&w, "remove", "files", "reports/2026-11.csv"));
    body(op(&w, "remove", "files", "reports"));
    body(op(&w, "remove", "files", "a.txt"));
    assert_eq!(json(op(&w, "list", "files", "")), serde_json::json!([]));
    assert_code(
        op(&w, "read", "files", "a.txt"),
        ErrorCode::NotFound,
        "`a.txt` does not exist in root `files`",
    );
    assert!(
        std::fs::read_dir(f.data_path("files"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn paths_that_try_to_leave_the_root_are_refused() {
    let f = ProbeApp::open(MANIFEST);
    let w = f.guest("writer");
    let long = "x".repeat(2000);
    let deep = vec!["d"; 40].join("/");
    for path in [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../x",
        "..",
        "a\0b",
        long.as_str(),
        deep.as_str(),
        "a//b",
        "",
    ] {
        for o in ["read", "remove", "mkdir"] {
            let e = err(op(&w, o, "files", path));
            assert_eq!(
                e.code,
                ErrorCode::InvalidInput,
                "{o} {path:?}: {}",
                e.message
            );
        }
        let e = err(write(&w, "files", path, b"x"));
        assert_eq!(
            e.code,
            ErrorCode::InvalidInput,
            "write {path:?}: {}",
            e.message
        );
    }
    assert!(
        std::fs::read_dir(f.data_path("files"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn symlinks_out_of_the_root_lead_nowhere() {
    let f = ProbeApp::open(MANIFEST);
    let outside = outside(&f);
    let files = f.data_path("files");
    std::os::unix::fs::symlink(&outside, files.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), files.join("secret")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", files.join("relative")).unwrap();
    let w = f.guest("writer");

    for path in ["escape/secret.txt", "secret", "relative"] {
        assert_code(
            op(&w, "read", "files", path),
            ErrorCode::Denied,
            "leads outside root `files`",
        );
    }
    for refused in [
        op(&w, "list", "files", "escape"),
        write(&w, "files", "escape/new.txt", b"pwned"),
        write(&w, "files", "secret", b"pwned"),
        op(&w, "mkdir", "files", "escape/sub"),
        op(&w, "remove", "files", "escape/secret.txt"),
    ] {
        assert_code(refused, ErrorCode::Denied, "leads outside");
    }

    // Nothing outside changed, and the listing does not follow the links.
    assert_eq!(
        std::fs::read(outside.join("secret.txt")).unwrap(),
        b"top secret"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    let list = json(op(&w, "list", "files", ""));
    assert_eq!(
        list,
        serde_json::json!([]),
        "links out of the root are not listed"
    );
}

#[test]
fn ungranted_roots_get_the_same_answer_whether_they_exist_or_not() {
    let f = ProbeApp::open(MANIFEST);
    let w = f.guest("writer");
    let existing = assert_code(op(&w, "read", "archive", "x"), ErrorCode::Denied, "");
    let missing = assert_code(op(&w, "read", "nosuch", "x"), ErrorCode::Denied, "");
    assert_eq!(
        existing.message,
        "root `archive` is not in this guest's paths grant ([guest.paths] in the manifest)"
    );
    assert_eq!(
        missing.message,
        "root `nosuch` is not in this guest's paths grant ([guest.paths] in the manifest)"
    );

    let none = f.guest("nogrant");
    assert_eq!(
        json(call(&none, "/paths/granted", &[], b"")),
        serde_json::json!([])
    );
    assert_code(
        op(&none, "list", "files", ""),
        ErrorCode::Denied,
        "not in this guest's paths grant",
    );
    assert_eq!(
        json(call(&w, "/paths/granted", &[], b"")),
        serde_json::json!(["files"])
    );
}

#[test]
fn read_only_roots_refuse_every_change() {
    let f = ProbeApp::open(MANIFEST);
    std::fs::write(f.data_path("archive").join("old.txt"), b"kept").unwrap();
    let r = f.guest("reader");
    assert_eq!(
        json(call(&r, "/paths/access", &[("root", "archive")], b"")),
        "read-only"
    );
    assert_eq!(body(op(&r, "read", "archive", "old.txt")), b"kept");
    for refused in [
        write(&r, "archive", "old.txt", b"changed"),
        write(&r, "archive", "new.txt", b"x"),
        op(&r, "remove", "archive", "old.txt"),
        op(&r, "mkdir", "archive", "d"),
    ] {
        assert_code(refused, ErrorCode::Denied, "read-only");
    }
    assert_eq!(
        std::fs::read(f.data_path("archive").join("old.txt")).unwrap(),
        b"kept"
    );
    assert_eq!(
        std::fs::read_dir(f.data_path("archive")).unwrap().count(),
        1
    );
}

#[test]
fn a_write_over_the_quota_is_refused_and_the_old_file_kept() {
    let f = ProbeApp::open(MANIFEST);
    let s = f.guest("small");
    let first = pattern(6 << 10, 1);
    body(write(&s, "files", "a.bin", &first));
    assert_code(
        write(&s, "files", "b.bin", &pattern(6 << 10, 2)),
        ErrorCode::TooLarge,
        "over this guest's quota of 10240",
    );
    // Replacing a file counts only the difference.
    let second = pattern(9 << 10, 3);
    body(write(&s, "files", "a.bin", &second));
    let e = assert_code(
        write(&s, "files", "a.bin", &pattern(11 << 10, 4)),
        ErrorCode::TooLarge,
        "quota",
    );
    assert!(
        !e.message.contains(&f.dir.path().display().to_string()),
        "host path leaked: {}",
        e.message
    );
    assert_eq!(
        std::fs::read(f.data_path("files").join("a.bin")).unwrap(),
        second
    );
    assert!(!f.data_path("files").join("b.bin").exists());
}

#[test]
fn fifty_mebibytes_round_trip_byte_exact() {
    let f = ProbeApp::open(MANIFEST);
    let big = f.guest("big");
    let contents = pattern(50 << 20, 7);
    body(write(&big, "files", "big.bin", &contents));
    let back = body(op(&big, "read", "files", "big.bin"));
    assert!(back == contents, "the file came back different");
    assert_eq!(
        std::fs::read(f.data_path("files").join("big.bin"))
            .unwrap()
            .len(),
        50 << 20
    );
}

#[test]
fn files_over_the_size_limit_are_too_large() {
    let f = ProbeApp::open(MANIFEST);
    let big = f.guest("big");
    std::fs::write(
        f.data_path("files").join("huge.bin"),
        vec![0u8; (64 << 20) + 1],
    )
    .unwrap();
    assert_code(
        op(&big, "read", "files", "huge.bin"),
        ErrorCode::TooLarge,
        "file limit",
    );
}

#[test]
fn odd_requests_get_clear_errors() {
    let f = ProbeApp::open(MANIFEST);
    let w = f.guest("writer");
    body(op(&w, "mkdir", "files", "d"));
    assert_code(
        op(&w, "mkdir", "files", "d"),
        ErrorCode::Conflict,
        "already exists",
    );
    assert_code(
        op(&w, "read", "files", "d"),
        ErrorCode::InvalidInput,
        "is a directory",
    );
    assert_code(
        write(&w, "files", "d", b"x"),
        ErrorCode::InvalidInput,
        "is a directory",
    );
    assert_code(
        write(&w, "files", "missing/x.txt", b"x"),
        ErrorCode::NotFound,
        "",
    );
    body(write(&w, "files", "f.txt", b"x"));
    assert_code(
        op(&w, "list", "files", "f.txt"),
        ErrorCode::InvalidInput,
        "not a directory",
    );
    assert_code(
        op(&w, "remove", "files", "nope"),
        ErrorCode::NotFound,
        "`nope` does not exist",
    );
}

#[test]
fn open_handles_are_capped_per_request() {
    let f = ProbeApp::open(MANIFEST);
    let w = f.guest("writer");
    assert_eq!(
        json(call(
            &w,
            "/paths/hold",
            &[("root", "files"), ("n", "8")],
            b""
        ))["held"],
        8
    );
    assert_code(
        call(&w, "/paths/hold", &[("root", "files"), ("n", "1000")], b""),
        ErrorCode::TooLarge,
        "too many open handles",
    );
    // The next request starts with none.
    assert_eq!(
        json(call(
            &w,
            "/paths/hold",
            &[("root", "files"), ("n", "8")],
            b""
        ))["held"],
        8
    );
}

#[test]
fn stray_temporary_files_are_hidden_and_swept_at_start() {
    let f = ProbeApp::open(MANIFEST);
    let w = f.guest("writer");
    body(write(&w, "files", "kept.txt", b"kept"));
    std::fs::write(
        f.data_path("files").join(".rawalite-tmp-deadbeef"),
        b"half a write",
    )
    .unwrap();
    let names: Vec<Json> = json(op(&w, "list", "files", ""))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, ["kept.txt"]);
    assert_code(
        op(&w, "read", "files", ".rawalite-tmp-deadbeef"),
        ErrorCode::InvalidInput,
        "reserved",
    );
    drop(w);
    // The next start sweeps it; on PostgreSQL, where other hosts may share
    // the directory, only once it is older than any write may take.
    let stray = f.data_path("files").join(".rawalite-tmp-deadbeef");
    let start = || {
        let runtime = Runtime::new(None).unwrap();
        App::open(Manifest::load(&f.manifest).unwrap(), None, runtime).unwrap();
    };
    start();
    if common::on_postgres() {
        assert!(stray.exists(), "another host's write in flight was swept");
        std::fs::File::options()
            .write(true)
            .open(&stray)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(12 * 60))
            .unwrap();
        start();
    }
    assert!(!stray.exists());
    assert!(f.data_path("files").join("kept.txt").exists());
}

/// The crash test: a host writing one file over and over is killed with
/// SIGKILL at random moments; every time, the file is one whole version.
#[test]
fn a_killed_writer_leaves_the_old_or_the_new_file_never_a_torn_one() {
    let f = ProbeApp::open(MANIFEST);
    let body = pattern(256 << 10, 11);
    let body_file = f.dir.path().join("body.bin");
    std::fs::write(&body_file, &body).unwrap();
    let target = f.data_path("files").join("churn.bin");
    // Compile the probe into the shared cache first, so the kills land in
    // the writes and not in the compile.
    f.guest("churner");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut versions_seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let mut child = Command::new(common::bin())
            .args([
                "render",
                "--manifest",
                f.manifest.to_str().unwrap(),
                "--guest",
                "churner",
                "--method",
                "POST",
                "--body-file",
                body_file.to_str().unwrap(),
                "/paths/churn?root=files&path=churn.bin",
            ])
            .env("RAWALITE_CACHE_DIR", f.dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(40 + seed % 200));
        child.kill().unwrap();
        child.wait().unwrap();

        if let Ok(contents) = std::fs::read(&target) {
            assert_eq!(contents.len(), 8 + body.len(), "a torn file: wrong length");
            assert!(contents[8..] == body[..], "a torn file: wrong contents");
            versions_seen.insert(u64::from_le_bytes(contents[..8].try_into().unwrap()));
        }
    }
    assert!(
        !versions_seen.is_empty(),
        "the writer never finished a single write"
    );
    eprintln!("versions seen after kills: {versions_seen:?}");

    // Whatever temporary files the kills left are not listed.
    let w = f.guest("writer");
    let names: Vec<Json> = json(op(&w, "list", "files", ""))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, ["churn.bin"]);
}

#[test]
fn every_call_writes_one_audit_event() {
    let f = ProbeApp::open(MANIFEST);
    let out = common::render_post(
        &f,
        "writer",
        &f.manifest,
        "/paths/write?root=files&path=copy.toml",
        "rawalite::audit=info",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    let events: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rawalite::audit"))
        .collect();
    assert_eq!(events.len(), 2, "open and write: {log}");
    let size = std::fs::metadata(&f.manifest).unwrap().len();
    for field in [
        "guest=writer",
        "capability=\"paths\"",
        "root=\"files\"",
        "op=\"write\"",
        "path=\"copy.toml\"",
        &format!("bytes={size}"),
        "outcome=\"ok\"",
    ] {
        assert!(
            events[1].contains(field),
            "`{field}` missing in {}",
            events[1]
        );
    }
    assert!(
        !log.contains(&f.dir.path().display().to_string()),
        "a host path in the log: {log}"
    );
    assert!(Path::new(&f.data_path("files").join("copy.toml")).is_file());
}
