//! `rawalite test` as a guest developer meets it: a project of cases
//! against the probe guest (a real component under a real manifest),
//! failing where it should, saying why, and passing where it should.

use crate::common;

use common::{bin, guest, stderr, stdout};
use std::path::Path;
use std::process::{Command, Output};

/// A project whose manifest grants the probe `grant`, with `cases` as
/// tests/probe.toml.
fn project(grant: &str, cases: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rawalite.toml"),
        format!(
            "[app]\nname = \"t\"\n\n[paths]\nfiles = \"files\"\n\n[[guest]]\nname = \"probe\"\ncomponent = \"{}\"\nroute = \"/probe\"\n{grant}",
            guest("probe").display()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/probe.toml"), cases).unwrap();
    dir
}

fn test_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("test")
        .arg(dir)
        .args(args)
        .env("RAWALITE_CACHE_DIR", common::shared_cache())
        .env_remove("RUST_LOG")
        .output()
        .expect("rawalite runs")
}

fn printed(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

const READ_WRITE: &str = "[guest.db]\nread = [\"customers\"]\nwrite = [\"customers\"]\n";
const READ_ONLY: &str = "[guest.db]\nread = [\"customers\"]\n";

/// Each case gets a database of its own: the rows one inserts are not in
/// another's, whatever the order or parallelism.
#[test]
fn every_case_starts_from_its_own_fresh_database() {
    let mut cases = String::new();
    for i in 0..6 {
        cases.push_str(&format!(
            r#"
[[case]]
name = "case {i}"
path = "/probe/db/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20customers"
rows.customers = [{{ name = "only {i}", email = "same@example.com" }}]
[case.expect]
json = {{ "/rows/0/0" = 1 }}
calls = ["db.query customers"]
"#
        ));
    }
    let dir = project(READ_ONLY, &cases);
    let out = test_in(dir.path(), &["-j", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    assert!(
        stdout(&out).contains("6 passed, 0 failed"),
        "{}",
        printed(&out)
    );
    // One line per case, in the file's order.
    let said = stdout(&out);
    let lines: Vec<&str> = said.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(lines.len(), 6);
    assert!(
        lines[0].contains("case 0") && lines[5].contains("case 5"),
        "{lines:?}"
    );
}

/// A case that asserts a denial fails when the grant allows the call, and
/// a denial no case expects fails too.
#[test]
fn a_grant_wider_than_meant_fails_the_case_that_expects_a_denial() {
    let cases = r#"
[[case]]
name = "the probe may not add customers"
path = "/probe/db/execute"
method = "POST"
body = "INSERT INTO customers (name) VALUES ('x')"
[case.expect]
error = "denied"
denied = ["db.execute customers"]
"#;
    let narrow = project(READ_ONLY, cases);
    let out = test_in(narrow.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));

    let wide = project(READ_WRITE, cases);
    let out = test_in(wide.path(), &[]);
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED probe.toml: the probe may not add customers"),
        "{text}"
    );
    assert!(
        text.contains("expected a call `db.execute customers` to be denied; none was"),
        "{text}"
    );
    // The trace of what it did, to see why.
    assert!(text.contains("db       execute      customers"), "{text}");
    assert!(text.contains("0 passed, 1 failed"), "{text}");

    // A denial the case does not list fails it, and says how to list it.
    let unexpected = project(
        READ_ONLY,
        r#"
[[case]]
name = "reads invoices"
path = "/probe/db/query?sql=SELECT%20*%20FROM%20invoices"
[case.expect]
error = "denied"
"#,
    );
    let text = printed(&test_in(unexpected.path(), &[]));
    assert!(
        text.contains("the guest met a denial this case does not expect: db.query")
            && text.contains("denied = [\"db.query\"]"),
        "{text}"
    );
}

/// A snapshot is written on request, then compared: a change shows as a
/// diff. With the clock and the seed pinned the page is the same bytes
/// every run (the probe prints the time and a seeded hash).
#[test]
fn snapshots_are_written_then_compared_with_a_diff() {
    let dir = project(
        "",
        r#"
[[case]]
name = "the time and the seed are pinned"
path = "/probe/fresh"
clock = 2026-01-02T03:04:05Z
seed = 7
[case.expect]
json = { "/time" = 1767323045 }
snapshot = "fresh.json"
"#,
    );
    let out = test_in(dir.path(), &[]);
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("snapshot tests/snapshots/fresh.json does not exist yet: run `rawalite test --update-snapshots`"),
        "{text}"
    );
    let out = test_in(dir.path(), &["--update-snapshots"]);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    assert!(stdout(&out).contains("wrote tests/snapshots/fresh.json"));
    for _ in 0..2 {
        let out = test_in(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    }
    // The kept snapshot changed by hand: the run fails with the difference.
    let kept = dir.path().join("tests/snapshots/fresh.json");
    let snapshot = std::fs::read_to_string(&kept).unwrap();
    std::fs::write(&kept, snapshot.replace("1767323045", "1767323046")).unwrap();
    let out = test_in(dir.path(), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 1);
    let failure = report["cases"][0]["failures"][0].as_str().unwrap();
    assert!(
        failure.contains("-{\"seeded\":")
            && failure.contains("1767323046")
            && failure.contains("+{\"seeded\":")
            && failure.contains("1767323045"),
        "{failure}"
    );
}

/// The mistakes a user makes are named, with what to do instead; the
/// other cases still run.
#[test]
fn a_case_naming_what_does_not_exist_says_so() {
    let dir = project(
        READ_ONLY,
        r#"
[[case]]
name = "no such guest"
guest = "nobody"
path = "/probe"

[[case]]
name = "no such route"
path = "/elsewhere"

[[case]]
name = "no such table"
path = "/probe/echo"
rows.customer = [{ name = "typo" }]

[[case]]
name = "no such column"
path = "/probe/echo"
rows.customers = [{ nom = "typo" }]

[[case]]
name = "a signed-in user with roles"
path = "/probe/session/current"
user = "ada"
roles = ["admin"]
[case.expect]
json = { "/username" = "ada", "/roles/0" = "admin" }
calls = ["session.current"]
"#,
    );
    let out = test_in(dir.path(), &[]);
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for said in [
        "no guest named `nobody` (guests: probe)",
        "no guest's route holds `/elsewhere` (routes: /probe → probe)",
        "rows: there is no table `customer`: the migrations make `customers`",
        "rows of `customers`: there is no column `nom`",
        "4 failed",
        "1 passed",
    ] {
        assert!(text.contains(said), "`{said}` not in {text}");
    }

    // A file that is not in the format stops the run at its line.
    std::fs::write(
        dir.path().join("tests/probe.toml"),
        "[[case]]\nname = \"x\"\n[case.expect]\nstatuss = 200\n",
    )
    .unwrap();
    let out = test_in(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("probe.toml") && stderr(&out).contains("unknown field `statuss`"),
        "{}",
        stderr(&out)
    );
    // So does --filter matching nothing.
    let out = test_in(dir.path(), &["--filter", "zzz"]);
    assert_eq!(out.status.code(), Some(2));
}
