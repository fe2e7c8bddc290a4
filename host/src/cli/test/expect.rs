//! A case's expectations against what its render did. Each failure is
//! one message that says what was expected, what came, and (for a body
//! or a snapshot) the difference.

use super::case::{CallPattern, Case};
use super::run::{Env, Verdict};
use crate::cli::trace::{Call, Trace};
use rawalite_host::capabilities::Response;
use rawalite_host::runtime::Outcome;
use std::fmt::Write as _;

/// The most of a body a failure shows.
const SHOWN: usize = 2000;

pub(super) fn check(case: &Case, env: &Env, outcome: &Outcome, trace: &Trace) -> Verdict {
    let mut verdict = Verdict::default();
    let expect = &case.expect;
    match outcome {
        Outcome::Response(response) => {
            if let Some(code) = &expect.error {
                fail(
                    &mut verdict,
                    format!(
                        "expected the guest to return error `{code}`; it answered {}",
                        response.status
                    ),
                );
            }
            if let Some(cause) = &expect.stopped {
                fail(
                    &mut verdict,
                    format!(
                        "expected the host to stop the guest ({cause}); it answered {}",
                        response.status
                    ),
                );
            }
            if let Some(status) = expect.status
                && status != response.status
            {
                fail(
                    &mut verdict,
                    format!(
                        "status: expected {status}, got {}{}",
                        response.status,
                        location(response)
                    ),
                );
            }
            check_response(case, env, response, &mut verdict);
        }
        Outcome::Error(error) => {
            let code = error.code.as_str();
            let expected = expect.error.as_deref() == Some(code)
                || (expect.error.is_none() && expect.status == Some(error.code.http_status()));
            if !expected {
                fail(
                    &mut verdict,
                    format!(
                        "the guest returned error `{code}` (`serve` answers {}): {}",
                        error.code.http_status(),
                        error.message
                    ),
                );
            }
        }
        Outcome::Stopped(why) => {
            if expect.stopped.as_deref() != Some(why.cause()) {
                let mut message = format!("the host stopped the guest: {why}");
                for line in &trace.output {
                    let _ = write!(message, "\n  {line}");
                }
                fail(&mut verdict, message);
            }
        }
    }
    check_calls(case, trace, &mut verdict);
    verdict
}

fn fail(verdict: &mut Verdict, message: String) {
    verdict.failures.push(message);
}

/// ` (to /login)` for a redirect.
fn location(response: &Response) -> String {
    header(response, "location")
        .map(|to| format!(" (to {to})"))
        .unwrap_or_default()
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A body for a message: text, cut at [`SHOWN`] bytes, indented.
fn shown(body: &str) -> String {
    let mut end = body.len().min(SHOWN);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let mut text: String = body[..end]
        .lines()
        .map(|line| format!("\n  | {line}"))
        .collect();
    if end < body.len() {
        let _ = write!(text, "\n  | … ({} more bytes)", body.len() - end);
    }
    text
}

fn check_response(case: &Case, env: &Env, response: &Response, verdict: &mut Verdict) {
    let expect = &case.expect;
    for (name, value) in &expect.headers {
        match header(response, name) {
            Some(got) if got == value => {}
            Some(got) => fail(
                verdict,
                format!("header `{name}`: expected `{value}`, got `{got}`"),
            ),
            None => fail(
                verdict,
                format!(
                    "header `{name}`: expected `{value}`; the response has none (it has: {})",
                    response
                        .headers
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    let body = String::from_utf8_lossy(&response.body);
    for text in &expect.contains {
        if !body.contains(text.as_str()) {
            fail(
                verdict,
                format!("the body does not contain `{text}`; it is:{}", shown(&body)),
            );
        }
    }
    for text in &expect.not_contains {
        if let Some(line) = body.lines().find(|line| line.contains(text.as_str())) {
            fail(
                verdict,
                format!("the body contains `{text}`, in:{}", shown(line)),
            );
        }
    }
    if !expect.json.is_empty() {
        check_json(&body, expect, verdict);
    }
    if let Some(name) = &expect.snapshot {
        check_snapshot(env, name, &response.body, verdict);
    }
}

fn check_json(body: &str, expect: &super::case::Expect, verdict: &mut Verdict) {
    let document: serde_json::Value = match serde_json::from_str(body) {
        Ok(document) => document,
        Err(e) => {
            return fail(
                verdict,
                format!("the body is not JSON ({e}):{}", shown(body)),
            );
        }
    };
    for (pointer, want) in &expect.json {
        let want = serde_json::to_value(want).unwrap_or(serde_json::Value::Null);
        match document.pointer(pointer) {
            Some(got) if *got == want => {}
            Some(got) => fail(
                verdict,
                format!("json `{pointer}`: expected {want}, got {got}"),
            ),
            None => fail(
                verdict,
                format!(
                    "json `{pointer}`: expected {want}; there is nothing there (a JSON Pointer: `/items/0/name`) in:{}",
                    shown(body)
                ),
            ),
        }
    }
}

fn check_snapshot(env: &Env, name: &str, body: &[u8], verdict: &mut Verdict) {
    let relative = std::path::Path::new(name);
    if !relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return fail(
            verdict,
            format!("snapshot `{name}`: give a file name under tests/snapshots/"),
        );
    }
    let path = env.snapshots.join(relative);
    let shown_path = format!("tests/snapshots/{name}");
    if env.update_snapshots {
        let written = std::fs::create_dir_all(path.parent().expect("a file in snapshots"))
            .and_then(|()| std::fs::write(&path, body));
        match written {
            Ok(()) => verdict.notes.push(format!("wrote {shown_path}")),
            Err(e) => fail(verdict, format!("cannot write {shown_path}: {e}")),
        }
        return;
    }
    let Ok(kept) = std::fs::read(&path) else {
        return fail(
            verdict,
            format!(
                "snapshot {shown_path} does not exist yet: run `rawalite test --update-snapshots` to write it from this response, then review and commit it"
            ),
        );
    };
    if kept == body {
        return;
    }
    match (std::str::from_utf8(&kept), std::str::from_utf8(body)) {
        (Ok(old), Ok(new)) => {
            let diff = similar::TextDiff::from_lines(old, new);
            let mut text = format!(
                "the body differs from {shown_path} (- snapshot, + now; `--update-snapshots` takes the new one):"
            );
            for line in diff
                .unified_diff()
                .context_radius(3)
                .to_string()
                .lines()
                .take(200)
            {
                let _ = write!(text, "\n  {line}");
            }
            fail(verdict, text);
        }
        _ => fail(
            verdict,
            format!(
                "the body ({} bytes) differs from {shown_path} ({} bytes), which is not text; `--update-snapshots` takes the new one",
                body.len(),
                kept.len()
            ),
        ),
    }
}

/// Whether `call` is one `pattern` names: its capability and operation,
/// and what it touched (a table it used, or that its denial names; a root
/// or `root/path`; a username).
fn matches(pattern: &CallPattern, call: &Call) -> bool {
    if pattern.capability != call.capability || pattern.op != call.op {
        return false;
    }
    let Some(target) = &pattern.target else {
        return true;
    };
    match call.capability.as_str() {
        "db" => {
            call.tables.iter().any(|t| t.eq_ignore_ascii_case(target))
                || call
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains(&format!("`{target}`")))
        }
        "paths" => match target.split_once('/') {
            Some((root, path)) => call.root == root && call.path == path,
            None => call.root == *target,
        },
        _ => call.username == *target,
    }
}

fn check_calls(case: &Case, trace: &Trace, verdict: &mut Verdict) {
    let expect = &case.expect;
    let before = verdict.failures.len();
    let ok: Vec<&Call> = trace.calls.iter().filter(|c| c.outcome == "ok").collect();
    let denied: Vec<&Call> = trace
        .calls
        .iter()
        .filter(|c| c.outcome == "denied")
        .collect();
    for pattern in &expect.calls {
        if !ok.iter().any(|call| matches(pattern, call)) {
            fail(
                verdict,
                format!("expected a call `{pattern}` that succeeded; there was none"),
            );
        }
    }
    for pattern in &expect.denied {
        if !denied.iter().any(|call| matches(pattern, call)) {
            fail(
                verdict,
                format!(
                    "expected a call `{pattern}` to be denied; none was (is the grant wider than meant?)"
                ),
            );
        }
    }
    for call in denied {
        if !expect.denied.iter().any(|pattern| matches(pattern, call)) {
            fail(
                verdict,
                format!(
                    "the guest met a denial this case does not expect: {}.{} {}: {}\n  (if it is meant, add `denied = [\"{}.{}\"]` to [case.expect])",
                    call.capability,
                    call.op,
                    call.what(),
                    call.error.as_deref().unwrap_or(""),
                    call.capability,
                    call.op
                ),
            );
        }
    }
    if verdict.failures.len() > before {
        let mut calls = String::from("the calls it made:");
        for line in trace.to_string().lines() {
            let _ = write!(calls, "\n  {line}");
        }
        fail(verdict, calls);
    }
}
