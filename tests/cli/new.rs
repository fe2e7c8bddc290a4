//! `rawalite new` → `rawalite build` → `rawalite render`, as a guest
//! developer meets it: in a directory outside this repository, with only the
//! `rawalite` binary and the language's own tools.

use crate::common;

use common::{bin, stderr, stdout, workspace};
use std::path::Path;
use std::process::{Command, Output};

/// `rawalite ARGS` in `dir`, the way the project's README says to run it.
fn rawalite_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .args(args)
        .env("RAWALITE_CACHE_DIR", dir.join("cache"))
        // One componentize-py, one set of npm tools and one Cargo target for
        // every run of the tests, so a rerun builds nothing it built before.
        .env("RAWALITE_PYTHON_ENV", workspace().join("target/python"))
        .env("RAWALITE_TS_TOOLS", workspace().join("target/typescript"))
        .env("CARGO_TARGET_DIR", workspace().join("target/new-projects"))
        .env_remove("RUST_LOG")
        .output()
        .expect("rawalite runs")
}

fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Creates, builds and renders a project; checks each capability's part.
fn new_build_render(lang: &str) {
    let parent = tempfile::tempdir().unwrap();
    assert!(!parent.path().starts_with(workspace()));
    let name = format!("hello-{lang}");
    let created = ok(rawalite_in(
        parent.path(),
        &[
            "new",
            &name,
            "--lang",
            lang,
            "--capabilities",
            "db,paths,session",
        ],
    ));
    assert!(
        created.contains("[[guest]]") && created.contains(&format!("name = \"{name}\"")),
        "{created}"
    );
    let dir = parent.path().join(&name);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains("rawalite build") && readme.contains("serve --watch"),
        "{readme}"
    );

    if lang == "typescript" {
        // The types an editor reads (tsconfig.json points there), before any build.
        assert!(
            dir.join("target/rawalite-sdk/guest-sdk-ts/bridge.d.ts")
                .is_file()
        );
    }

    let built = ok(rawalite_in(&dir, &["build"]));
    assert!(built.contains("imports db, paths, session"), "{built}");

    let page = ok(rawalite_in(
        &dir,
        &["render", "--guest", &name, "/?name=<you>"],
    ));
    for part in [
        "<h1>Hello, &lt;you&gt;!</h1>",
        "0 customers in the database.",
        "<input name=\"note\" value=\"\">",
        "Nobody is signed in.",
    ] {
        assert!(page.contains(part), "`{part}` not in {page}");
    }
    // The note form writes into the granted root and reads back escaped.
    let body = dir.join("body");
    std::fs::write(&body, "note=%3Cb%3Ehi").unwrap();
    let post = rawalite_in(
        &dir,
        &[
            "render",
            "--guest",
            &name,
            "--method",
            "POST",
            "--body-file",
            "body",
            "-i",
            "/",
        ],
    );
    assert!(ok(post).contains(&format!("location: /{name}/")));
    let page = ok(rawalite_in(&dir, &["render", "--guest", &name, "/"]));
    assert!(page.contains("value=\"&lt;b&gt;hi\""), "{page}");
    assert_eq!(
        std::fs::read_to_string(dir.join("data/files/note.txt")).unwrap(),
        "<b>hi"
    );
    // What it may touch is exactly what it uses: nothing flagged.
    ok(rawalite_in(&dir, &["audit"]));
    // The cases `new` wrote pass on the page as written.
    let tested = ok(rawalite_in(&dir, &["test"]));
    assert!(tested.contains("6 passed, 0 failed"), "{tested}");
}

#[test]
fn a_new_rust_project_builds_and_renders_outside_the_repository() {
    new_build_render("rust");
}

/// Edit → `rawalite test`: it rebuilds what changed, and a failing case
/// shows the page it got.
#[test]
fn rawalite_test_rebuilds_a_changed_page_and_shows_what_failed() {
    let parent = tempfile::tempdir().unwrap();
    ok(rawalite_in(
        parent.path(),
        &["new", "edited", "--capabilities", "db"],
    ));
    let dir = parent.path().join("edited");
    let tested = ok(rawalite_in(&dir, &["test"]));
    assert!(tested.contains("3 passed, 0 failed"), "{tested}");
    let page = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), page.replace("Hello,", "Hi,")).unwrap();
    let out = rawalite_in(&dir, &["test"]);
    let (said, building) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}{building}");
    assert!(
        building.contains("building edited (its sources changed)"),
        "{building}"
    );
    assert!(
        said.contains("FAILED edited.toml: the page greets a visitor by name")
            && said.contains("the body does not contain `Hello, Ada!`")
            && said.contains("<h1>Hi, Ada!</h1>")
            && said.contains("2 passed, 1 failed"),
        "{said}"
    );
}

#[test]
fn a_new_python_project_builds_and_renders_outside_the_repository() {
    new_build_render("python");
}

#[test]
fn a_new_typescript_project_builds_and_renders_outside_the_repository() {
    new_build_render("typescript");
}

#[test]
fn new_refuses_a_bad_name_and_an_existing_directory() {
    let parent = tempfile::tempdir().unwrap();
    let out = rawalite_in(parent.path(), &["new", "../escape"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot name a guest"),
        "{}",
        stderr(&out)
    );
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    let out = rawalite_in(parent.path(), &["new", "taken"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn build_says_what_a_guest_project_is_when_given_something_else() {
    let dir = tempfile::tempdir().unwrap();
    let out = rawalite_in(dir.path(), &["build"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("rawalite new NAME"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("target").exists(),
        "it leaves the directory alone"
    );
}

#[test]
fn a_python_guest_with_a_bug_fails_to_build_with_pythons_error() {
    let parent = tempfile::tempdir().unwrap();
    ok(rawalite_in(
        parent.path(),
        &["new", "broken", "--lang", "python", "--capabilities", "db"],
    ));
    let dir = parent.path().join("broken");
    std::fs::write(dir.join("app.py"), "def render(req:\n").unwrap();
    let out = rawalite_in(&dir, &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("SyntaxError"), "{}", stderr(&out));
}

#[test]
fn a_typescript_guest_with_a_type_error_fails_to_build_with_tscs_error() {
    let parent = tempfile::tempdir().unwrap();
    ok(rawalite_in(
        parent.path(),
        &[
            "new",
            "typo",
            "--lang",
            "typescript",
            "--capabilities",
            "db",
        ],
    ));
    let dir = parent.path().join("typo");
    let app = std::fs::read_to_string(dir.join("src/app.ts")).unwrap();
    // A column typed as a number, used as a string: tsc's job to catch.
    let broken = app.replace("${n} customers", "${n.toUpperCase()} customers");
    assert_ne!(app, broken);
    std::fs::write(dir.join("src/app.ts"), broken).unwrap();
    let out = rawalite_in(&dir, &["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("src/app.ts") && err.contains("toUpperCase"),
        "{err}"
    );
    assert!(err.contains("does not type-check"), "{err}");
    assert!(!dir.join("target/typo.wasm").exists());
}

#[test]
fn a_typescript_guest_bundles_its_own_npm_dependencies_and_runs_none_of_their_scripts() {
    let parent = tempfile::tempdir().unwrap();
    ok(rawalite_in(
        parent.path(),
        &[
            "new",
            "deps",
            "--lang",
            "typescript",
            "--capabilities",
            "session",
        ],
    ));
    let dir = parent.path().join("deps");
    // A package of the project's own, as any npm dependency (a local one,
    // so the test needs no registry).
    std::fs::create_dir_all(dir.join("shout")).unwrap();
    // Both the project and its dependency carry install scripts, which
    // the build must not run.
    std::fs::write(
        dir.join("shout/package.json"),
        r#"{"name": "shout", "version": "1.0.0", "main": "index.js",
            "scripts": {"install": "touch ../ran-dependency-install", "postinstall": "touch ../ran-dependency-postinstall"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("shout/index.js"),
        "module.exports = (text) => text.toUpperCase() + '!';\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("package.json"),
        r#"{"name": "deps", "private": true, "dependencies": {"shout": "file:./shout"},
            "scripts": {"preinstall": "touch ran-preinstall", "postinstall": "touch ran-postinstall", "prepare": "touch ran-prepare"}}"#,
    )
    .unwrap();
    let locked = Command::new("npm")
        .current_dir(&dir)
        .args([
            "install",
            "--package-lock-only",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
        ])
        .output()
        .expect("npm runs");
    assert!(locked.status.success(), "{}", stderr(&locked));
    let app = std::fs::read_to_string(dir.join("src/app.ts")).unwrap();
    let app = app
        .replacen(
            "from 'rawalite-guest';\n",
            "from 'rawalite-guest';\n// @ts-ignore: the package has no types\nimport shout from 'shout';\n",
            1,
        )
        .replace("escape(name)", "escape(shout(name))");
    std::fs::write(dir.join("src/app.ts"), app).unwrap();

    // `build` runs `npm ci` for it, then bundles it into the component.
    ok(rawalite_in(&dir, &["build"]));
    assert!(dir.join("node_modules/shout/index.js").exists());
    let ran: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(dir.join("node_modules")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("ran-"))
        .collect();
    assert!(ran.is_empty(), "npm ran lifecycle scripts: {ran:?}");
    let page = ok(rawalite_in(
        &dir,
        &["render", "--guest", "deps", "/?name=ada"],
    ));
    assert!(page.contains("<h1>Hello, ADA!!</h1>"), "{page}");
}

#[test]
fn two_builds_of_one_project_at_once_both_succeed() {
    // `serve --watch` beside an editor's build-on-save, or two terminals:
    // each build rewrites the project's target/rawalite-sdk/ and output,
    // so the second waits for the first instead of pulling files from
    // under it.
    let parent = tempfile::tempdir().unwrap();
    ok(rawalite_in(
        parent.path(),
        &["new", "twice", "--lang", "typescript"],
    ));
    let dir = parent.path().join("twice");
    let builds: Vec<_> = (0..2)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || rawalite_in(&dir, &["build"]))
        })
        .collect();
    let outputs: Vec<Output> = builds.into_iter().map(|b| b.join().unwrap()).collect();
    let waited = outputs
        .iter()
        .filter(|out| stderr(out).contains("waiting for another build of this project"))
        .count();
    for out in outputs {
        ok(out);
    }
    assert_eq!(waited, 1, "one of the builds waits for the other");
    let page = ok(rawalite_in(&dir, &["render", "--guest", "twice", "/"]));
    assert!(page.contains("twice"), "{page}");
}
