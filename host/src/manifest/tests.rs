use super::*;
use std::time::Duration;

/// Arrays and tables nested as deep as a manifest of a few MiB could
/// hold: an error that names the line, never a crash, on the stack of
/// a guest's fiber.
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let stack = if cfg!(debug_assertions) {
        16 << 20
    } else {
        2 << 20
    };
    for (open, close) in [("[", "]"), ("{a = ", "}"), ("[{a = ", "}]")] {
        let text = format!("x = {}1{}", open.repeat(200_000), close.repeat(200_000));
        let parsed = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || Manifest::parse(Path::new("/m/rawalite.toml"), &text).map(|_| ()))
            .unwrap()
            .join()
            .unwrap();
        // toml stops at its own depth limit ("max recursion depth met").
        let e = parsed.unwrap_err();
        assert!(e.to_string().contains("rawalite.toml:1: "), "{e}");
    }
}
use proptest::prelude::*;

/// One `[[guest]]` with the values a test will look for.
#[derive(Debug, Clone)]
struct Guest {
    name: String,
    route: String,
    memory_mib: u64,
    timeout_ms: u64,
    read: Vec<String>,
    quota_kib: u64,
    login: bool,
}

fn guest() -> impl Strategy<Value = Guest> {
    (
        "[a-z][a-z0-9_-]{0,10}",
        "/[a-z0-9]{1,8}",
        1u64..=4096,
        1u64..=600_000,
        prop::collection::vec("[a-z_]{1,10}", 0..4),
        1u64..1_000_000,
        any::<bool>(),
    )
        .prop_map(
            |(name, route, memory_mib, timeout_ms, read, quota_kib, login)| Guest {
                name,
                route,
                memory_mib,
                timeout_ms,
                read,
                quota_kib,
                login,
            },
        )
}

fn text(guests: &[Guest]) -> String {
    let mut text = String::from("[app]\nname = \"t\"\n[paths]\nfiles = \"files\"\n");
    for g in guests {
        text += &format!(
            "[[guest]]\nname = \"{}\"\ncomponent = \"g.wasm\"\nroute = \"{}\"\n[guest.limits]\nmemory = \"{} MiB\"\ntimeout_ms = {}\n[guest.db]\nread = {:?}\n[guest.paths]\nfiles = {{ access = \"read-write\", quota = \"{} KiB\" }}\n[guest.session]\nlogin = {}\n",
            g.name, g.route, g.memory_mib, g.timeout_ms, g.read, g.quota_kib, g.login
        );
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A manifest made of valid parts reads back exactly what it says
    /// (or, for repeated names or routes, is refused naming the key).
    #[test]
    fn valid_manifests_read_back(guests in prop::collection::vec(guest(), 1..4)) {
        match parse(&text(&guests)) {
            Ok(m) => {
                for (g, entry) in guests.iter().zip(&m.guests) {
                    prop_assert_eq!(&entry.name, &g.name);
                    prop_assert_eq!(entry.route.as_deref(), Some(g.route.as_str()));
                    prop_assert_eq!(entry.limits.memory, g.memory_mib << 20);
                    prop_assert_eq!(entry.limits.timeout, Duration::from_millis(g.timeout_ms));
                    prop_assert!(entry.limits.db_bytes <= entry.limits.memory);
                    let read: Vec<&str> = entry.db.as_ref().unwrap().readable().into_iter().collect();
                    let mut want: Vec<&str> = g.read.iter().map(String::as_str).collect();
                    want.sort();
                    want.dedup();
                    prop_assert_eq!(read, want);
                    prop_assert_eq!(entry.paths["files"].quota(), g.quota_kib << 10);
                    prop_assert_eq!(entry.session.login, g.login);
                }
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.contains("another guest has this name")
                        || message.contains("already has the route")
                        || message.contains("belongs to the host"),
                    "{}", message
                );
            }
        }
    }

    /// Anything at all is read without a panic; a refusal names the file.
    #[test]
    fn any_text_is_refused_cleanly(junk in ".{0,200}", keep in 0usize..400) {
        let base = text(&[Guest {
            name: "a".into(),
            route: "/a".into(),
            memory_mib: 64,
            timeout_ms: 1000,
            read: vec![],
            quota_kib: 1,
            login: false,
        }]);
        // A valid manifest with junk spliced in somewhere.
        let at = base.char_indices().map(|(i, _)| i).nth(keep % base.len()).unwrap_or(0);
        let spliced = format!("{}{junk}{}", &base[..at], &base[at..]);
        if let Err(e) = parse(&spliced) {
            prop_assert!(e.to_string().starts_with("/app/rawalite.toml"), "{}", e);
        }
    }
}

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(Path::new("/app/rawalite.toml"), text)
}

const MINIMAL: &str = "[app]\nname = \"t\"\n";

#[test]
fn paths_are_relative_to_the_manifest() {
    let m = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"hello\"\ncomponent = \"guests/hello.wasm\"\nroute = \"/hello\"\n"
    ))
    .unwrap();
    assert_eq!(m.data_dir, Path::new("/app/data"));
    assert_eq!(m.guests[0].component, Path::new("/app/guests/hello.wasm"));
    assert_eq!(m.guests[0].limits, Limits::default());
}

#[test]
fn browser_grants_name_static_files_and_other_guests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    std::fs::write(dir.path().join("static/app.js"), "").unwrap();
    let manifest = |browser: &str| {
        Manifest::parse(
            &dir.path().join("rawalite.toml"),
            &format!(
                "[app]\nname = \"t\"\nstatic = \"static\"\n\
                 [[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.browser]\n{browser}\n\
                 [[guest]]\nname = \"b\"\ncomponent = \"b.wasm\"\n"
            ),
        )
    };
    let m = manifest("scripts = [\"/static/app.js\"]\naccept_from = [\"b\"]").unwrap();
    assert_eq!(m.guests[0].browser.scripts, ["/static/app.js"]);
    assert_eq!(m.guests[0].browser.accept_from, ["b"]);
    assert_eq!(
        m.guests[1].browser,
        BrowserGrant::default(),
        "nothing by default"
    );
    for (bad, why) in [
        (
            "scripts = [\"/a/app.js\"]",
            "a file the host serves from /static/",
        ),
        (
            "scripts = [\"/static/missing.js\"]",
            "is not a file of the static directory",
        ),
        ("scripts = [\"/static/../x.js\"]", "a plain path"),
        ("scripts = [\"/static/a.js; script-src *\"]", "a plain path"),
        ("accept_from = [\"c\"]", "`c` is not another guest"),
        ("accept_from = [\"a\"]", "`a` is not another guest"),
        ("frames = true", "unknown field"),
    ] {
        let e = manifest(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(e.contains("browser"), "{bad}: {e}");
    }
}

#[test]
fn limits_are_parsed_with_units() {
    let m = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\n[guest.limits]\nmemory = \"256 MiB\"\ntimeout_ms = 250\nresponse = \"1 MiB\"\n"
    ))
    .unwrap();
    let limits = m.guests[0].limits;
    assert_eq!(limits.memory, 256 << 20);
    assert_eq!(limits.timeout, Duration::from_millis(250));
    assert_eq!(limits.response_bytes, 1 << 20);
    assert_eq!(limits.db_bytes, 16 << 20);
}

#[test]
fn db_limits_follow_memory_unless_given() {
    let guest = |limits: &str| {
        parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\n[guest.limits]\n{limits}\n"
        ))
        .map(|m| m.guests[0].limits)
    };
    assert_eq!(guest("memory = \"8 MiB\"").unwrap().db_bytes, 4 << 20);
    let l = guest("db_rows = 50\ndb_bytes = \"2 MiB\"").unwrap();
    assert_eq!((l.db_rows, l.db_bytes), (50, 2 << 20));
    let e = guest("memory = \"8 MiB\"\ndb_bytes = \"32 MiB\"").unwrap_err();
    assert!(e.to_string().contains("db_bytes must be between"), "{e}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\nrout = \"/p\"\n"
    ))
    .unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("/app/rawalite.toml:6: "), "{text}");
    assert!(text.contains("rout"), "{text}");
}

#[test]
fn bad_size_names_the_key() {
    let e = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\n[guest.limits]\nmemory = \"lots\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("guest[0].limits.memory"), "{e}");
}

#[test]
fn duplicate_names_and_routes_are_refused() {
    let g = "[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroute = \"/a\"\n";
    let e = parse(&format!("{MINIMAL}{g}{g}")).unwrap_err();
    assert!(e.to_string().contains("another guest has this name"), "{e}");
    let e = parse(&format!(
        "{MINIMAL}{g}[[guest]]\nname = \"b\"\ncomponent = \"b.wasm\"\nroute = \"/a\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("already has the route"), "{e}");
}

#[test]
fn bad_route_is_refused() {
    for route in ["customers", "/customers/", "/a b", "/x?y"] {
        let e = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroute = \"{route}\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("route"), "{route}: {e}");
    }
}

#[test]
fn db_grant_is_parsed_and_host_tables_refused() {
    let m = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.db]\nread = [\"Customers\"]\nwrite = [\"invoices\"]\n"
    ))
    .unwrap();
    let grant = m.guests[0].db.as_ref().unwrap();
    assert_eq!(
        grant.readable().into_iter().collect::<Vec<_>>(),
        ["customers", "invoices"]
    );
    let e = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.db]\nread = [\"users\"]\n"
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("guest[0] (a).db: `users` belongs to the host"),
        "{e}"
    );
    let e = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.db]\nreed = [\"x\"]\n"
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("guest[0].db.reed: unknown field"),
        "{e}"
    );
}

#[test]
fn paths_grants_name_known_roots_with_a_quota() {
    let roots = "[paths]\nexports = \"exports\"\narchive = \"/srv/archive\"\n";
    let m = parse(&format!(
        "{MINIMAL}{roots}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.paths]\nexports = {{ access = \"read-write\", quota = \"50 MiB\" }}\narchive = {{ access = \"read-only\" }}\n"
    ))
    .unwrap();
    assert_eq!(m.roots["archive"], Path::new("/srv/archive"));
    assert_eq!(m.guests[0].paths["exports"].quota(), 50 << 20);
    for (grant, needle) in [
        (
            "nope = { access = \"read-only\" }",
            "there is no root `nope` in [paths] (roots: archive, exports)",
        ),
        ("exports = { access = \"read-write\" }", "needs a quota"),
        (
            "exports = { access = \"read-only\", quota = \"1 MiB\" }",
            "takes no quota",
        ),
        ("exports = { access = \"write-only\" }", "unknown variant"),
    ] {
        let e = parse(&format!(
            "{MINIMAL}{roots}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.paths]\n{grant}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains(needle), "{grant}: {e}");
    }
}

#[test]
fn hosts_and_trusted_proxies_are_checked() {
    let m = parse(
        "[app]\nname = \"t\"\nhosts = [\"app.example\", \"app.example:8443\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
    )
    .unwrap();
    assert_eq!(m.hosts, ["app.example", "app.example:8443"]);
    assert!(m.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
    assert!(m.trusted_proxies[1].contains("::1".parse().unwrap()));
    assert!(!m.trusted_proxies[0].contains("11.0.0.1".parse().unwrap()));
    for (app, needle) in [
        ("hosts = [\"evil example\"]", "app.hosts"),
        ("hosts = [\"a.example:99999\"]", "not a port"),
        ("trusted_proxies = [\"10.0.0.0/33\"]", "trusted_proxies"),
    ] {
        let e = parse(&format!("[app]\nname = \"t\"\n{app}\n")).unwrap_err();
        assert!(e.to_string().contains(needle), "{app}: {e}");
    }
}

#[test]
fn missing_guest_lists_the_others() {
    let m = parse(&format!(
        "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n"
    ))
    .unwrap();
    let e = m.guest("b").unwrap_err();
    assert!(
        e.to_string().contains("no guest named `b` (guests: a)"),
        "{e}"
    );
}

/// Each `ui/NAME.toml` is refused with the text of `ui/NAME.err`, whole:
/// what a user reads is part of the contract. `RAWALITE_BLESS=1` writes
/// the texts anew, for a review of their diff.
#[test]
fn every_ui_manifest_is_refused_with_its_text() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/manifest/ui");
    let bless = std::env::var_os("RAWALITE_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "{} cases in {}",
        cases.len(),
        dir.display()
    );
    for case in cases {
        let text = std::fs::read_to_string(&case).unwrap();
        let refused = match parse(&text) {
            Ok(_) => panic!("{} was accepted", case.display()),
            Err(e) => format!("{e}\n"),
        };
        let expected = case.with_extension("err");
        if bless {
            std::fs::write(&expected, &refused).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run with RAWALITE_BLESS=1 to write it",
                expected.display()
            )
        });
        assert_eq!(refused, want, "{}", case.display());
    }
}
