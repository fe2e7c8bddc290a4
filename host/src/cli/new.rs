//! `rawalite new`: a renderer project in a new directory, in Rust,
//! Python or TypeScript, with a page that uses each capability asked for, a manifest that
//! grants exactly those, and a README with the build → render → serve loop.

use super::{Exit, sdk};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// Create a renderer project in a new directory NAME.
///
/// The project builds with `rawalite build` and runs with `rawalite render`
/// or `rawalite serve`; it never needs this tool's source. A Rust project
/// carries its copy of the SDK and the WIT in `rawalite-sdk/` (cargo needs
/// them on disk); Python and TypeScript projects get them from `rawalite build`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  rawalite new greeter\n  rawalite new reports --lang python --capabilities db,session\n  rawalite new invoices --lang typescript --capabilities db"
)]
pub struct NewArgs {
    /// The guest's name (a-z, 0-9 and -, starting with a letter); also the directory.
    #[arg(value_name = "NAME")]
    name: String,
    /// The language of the renderer.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// The capabilities its page uses and its manifest grants.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Capability::Db, Capability::Paths, Capability::Session])]
    capabilities: Vec<Capability>,
    /// Where to create the directory NAME.
    #[arg(long, value_name = "DIR", default_value = ".")]
    parent: PathBuf,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Typescript,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Capability {
    Db,
    Paths,
    Session,
}

pub fn run(args: NewArgs) -> Result<Exit> {
    let name = &args.name;
    if !valid_name(name) {
        eprintln!(
            "error: `{name}` cannot name a guest: use 1-64 characters of a-z, 0-9 and -, starting with a letter"
        );
        return Ok(Exit::Usage);
    }
    let dir = args.parent.join(name);
    if dir.exists() {
        eprintln!(
            "error: {} already exists; pick another NAME or --parent",
            dir.display()
        );
        return Ok(Exit::Usage);
    }
    let uses = |c| args.capabilities.contains(&c);
    let caps = Caps {
        db: uses(Capability::Db),
        paths: uses(Capability::Paths),
        session: uses(Capability::Session),
    };
    create(&dir, name, args.lang, caps).with_context(|| format!("creating {}", dir.display()))?;
    let block = guest_block(name, caps);
    println!("created {} ({})", dir.display(), args.lang.label());
    println!(
        "\nnext:\n  cd {}\n  rawalite build\n  rawalite render --guest {name} /\n  rawalite test",
        dir.display()
    );
    println!("\nto add it to another app, build it and paste into that app's rawalite.toml:\n");
    print!("{block}");
    Ok(Exit::Ok)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[derive(Clone, Copy)]
struct Caps {
    db: bool,
    paths: bool,
    session: bool,
}

impl Lang {
    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Typescript => "TypeScript",
        }
    }
}

fn create(dir: &Path, name: &str, lang: Lang, caps: Caps) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Fails if the directory appeared since `run` looked.
    std::fs::create_dir(dir)?;
    let fill = |text: &str| text.replace("@NAME@", name);
    let mut files: Vec<(String, String)> = vec![
        ("rawalite.toml".into(), manifest(name, caps)),
        (
            ".gitignore".into(),
            match lang {
                Lang::Typescript => "/target\n/data\n/node_modules\n",
                _ => "/target\n/data\n",
            }
            .into(),
        ),
    ];
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), fill(CARGO_TOML)));
            files.push(("src/lib.rs".into(), fill(&page(&RUST, caps))));
            sdk::write(&dir.join("rawalite-sdk"), sdk::WIT)?;
            sdk::write(&dir.join("rawalite-sdk"), sdk::RUST)?;
        }
        Lang::Python => files.push(("app.py".into(), fill(&page(&PYTHON, caps)))),
        Lang::Typescript => {
            files.push(("src/app.ts".into(), fill(&page(&TYPESCRIPT, caps))));
            files.push(("tsconfig.json".into(), TSCONFIG.into()));
        }
    }
    files.push((
        "tests/{name}.toml".replace("{name}", name),
        fill(&cases(caps)),
    ));
    files.push(("README.md".into(), readme(name, lang, caps)));
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the project"))?;
        std::fs::write(&path, text)?;
    }
    if lang == Lang::Typescript {
        // What `build` writes, now, from the manifest just written: an
        // editor finds the types at once.
        let granted = super::build::granted_capabilities(&dir.join("rawalite.toml"), name)?;
        super::build::typescript::write_sdk(dir, &granted)?;
    }
    Ok(())
}

fn manifest(name: &str, caps: Caps) -> String {
    let mut text = format!(
        "# What {name} may touch: nothing but what is granted here (`rawalite audit`).\n\
         [app]\nname = \"{name}\"\ndata_dir = \"data\"   # the database and the roots; `--data DIR` overrides\n"
    );
    if caps.paths {
        text.push_str("\n[paths]\nfiles = \"files\"     # a root, relative to data_dir\n");
    }
    text.push('\n');
    text.push_str(&guest_block(name, caps));
    text
}

fn guest_block(name: &str, caps: Caps) -> String {
    let mut text = format!(
        "[[guest]]\nname = \"{name}\"\ncomponent = \"target/{name}.wasm\"\nroute = \"/{name}\"\n"
    );
    if caps.db {
        text.push_str("[guest.db]\nread = [\"customers\"]        # write = [...] to change rows\n");
    }
    if caps.paths {
        text.push_str("[guest.paths]\nfiles = { access = \"read-write\", quota = \"10 MiB\" }\n");
    }
    if caps.session {
        text.push_str(
            "[guest.session]\nrequire_login = false          # true: only signed-in users get the page\n",
        );
    }
    text
}

const CARGO_TOML: &str = include_str!("../../templates/rust/Cargo.toml.in");

/// A language's page: what it always imports, each capability's imports
/// and code (db, paths, session), and the page the code goes into at
/// `marker`.
struct Template {
    head: &'static str,
    uses: &'static [&'static str],
    parts: [(&'static [&'static str], &'static str); 3],
    page: &'static str,
    marker: &'static str,
}

const RUST: Template = Template {
    head: "//! @NAME@: a RawaLite renderer. `rawalite build` makes target/@NAME@.wasm,\n\
           //! `rawalite render --guest @NAME@ /` runs it once.\n\n\
           use rawalite_guest::{@USES@};\n",
    uses: &["Error", "Renderer", "Request", "Response", "escape"],
    parts: [
        (&["db"], RUST_DB),
        (&["ErrorCode", "paths"], RUST_PATHS),
        (&["session"], RUST_SESSION),
    ],
    page: RUST_PAGE,
    marker: "        // capabilities\n",
};

const PYTHON: Template = Template {
    head: "\"\"\"@NAME@: a RawaLite renderer. `rawalite build` makes target/@NAME@.wasm,\n\
           `rawalite render --guest @NAME@ /` runs it once.\"\"\"\n\n\
           from rawalite_guest import @USES@\n",
    uses: &["NotFound", "Request", "Response", "escape", "export"],
    parts: [
        (&["db"], PYTHON_DB),
        (&["paths"], PYTHON_PATHS),
        (&["session"], PYTHON_SESSION),
    ],
    page: PYTHON_PAGE,
    marker: "    # capabilities\n",
};

const TYPESCRIPT: Template = Template {
    head: "// @NAME@: a RawaLite renderer. `rawalite build` makes target/@NAME@.wasm,\n\
           // `rawalite render --guest @NAME@ /` runs it once.\n\n\
           import { @USES@ } from 'rawalite-guest';\n",
    uses: &["GuestError", "Request", "Response", "escape"],
    parts: [
        (&["db"], TS_DB),
        (&["paths"], TS_PATHS),
        (&["session"], TS_SESSION),
    ],
    page: TS_PAGE,
    marker: "  // capabilities\n",
};

/// For editors: the checks `rawalite build` runs, from the copy of the SDK
/// that `new` and every build write into target/.
const TSCONFIG: &str = "{ \"extends\": \"./target/rawalite-sdk/tsconfig.json\" }\n";

/// The page of `template` with the code of each capability in `caps`.
fn page(template: &Template, caps: Caps) -> String {
    let mut uses = template.uses.to_vec();
    let mut body = String::new();
    for ((names, code), wanted) in template
        .parts
        .iter()
        .zip([caps.db, caps.paths, caps.session])
    {
        if wanted {
            uses.extend(*names);
            body.push_str(code);
        }
    }
    // Types first, then modules and functions, as rustfmt and isort order them.
    uses.sort_by_key(|u| (u.starts_with(|c: char| c.is_lowercase()), *u));
    let head = template.head.replace("@USES@", &uses.join(", "));
    (head + template.page).replace(template.marker, &body)
}

const RUST_PAGE: &str = include_str!("../../templates/rust/page.rs");

const RUST_DB: &str = include_str!("../../templates/rust/db.rs");

const RUST_PATHS: &str = include_str!("../../templates/rust/paths.rs");

const RUST_SESSION: &str = include_str!("../../templates/rust/session.rs");

const PYTHON_PAGE: &str = include_str!("../../templates/python/page.py");

const PYTHON_DB: &str = include_str!("../../templates/python/db.py");

const PYTHON_PATHS: &str = include_str!("../../templates/python/paths.py");

const PYTHON_SESSION: &str = include_str!("../../templates/python/session.py");

const TS_PAGE: &str = include_str!("../../templates/typescript/page.ts");

const TS_DB: &str = include_str!("../../templates/typescript/db.ts");

const TS_PATHS: &str = include_str!("../../templates/typescript/paths.ts");

const TS_SESSION: &str = include_str!("../../templates/typescript/session.ts");

/// The project's `rawalite test` cases: the page's, then each capability's.
fn cases(caps: Caps) -> String {
    let mut text = include_str!("../../templates/tests/page.toml").to_owned();
    for (wanted, part) in [
        (caps.db, include_str!("../../templates/tests/db.toml")),
        (caps.paths, include_str!("../../templates/tests/paths.toml")),
        (
            caps.session,
            include_str!("../../templates/tests/session.toml"),
        ),
    ] {
        if wanted {
            text.push_str(part);
        }
    }
    text
}

fn readme(name: &str, lang: Lang, caps: Caps) -> String {
    let (source, needs, sdk) = match lang {
        Lang::Rust => (
            "src/lib.rs",
            "Rust (installed with rustup; `rawalite build` adds the wasm32-wasip2 target)",
            "`rawalite-sdk/` holds the Rust SDK (`rawalite-guest`) and the WIT it is written \
             against, copied from the `rawalite` that created the project, so cargo finds them \
             without network access to this tool's source. `cargo doc -p rawalite-guest --open` \
             documents it.",
        ),
        Lang::Python => (
            "app.py",
            "Python 3 with venv (`rawalite build` installs componentize-py into target/python)",
            "The Python SDK (`rawalite_guest`) and the WIT come from the `rawalite` binary at \
             build time, so the guest always matches the host that runs it; each build leaves a copy \
             in `target/rawalite-sdk/` to read (its docstrings) and to point an editor at. The component is built \
             with WASI stubbed out: no files but the granted roots, and every module it uses must \
             be imported at the top of a file. The time and entropy are the host's, on every \
             request (`time.time()`, `os.urandom`, `secrets`, `random`; for a `datetime`, \
             `datetime.fromtimestamp(time.time(), timezone.utc)`).",
        ),
        Lang::Typescript => (
            "src/app.ts",
            "Node.js 20 or later with npm (`rawalite build` installs its pinned tools, tsc, \
             rolldown and componentize-qjs, into its cache directory the first time)",
            "The TypeScript SDK (`rawalite-guest`) and the WIT come from the `rawalite` binary at \
             build time, so the guest always matches the host that runs it; `new` and each build \
             leave a copy in `target/rawalite-sdk/`, and tsconfig.json points your editor at it. \
             `rawalite build` type-checks with \
             tsc, bundles `src/app.ts` and its npm dependencies (add a package.json; the build \
             runs `npm ci`) and makes a QuickJS component whose only imports are the bridge. \
             Render synchronously: no `async`, no `setTimeout`, `fetch` or DOM. `Date`, \
             `Math.random()` and `crypto.getRandomValues()` read the host's clock and entropy on \
             every call; `console.log` goes to the log (`rawalite render --trace`). An uncaught \
             exception stops the page with its message and line (`src/app.ts:12`), and the \
             trace shows the stack.",
        ),
    };
    let mut uses = Vec::new();
    if caps.db {
        uses.push("reads the `customers` table (`[guest.db]`)");
    }
    if caps.paths {
        uses.push("keeps a note in the root `files` (`[guest.paths]`)");
    }
    if caps.session {
        uses.push("says who is signed in (`[guest.session]`)");
    }
    let uses = if uses.is_empty() {
        "uses no capability".to_owned()
    } else {
        uses.join(", ")
    };
    format!(
        r#"# {name}

A RawaLite renderer in {lang}, created by `rawalite new`. Its page
({source}) {uses}.

## Build and run

Needs {needs} and the `rawalite` binary on your `PATH` (from a RawaLite
checkout: `cargo install --path host`).

```sh
rawalite build                        # target/{name}.wasm
rawalite render --guest {name} /     # one request; the page to stdout
rawalite render --trace --guest {name} /   # also each capability call it made
```

## Test it

```sh
rawalite test                         # builds if {source} changed, runs tests/{name}.toml
```

Each case in [`tests/{name}.toml`](tests/{name}.toml) renders the page with
the real component, under `rawalite.toml`'s grants, against a database and
roots of its own: a request, fixtures (rows, users, files), and what to
expect (status, headers, text, JSON, a snapshot, and the capability calls
made or denied). `rawalite test --filter TEXT` runs some; `--update-snapshots`
writes `snapshot` files; `--json` is for CI. The format is in RawaLite's
docs/TESTING.md.

## The edit → test → refresh loop

```sh
rawalite serve --watch                # http://127.0.0.1:8080/{name}
```

Leave it running. Edit {source}, run `rawalite test` (it rebuilds), refresh the
browser: `--watch` loads the new component for the next request (requests
already running finish on the old one). A component that fails to load
leaves the old one serving and the log says why. Changes to
`rawalite.toml` (a grant, a limit) take effect the same way.

To sign in for `session`, add a user (`rawalite user add ada`) and try
`rawalite render --as ada --guest {name} /`.

## What it may touch

Nothing but what [`rawalite.toml`](rawalite.toml) grants; `rawalite audit`
prints it. A call outside the grant fails with `denied` and names the
manifest key that would allow it.

## Adding it to another app

Build it, copy `target/{name}.wasm` next to that app, and paste this into
that app's `rawalite.toml` (fix `component` to where you put it):

```toml
{block}```

## Where the SDK comes from

{sdk}
"#,
        lang = lang.label(),
        block = guest_block(name, caps),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_name_a_guest_are_refused() {
        for good in ["a", "greeter", "my-page-2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "2fast",
            "-x",
            "Caps",
            "with space",
            "../up",
            "a_b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_page_uses_only_what_was_asked() {
        let only_db = Caps {
            db: true,
            paths: false,
            session: false,
        };
        let page = super::page(&RUST, only_db);
        assert!(
            page.contains("db::query") && !page.contains("paths::") && !page.contains("session::")
        );
        assert!(
            page.contains("use rawalite_guest::{Error, Renderer, Request, Response, db, escape};"),
            "{page}"
        );
        let python = super::page(&PYTHON, only_db);
        assert!(
            python.contains("db.query")
                && !python.contains("paths.")
                && !python.contains("session.")
        );
        let typescript = super::page(&TYPESCRIPT, only_db);
        assert!(
            typescript.contains("db.query")
                && !typescript.contains("paths.")
                && !typescript.contains("session.")
        );
        assert!(
            typescript.contains(
                "import { GuestError, Request, Response, db, escape } from 'rawalite-guest';"
            ),
            "{typescript}"
        );
        let manifest = manifest("x", only_db);
        assert!(manifest.contains("[guest.db]") && !manifest.contains("[guest.paths]"));
    }
}
