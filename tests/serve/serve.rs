//! `rawalite serve` over real HTTP on 127.0.0.1: sign-in and cookies, the
//! same-origin rule, the header allowlist, request limits, a trapping guest
//! next to healthy ones, concurrency, and a SIGTERM under write load.

mod common;

use common::{Served, agent, demo_manifest};
use std::io::{BufRead, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn start() -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), true);
    let served = Served::start(&file, &dir.path().join("data"), &common::shared_cache());
    (dir, served)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("the server answered");
    Reply {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

fn get(served: &Served, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = agent().get(served.url(path)).header("Accept", "text/html");
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    reply(request.call())
}

fn post(served: &Served, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
    let mut request = agent()
        .post(served.url(path))
        .header("Accept", "text/html")
        .header("Origin", &served.base);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    reply(request.send_form(form.iter().copied()))
}

/// Signs in as admin and returns the `name=value` of the session cookie.
fn sign_in(served: &Served) -> String {
    let (status, body, cookie) =
        common::sign_in(&served.base, "127.0.0.1", &served.admin_password);
    assert_eq!(status, 303, "{body}");
    cookie.expect("a session cookie")
}

fn assert_security_headers(r: &Reply) {
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
}

#[test]
fn a_browser_without_a_session_is_sent_to_sign_in() {
    let (_dir, served) = start();
    let r = get(&served, "/customers?q=ada", None);
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/login?next=%2Fcustomers%3Fq%3Dada")
    );
    assert_security_headers(&r);
    // A client that does not want HTML gets the status, not a redirect.
    let r = reply(agent().get(served.url("/customers")).call());
    assert_eq!(r.status, 401);
    let r = get(&served, "/login", None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Sign in"));
}

#[test]
fn signing_in_sets_an_http_only_strict_cookie() {
    let (_dir, served) = start();
    let wrong = post(
        &served,
        "/login",
        None,
        &[("username", "admin"), ("password", "not it at all")],
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.body.contains("the username or the password is wrong"));

    let r = post(
        &served,
        "/login",
        None,
        &[
            ("username", "admin"),
            ("password", &served.admin_password),
            ("next", "/customers"),
        ],
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/customers"));
    let set = r.header("set-cookie").unwrap();
    for part in [
        "rawalite_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(part), "`{part}` missing in {set}");
    }
    assert!(!set.contains("Secure"), "plain http must not set Secure");
    let cookie = set.split(';').next().unwrap();
    let page = get(&served, "/customers", Some(cookie));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>Customers</h1>"));
    assert_security_headers(&page);

    // A client cannot claim to be behind a TLS proxy: no proxy is trusted.
    let r = reply(
        agent()
            .post(served.url("/login"))
            .header("Origin", &served.base)
            .header("X-Forwarded-Proto", "https")
            .send_form([
                ("username", "admin"),
                ("password", served.admin_password.as_str()),
            ]),
    );
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.starts_with("rawalite_session=") && !set.contains("Secure"),
        "{set}"
    );

    // Signing out clears the cookie and ends the session.
    let out = post(&served, "/login/logout", Some(cookie), &[]);
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get(&served, "/customers", Some(cookie)).status, 303);
}

#[test]
fn behind_a_trusted_proxy_the_cookie_is_secure_and_clients_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), true);
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "[app]\n",
        "[app]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let served = Served::start(&file, &dir.path().join("data"), &common::shared_cache());
    let sign_in = |client: &str, password: &str| {
        reply(
            agent()
                .post(served.url("/login"))
                .header("Origin", &served.base.replace("http://", "https://"))
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-For", client)
                .send_form([("username", "admin"), ("password", password)]),
        )
    };
    let r = sign_in("203.0.113.5", &served.admin_password);
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with("__Host-rawalite_session="), "{set}");
    assert!(set.ends_with("; Secure"), "{set}");
    // The cookie of the HTTPS name is the one that signs a request in.
    let cookie = set.split(';').next().unwrap();
    let page = reply(
        agent()
            .get(served.url("/customers"))
            .header("X-Forwarded-Proto", "https")
            .header("Cookie", cookie)
            .call(),
    );
    assert_eq!(page.status, 200);

    // The proxy's clients are counted apart: five failures from one stop
    // that one, not the admin signing in from another.
    for _ in 0..5 {
        assert_eq!(sign_in("203.0.113.66", "not the password").status, 401);
    }
    let refused = sign_in("203.0.113.66", &served.admin_password);
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("too many failed sign-ins"),
        "{}",
        refused.body
    );
    assert_eq!(sign_in("203.0.113.77", &served.admin_password).status, 303);
}

#[test]
fn a_cross_origin_post_is_refused() {
    let (_dir, served) = start();
    let cookie = sign_in(&served);
    let attempt = |origin: Option<&str>, fetch_site: Option<&str>| {
        let mut request = agent()
            .post(served.url("/customers/new"))
            .header("Cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        if let Some(site) = fetch_site {
            request = request.header("Sec-Fetch-Site", site);
        }
        reply(request.send_form([("name", "Mallory")]))
    };
    assert_eq!(attempt(Some("http://evil.example"), None).status, 403);
    assert_eq!(attempt(Some("null"), None).status, 403);
    assert_eq!(attempt(None, Some("cross-site")).status, 403);
    assert_eq!(attempt(None, None).status, 403);
    let refused = attempt(Some("http://evil.example"), None);
    assert!(refused.body.contains("did not come from this site"));
    // Nothing was created.
    assert!(
        !get(&served, "/customers", Some(&cookie))
            .body
            .contains("Mallory")
    );
    // The same request from this site works: from a client without Fetch
    // Metadata by its Origin, from a browser from the guest's own page.
    assert_eq!(attempt(Some(&served.base), None).status, 303);
    let from_page = |referer: Option<String>| {
        let mut request = agent()
            .post(served.url("/customers/new"))
            .header("Cookie", &cookie)
            .header("Origin", &served.base)
            .header("Sec-Fetch-Site", "same-origin")
            .header("Sec-Fetch-Mode", "navigate")
            .header("Sec-Fetch-Dest", "document");
        if let Some(referer) = referer {
            request = request.header("Referer", referer);
        }
        reply(request.send_form([("name", "Ada")])).status
    };
    assert_eq!(from_page(Some(served.url("/customers/new"))), 303);
    // From another guest's page, or from a page that hid itself: refused.
    assert_eq!(from_page(Some(served.url("/hello/x"))), 403);
    assert_eq!(from_page(Some(served.url("/static/app.css"))), 403);
    assert_eq!(
        from_page(Some("http://evil.example/customers/new".into())),
        403
    );
    assert_eq!(from_page(None), 403);
}

#[test]
fn between_guests_a_browser_may_follow_links_and_nothing_else() {
    let (_dir, served) = start();
    let cookie = sign_in(&served);
    // What a browser sends for a request made by a page of `from`.
    let request = |method: &str, to: &str, from: &str, mode: &str, dest: &str| {
        let mut r = ureq::http::Request::builder()
            .method(method)
            .uri(served.url(to))
            .header("Cookie", &cookie)
            .header("Sec-Fetch-Site", "same-origin")
            .header("Sec-Fetch-Mode", mode)
            .header("Sec-Fetch-Dest", dest)
            .header("Referer", served.url(from));
        if method == "POST" {
            r = r.header("Origin", &served.base);
        }
        reply(agent().run(r.body(Vec::new()).unwrap())).status
    };
    // A link from the dashboard to the settings: a navigation, fine.
    assert_eq!(
        request("GET", "/settings", "/", "navigate", "document"),
        200
    );
    // The same page as an image, a script, a frame or a fetch: refused.
    for (mode, dest) in [
        ("no-cors", "image"),
        ("no-cors", "script"),
        ("navigate", "iframe"),
        ("cors", "empty"),
    ] {
        assert_eq!(
            request("GET", "/settings", "/hello/x", mode, dest),
            403,
            "{mode} {dest}"
        );
        // ...unless it is the guest's own page asking.
        assert_eq!(
            request("GET", "/settings", "/settings", mode, dest),
            200,
            "{mode} {dest}"
        );
    }
    // A form from an invoice to exports: accepted, because exports accepts
    // the invoices' pages; from the customers' pages, refused.
    assert_ne!(
        request(
            "POST",
            "/exports/invoice",
            "/invoices/1",
            "navigate",
            "document"
        ),
        403
    );
    assert_eq!(
        request(
            "POST",
            "/exports/invoice",
            "/customers",
            "navigate",
            "document"
        ),
        403
    );
}

#[test]
fn a_guests_set_cookie_never_reaches_the_client() {
    let (_dir, served) = start();
    let path = "/probe/headers?set-cookie=rawalite_session%3Dforged&content-security-policy=default-src+*&x-frame-options=ALLOWALL&access-control-allow-origin=*&cache-control=max-age%3D60&location=https%3A%2F%2Fevil.example%2F";
    let r = get(&served, path, None);
    assert_eq!(r.status, 200);
    assert!(r.all("set-cookie").is_empty(), "{:?}", r.headers);
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(
        r.header("location"),
        Some("/"),
        "an off-site redirect goes home"
    );
    assert_eq!(r.all("content-security-policy").len(), 1);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    assert_security_headers(&r);
}

#[test]
fn request_limits_answer_413_414_and_421() {
    let (_dir, served) = start();
    let big = vec![b'x'; 2 << 20];
    let r = reply(
        agent()
            .post(served.url("/probe/echo"))
            .header("Origin", &served.base)
            .send(&big[..]),
    );
    assert_eq!(r.status, 413);
    assert!(r.body.contains("Request id"));
    let long = format!("/probe/echo?q={}", "a".repeat(10_000));
    assert_eq!(get(&served, &long, None).status, 414);
    let r = reply(
        agent()
            .get(served.url("/hello"))
            .header("Host", "evil.example")
            .call(),
    );
    assert_eq!(r.status, 421);
    // Just under the body limit is fine.
    let r = reply(
        agent()
            .post(served.url("/probe/echo"))
            .header("Origin", &served.base)
            .send(&big[..(1 << 20) - 1]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_body_over_the_limit_gets_its_413_even_while_the_client_still_sends() {
    use std::io::{Read, Write};
    let (_dir, served) = start();
    let addr = served.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let size = 2 << 20;
    write!(
        s,
        "POST /probe/echo HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nContent-Length: {size}\r\n\r\n",
        served.base
    )
    .unwrap();
    // More than the limit, then a pause in which the server answers and
    // closes, then the rest: a browser uploading a large form does this.
    let body = vec![b'x'; size];
    let (first, rest) = body.split_at(size * 3 / 4);
    s.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // In pieces, as a slow link sends: a closed socket answers the first
    // piece with a reset, and the next write fails.
    for piece in rest.chunks(64 << 10) {
        s.write_all(piece)
            .expect("the server kept reading after its answer instead of resetting");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .expect("the answer arrived before the connection closed");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("Request id"), "{answer}");
}

#[test]
fn a_trapping_guest_gets_an_error_page_while_other_routes_serve() {
    let (_dir, served) = start();
    for (path, status) in [
        ("/probe/panic", 500),
        ("/probe/alloc?mb=500", 500),
        ("/probe/big?mb=9", 500),
    ] {
        let r = get(&served, path, None);
        assert_eq!(r.status, status, "{path}");
        assert!(r.body.contains("Request id <code>"), "{}", r.body);
        assert!(!r.body.contains("panicked"), "details leaked: {}", r.body);
        assert!(
            !r.body.contains("probe was asked"),
            "details leaked: {}",
            r.body
        );
        assert_eq!(get(&served, "/hello", None).status, 200);
    }
    let r = get(&served, "/probe/echo", None);
    assert_eq!(r.status, 200);
    let r = get(&served, "/static/app.css", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    let escape = get(&served, "/static/../rawalite.toml", None);
    assert_eq!(escape.status, 404);
    assert!(!escape.body.contains("[app]"));
    assert_eq!(get(&served, "/static/nope.css", None).status, 404);
    assert_eq!(get(&served, "/no/such/route", None).status, 303);
}

#[test]
fn a_slow_guest_does_not_block_the_others() {
    let (_dir, served) = start();
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let url = served.url("/probe/spin");
            std::thread::spawn(move || reply(agent().get(url).call()).status)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(get(&served, "/hello", None).status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "hello waited for the spinners"
    );
    for spinner in spinners {
        assert_eq!(spinner.join().unwrap(), 504);
    }
}

#[test]
fn concurrent_requests_across_guests_up_to_one_address_share_all_succeed() {
    let (_dir, served) = start();
    let cookie = sign_in(&served);
    let paths = [
        "/hello/x",
        "/probe/echo",
        "/login",
        "/static/app.css",
        "/customers",
        "/invoices",
        "/",
        "/settings",
    ];
    let base = served.base.clone();
    let failures = Arc::new(Mutex::new(Vec::new()));
    // One address may hold 128 connections (listen::PER_ADDRESS).
    let threads: Vec<_> = (0..120)
        .map(|i| {
            let url = format!("{base}{}", paths[i % paths.len()]);
            let cookie = cookie.clone();
            let failures = failures.clone();
            std::thread::spawn(move || {
                let r = reply(agent().get(&url).header("Cookie", &cookie).call());
                if r.status != 200 {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{url}: {}", r.status));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*failures.lock().unwrap(), Vec::<String>::new());
}

#[test]
fn sigterm_during_write_load_loses_no_acknowledged_write() {
    let (dir, mut served) = start();
    let base = served.base.clone();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let base = base.clone();
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let name = format!("writer-{w}-{i}");
                    let url = format!(
                        "{base}/probe/db/execute?sql=INSERT%20INTO%20customers%20(name)%20VALUES%20(%3F)&p=t:{name}"
                    );
                    match agent().post(&url).header("Origin", &base).send_empty() {
                        Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().push(name),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let status = served.stop();
    for w in writers {
        w.join().unwrap();
    }
    assert!(status.success(), "serve did not stop cleanly: {status}");
    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.len() > 10,
        "too little load: {}",
        acknowledged.len()
    );
    let conn = rusqlite::Connection::open(dir.path().join("data/rawalite.db")).unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut stmt = conn.prepare("SELECT name FROM customers").unwrap();
    for name in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        stored.insert(name.unwrap());
    }
    common::assert_none_lost(acknowledged.iter(), &stored);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn the_first_run_creates_an_admin_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), true);
    let data = dir.path().join("data");
    let cache = dir.path().join("cache");
    let first = Served::start(&file, &data, &cache);
    assert_eq!(first.admin_password.len(), 20);
    drop(first);
    let second = Served::start(&file, &data, &cache);
    assert_eq!(
        second.admin_password, "",
        "a second admin password was printed"
    );
}

/// `serve --watch` with one guest, `page`, whose component is a copy in
/// the test's directory; the log goes to `dir/serve.log`.
fn start_watching(dir: &std::path::Path, first: &str) -> Served {
    start_watching_with(dir, first, &[])
}

/// [`start_watching`] with more environment (`RUST_LOG`, say).
fn start_watching_with(dir: &std::path::Path, first: &str, envs: &[(&str, &str)]) -> Served {
    std::fs::copy(common::guest(first), dir.join("page.wasm")).unwrap();
    std::fs::write(
        dir.join("rawalite.toml"),
        "[app]\nname = \"watch\"\ndata_dir = \"data\"\n\n\
         [[guest]]\nname = \"page\"\ncomponent = \"page.wasm\"\nroute = \"/page\"\n\
         [guest.limits]\ntimeout_ms = 5000\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    Served::start_with(
        &dir.join("rawalite.toml"),
        &dir.join("data"),
        &common::shared_cache(),
        &["--watch"],
        envs,
        log.into(),
    )
}

/// Replaces `path` the way `rawalite build` does: beside it, then renamed.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// Polls `path` until its body contains `needle`, for at most 10 s.
fn eventually(served: &Served, path: &str, needle: &str) -> Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(served, path, None);
        if r.body.contains(needle) || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_swaps_a_replaced_component_while_requests_in_flight_finish_on_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let served = start_watching(dir.path(), "probe");
    let r = get(&served, "/page/echo?x=1", None);
    assert_eq!(r.status, 200, "{}", r.body);

    // A request in flight on the probe while the component is replaced.
    let slow = {
        let url = served.url("/page/sleep?ms=1500");
        std::thread::spawn(move || agent().get(&url).call().map(|r| r.status().as_u16()))
    };
    std::thread::sleep(Duration::from_millis(200));
    replace(
        &dir.path().join("page.wasm"),
        &std::fs::read(common::guest("hello")).unwrap(),
    );
    let r = eventually(&served, "/page/greet", "<p>GET /greet</p>");
    assert!(
        r.body.contains("<p>GET /greet</p>"),
        "hello never took over: {}",
        r.body
    );
    assert_eq!(
        slow.join().unwrap().unwrap(),
        200,
        "the old version finished its request"
    );

    // A file that is not a component: the log says why and hello serves on.
    replace(&dir.path().join("page.wasm"), b"not a component");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
        if log.contains("reload failed") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        log.contains("reload failed: the previous version keeps serving"),
        "{log}"
    );
    assert!(
        log.contains("guest=page") && log.contains("page.wasm"),
        "{log}"
    );
    let r = get(&served, "/page/greet", None);
    assert!(r.body.contains("<p>GET /greet</p>"), "{}", r.body);
}

#[test]
fn watch_keeps_each_guests_share_across_a_reload_and_refuses_a_root_added_since_start() {
    let dir = tempfile::tempdir().unwrap();
    let served = start_watching_with(dir.path(), "probe", &[("RUST_LOG", "info")]);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let share = (cores * 8).clamp(16, 128) / 2;
    let sleepers = |n: usize, ms: u64| -> Vec<std::thread::JoinHandle<(u16, std::time::Instant)>> {
        (0..n)
            .map(|_| {
                let url = served.url(&format!("/page/sleep?ms={ms}"));
                std::thread::spawn(move || {
                    let status = agent().get(&url).call().map_or(0, |r| r.status().as_u16());
                    (status, std::time::Instant::now())
                })
            })
            .collect()
    };
    // The guest's whole share sleeps; then the component is replaced (the
    // same bytes, a new file) and reloaded.
    let first = sleepers(share, 3500);
    std::thread::sleep(Duration::from_millis(1000));
    replace(
        &dir.path().join("page.wasm"),
        &std::fs::read(common::guest("probe")).unwrap(),
    );
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let waited = std::time::Instant::now();
    while !log().contains("reloaded") {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "no reload: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new version has the same share, still held by the old renders:
    // its renders wait for them instead of doubling the guest's threads.
    let second = sleepers(share, 3000);
    let first: Vec<_> = first.into_iter().map(|t| t.join().unwrap()).collect();
    let second: Vec<_> = second.into_iter().map(|t| t.join().unwrap()).collect();
    let statuses: Vec<u16> = first.iter().chain(&second).map(|(s, _)| *s).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let first_done = first.iter().map(|(_, at)| *at).min().unwrap();
    for (_, done) in &second {
        assert!(
            *done >= first_done + Duration::from_millis(2500),
            "a render of the new version ran beside the old ones: it ended {:?} after the first old one",
            done.saturating_duration_since(first_done)
        );
    }

    // A root added to the manifest since start: refused with what to do,
    // and the running version keeps serving.
    let manifest = dir.path().join("rawalite.toml");
    let with_root = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[[guest]]", "[paths]\nnewroot = \"newroot\"\n\n[[guest]]")
        + "[guest.paths]\nnewroot = { access = \"read-write\", quota = \"1 MiB\" }\n";
    replace(&manifest, with_root.as_bytes());
    let waited = std::time::Instant::now();
    while !log().contains("was added to [paths] after this server started") {
        assert!(waited.elapsed() < Duration::from_secs(30), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!log().contains("panicked"), "{}", log());
    assert_eq!(get(&served, "/page/echo", None).status, 200);
}

#[test]
fn watch_applies_a_changed_grant_on_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let served = start_watching(dir.path(), "probe");
    let count = "/page/db/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20customers";
    let r = get(&served, count, None);
    assert!(r.body.contains("[guest.db]"), "denied first: {}", r.body);

    let manifest = dir.path().join("rawalite.toml");
    let granted =
        std::fs::read_to_string(&manifest).unwrap() + "[guest.db]\nread = [\"customers\"]\n";
    replace(&manifest, granted.as_bytes());
    let r = eventually(&served, count, "\"n\"");
    assert_eq!(
        r.status,
        200,
        "the grant never took effect: {}\nserve's log:\n{}",
        r.body,
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );

    // A manifest with an error changes nothing.
    replace(&manifest, b"[[guest]]\nname = 7\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(&served, count, None).status, 200);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("the manifest has an error"), "{log}");
}

/// `rawalite ARGS --data DIR` against a running server's data directory.
fn operate(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let data = dir.join("data");
    common::run(&[args, &["--data", data.to_str().unwrap()]].concat())
}

#[test]
fn an_operator_sees_sessions_ends_them_and_disables_a_user_at_once() {
    let (dir, served) = start();
    let cookie = sign_in(&served);
    assert_eq!(get(&served, "/", Some(&cookie)).status, 200);

    // Who is signed in, from where, never the token.
    let (code, list) = operate(dir.path(), &["session", "list"]);
    assert_eq!(code, 0, "{list}");
    let row = list
        .lines()
        .find(|l| l.contains("admin"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("127.0.0.1"), "{row}");
    let token = cookie.split_once('=').unwrap().1;
    assert!(!list.contains(token), "the token must never show: {list}");
    let id = row.split_whitespace().next().unwrap().to_owned();

    // Revoking the session signs the browser out.
    let (code, out) = operate(dir.path(), &["session", "revoke", &id]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(get(&served, "/", Some(&cookie)).status, 303);
    let (code, out) = operate(dir.path(), &["session", "revoke", &id]);
    assert_eq!(code, 2, "a second revoke finds nothing: {out}");

    // Disabling ends the new session at once and refuses sign-in.
    let cookie = sign_in(&served);
    let (code, out) = operate(dir.path(), &["user", "disable", "admin"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(get(&served, "/", Some(&cookie)).status, 303);
    let refused = post(
        &served,
        "/login",
        None,
        &[("username", "admin"), ("password", &served.admin_password)],
    );
    assert_ne!(refused.status, 303, "a disabled user cannot sign in");
    let (_, users) = operate(dir.path(), &["user", "list"]);
    assert!(users.contains("(disabled)"), "{users}");

    // Enabled again, the same password works.
    let (code, out) = operate(dir.path(), &["user", "enable", "admin"]);
    assert_eq!(code, 0, "{out}");
    let cookie = sign_in(&served);
    assert_eq!(get(&served, "/", Some(&cookie)).status, 200);
    let (code, out) = operate(dir.path(), &["session", "revoke", "--user", "admin"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ended 1 session"), "{out}");
    assert_eq!(get(&served, "/", Some(&cookie)).status, 303);
}

#[test]
fn sign_in_limits_survive_a_crash_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::demo_manifest(dir.path(), false);
    let data = dir.path().join("data");
    let mut served = Served::start(&file, &data, &common::shared_cache());
    let password = served.admin_password.clone();
    let try_password = |served: &Served, password: &str| {
        post(
            served,
            "/login",
            None,
            &[("username", "admin"), ("password", password)],
        )
    };
    for _ in 0..5 {
        assert_ne!(try_password(&served, "wrong password").status, 303);
    }
    let refused = try_password(&served, &password);
    assert_ne!(refused.status, 303, "the pair is stopped: {}", refused.body);

    // Killed after the counts were saved (every 2 s): still stopped.
    std::thread::sleep(Duration::from_millis(2500));
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    let mut served = Served::start(&file, &data, &common::shared_cache());
    let refused = try_password(&served, &password);
    assert_ne!(
        refused.status, 303,
        "forgotten by a crash: {}",
        refused.body
    );

    // A clean stop saves them too.
    served.stop();
    let served = Served::start(&file, &data, &common::shared_cache());
    assert_ne!(
        try_password(&served, &password).status,
        303,
        "forgotten by a restart"
    );
}

#[test]
fn healthz_says_the_database_migrations_and_guests_are_ready() {
    let (_dir, served) = start();
    let r = get(&served, "/healthz", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let health: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["migrations"], "current");
    assert_eq!(health["guests"]["dashboard"], "loaded");
    assert_eq!(health["guests"]["reports"], "loaded");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_security_headers(&r);
}

#[test]
fn a_guest_still_compiling_answers_503_with_retry_after_until_it_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"c\"\ndata_dir = \"data\"\n\n\
             [[guest]]\nname = \"big\"\ncomponent = \"{}\"\nroute = \"/big\"\n\n\
             [[guest]]\nname = \"small\"\ncomponent = \"{}\"\nroute = \"/\"\n",
            common::guest("python-hello").display(),
            common::guest("ts-hello").display()
        ),
    )
    .unwrap();
    // An empty compile cache: the Python guest takes seconds to compile.
    let cache = dir.path().join("cache");
    let served = Served::start_compiling(&manifest, &dir.path().join("data"), &cache);
    let r = get(&served, "/big/page", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(r.body.contains("still compiling"), "{}", r.body);
    let health = get(&served, "/healthz", None);
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(
        health.body.contains("\"big\":\"compiling\""),
        "{}",
        health.body
    );
    // Ready once compiled: /healthz says so, and the route answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while get(&served, "/healthz", None).status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&served, "/big/page", None).status, 200);
    assert_eq!(get(&served, "/other", None).status, 200);
    drop(served);

    // `rawalite compile` fills another cache ahead of a start: every route
    // answers at once.
    let cache = dir.path().join("cache-2");
    let out = std::process::Command::new(common::bin())
        .args(["compile", "--manifest"])
        .arg(&manifest)
        .env("RAWALITE_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let printed = common::stdout(&out);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        printed.contains("big: compiled in") && printed.contains("small: compiled in"),
        "{printed}"
    );
    // `doctor` says which guests a start would still have to compile.
    let doctor = |cache: &std::path::Path| {
        let out = std::process::Command::new(common::bin())
            .args(["doctor", "--manifest"])
            .arg(&manifest)
            .env("RAWALITE_CACHE_DIR", cache)
            .output()
            .unwrap();
        common::stdout(&out)
    };
    let said = doctor(&cache);
    assert!(said.contains("every guest is compiled"), "{said}");
    let said = doctor(&dir.path().join("cache-3"));
    assert!(
        said.contains("WARN  not compiled yet: big, small;"),
        "{said}"
    );
    assert!(said.contains("`rawalite compile` first"), "{said}");

    let served = Served::start_compiling(&manifest, &dir.path().join("data"), &cache);
    assert_eq!(get(&served, "/healthz", None).status, 200);
    assert_eq!(get(&served, "/big/page", None).status, 200);
}

/// An app in `dir` with hello at `/page`, from a copy of its component.
fn hello_app(dir: &std::path::Path) {
    std::fs::copy(common::guest("hello"), dir.join("page.wasm")).unwrap();
    std::fs::write(
        dir.join("rawalite.toml"),
        "[app]\nname = \"h\"\ndata_dir = \"data\"\n\n[[guest]]\nname = \"page\"\ncomponent = \"page.wasm\"\nroute = \"/page\"\n",
    )
    .unwrap();
}

#[test]
fn watch_reports_a_guest_that_never_loaded_as_unhealthy_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    hello_app(dir.path());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let served = Served::start_with(
        &dir.path().join("rawalite.toml"),
        &dir.path().join("data"),
        &common::shared_cache(),
        &["--watch", "--log-format", "json"],
        &[("RUST_LOG", "info")],
        log.into(),
    );
    assert_eq!(get(&served, "/healthz", None).status, 200);
    // A second guest whose component does not exist: never loaded.
    let manifest = dir.path().join("rawalite.toml");
    let more = std::fs::read_to_string(&manifest).unwrap()
        + "\n[[guest]]\nname = \"ghost\"\ncomponent = \"ghost.wasm\"\nroute = \"/ghost\"\n";
    replace(&manifest, more.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = get(&served, "/healthz", None);
        if r.status != 200 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("\"ghost\":\"not loaded\""), "{}", r.body);
    // Every log line is one JSON object (the log is written out within a
    // moment, not at once).
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let waited = std::time::Instant::now();
    while !log().contains("reload failed") {
        assert!(waited.elapsed() < Duration::from_secs(10), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&served, "/page/last", None).status, 200);
    drop(served);
    for line in log().lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["level"].is_string(), "{line}");
    }
    // The request just before SIGTERM is logged: the log is written out
    // at exit.
    assert!(
        log().contains(r#""method":"GET","path":"/page/last","status":200"#),
        "{}",
        log()
    );
}

#[test]
fn metrics_count_requests_renders_stops_denials_and_sign_in_failures_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::demo_manifest(dir.path(), true);
    let served = Served::start_with(
        &file,
        &dir.path().join("data"),
        &common::shared_cache(),
        &["--metrics", "127.0.0.1:0"],
        &[],
        std::process::Stdio::null(),
    );
    let metrics_url = loop {
        let line = served
            .stdout
            .recv_timeout(Duration::from_secs(30))
            .expect("the metrics address");
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_owned();
        }
    };
    let wrong = post(
        &served,
        "/login",
        None,
        &[("username", "admin"), ("password", "not it")],
    );
    assert_ne!(wrong.status, 303);
    let cookie = sign_in(&served);
    assert_eq!(get(&served, "/", Some(&cookie)).status, 200);
    get(
        &served,
        "/probe/db/query?sql=SELECT%20*%20FROM%20invoices",
        None,
    );
    get(&served, "/probe/panic", None);
    // Never on the app's own listener.
    assert_ne!(get(&served, "/metrics", None).status, 200);

    let mut scraped = agent().get(&metrics_url).call().unwrap();
    let text = scraped.body_mut().read_to_string().unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
    };
    assert!(value(r#"rawalite_requests_total{guest="dashboard",status="200"}"#) >= 1.0);
    assert!(value(r#"rawalite_render_seconds_count{guest="dashboard"}"#) >= 1.0);
    assert_eq!(
        value(r#"rawalite_guests_stopped_total{guest="probe",cause="panic"}"#),
        1.0
    );
    assert_eq!(
        value(r#"rawalite_capability_calls_total{guest="probe",capability="db",outcome="denied"}"#),
        1.0
    );
    assert!(
        value(r#"rawalite_capability_calls_total{guest="dashboard",capability="db",outcome="ok"}"#)
            >= 1.0
    );
    assert_eq!(value("rawalite_sign_in_failures_total"), 1.0);
    assert!(value("rawalite_database_bytes") > 0.0);
    value(r#"rawalite_root_bytes{root="exports"}"#);
    // The log's file keeps up: no line dropped.
    assert_eq!(value("rawalite_log_lines_dropped_total"), 0.0);

    // The metrics listener answers only loopback names on loopback...
    let evil = agent()
        .get(&metrics_url)
        .header("Host", "evil.example")
        .call()
        .unwrap();
    assert_eq!(evil.status(), 421);
    // ...and holds few connections: half-sent heads past its cap get 503,
    // while the app's own port serves on.
    let addr: std::net::SocketAddr = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let held: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut refused = std::net::TcpStream::connect(addr).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = [0u8; 12];
    refused.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
    assert_eq!(get(&served, "/healthz", None).status, 200);
    drop(held);
}

#[test]
fn the_compile_cache_keeps_what_is_served_and_drops_the_rest_past_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::copy(common::guest("hello"), dir.path().join("page.wasm")).unwrap();
    std::fs::write(
        dir.path().join("rawalite.toml"),
        "[app]\nname = \"c\"\ndata_dir = \"data\"\n\n[[guest]]\nname = \"page\"\ncomponent = \"page.wasm\"\nroute = \"/page\"\n",
    )
    .unwrap();
    let artifacts = || -> usize {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
    };
    // A cap of one byte: only what a route uses may stay.
    let served = Served::start_with(
        &dir.path().join("rawalite.toml"),
        &dir.path().join("data"),
        &cache,
        &["--watch"],
        &[("RAWALITE_CACHE_MAX", "1")],
        std::process::Stdio::null(),
    );
    assert_eq!(artifacts(), 1, "hello's artifact, in use, stays");
    replace(
        &dir.path().join("page.wasm"),
        &std::fs::read(common::guest("probe")).unwrap(),
    );
    let r = eventually(&served, "/page/echo", "\"path\":\"/echo\"");
    assert_eq!(r.status, 200, "{}", r.body);
    // Pruning follows the swap; give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while artifacts() != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(artifacts(), 1, "only the probe's artifact is left");
}

#[test]
fn a_log_nobody_reads_never_holds_up_a_request() {
    let dir = tempfile::tempdir().unwrap();
    hello_app(dir.path());
    // stderr is a pipe this test never reads: it is full after a few
    // hundred access lines, and a write to it would wait forever.
    let mut served = Served::start_with(
        &dir.path().join("rawalite.toml"),
        &dir.path().join("data"),
        &common::shared_cache(),
        &[],
        &[("RUST_LOG", "info")],
        std::process::Stdio::piped(),
    );
    let agent = agent();
    for i in 0..3000 {
        let r = agent
            .get(served.url(&format!("/page/{i}")))
            .call()
            .expect("the server answers");
        assert_eq!(r.status(), 200);
    }
    // Nor its exit: the last write is given a few seconds, not forever.
    assert!(served.stop().success());
}

/// A log destination that stalls (a pipe nobody reads) loses ordinary
/// lines, counted, but never the evidence: denied calls, sign-ins (right
/// and wrong), sign-outs and a revoke are all there once it is read, and
/// no request waited for it meanwhile.
#[test]
fn audit_evidence_survives_a_stalled_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), false);
    let mut manifest = std::fs::read_to_string(&file).unwrap();
    manifest += &format!(
        "\n[[guest]]\nname = \"flood\"\ncomponent = \"{}\"\nroute = \"/flood\"\n",
        common::guest("flood").display()
    );
    std::fs::write(&file, manifest).unwrap();
    let data = dir.path().join("data");
    let mut served = Served::start_with(
        &file,
        &data,
        &common::shared_cache(),
        &[],
        &[("RUST_LOG", "info")],
        std::process::Stdio::piped(),
    );
    let stderr = served.child.stderr.take().unwrap();
    // 64 lines of guest output per request: some 16 MiB in all, far past
    // the log's 4 MiB and the pipe's 64 KiB.
    for _ in 0..2000 {
        assert_eq!(get(&served, "/flood/print?lines=64", None).status, 200);
    }
    let mut denied = 0;
    for _ in 0..5 {
        assert_eq!(get(&served, "/flood/calls?n=3", None).status, 200);
        denied += 3;
    }
    let wrong = post(
        &served,
        "/login",
        None,
        &[("username", "admin"), ("password", "not the password")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let cookie = sign_in(&served);
    assert_eq!(
        post(&served, "/login/logout", Some(&cookie), &[]).status,
        303
    );
    // Read at last: everything kept comes out, then the server stops.
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_string(&mut log);
        log
    });
    served.stop();
    let log = reader.join().unwrap();
    let count = |needles: &[&str]| {
        log.lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    };
    assert_eq!(
        count(&[
            "rawalite::audit",
            "capability=\"paths\"",
            "outcome=\"denied\""
        ]),
        denied
    );
    assert_eq!(count(&["op=\"login\"", "outcome=\"ok\""]), 1);
    assert_eq!(count(&["op=\"login\"", "outcome=\"unauthenticated\""]), 1);
    assert_eq!(count(&["op=\"logout\"", "outcome=\"ok\""]), 1);
    assert_eq!(
        count(&["log lines were dropped because the log's destination did not keep up"]),
        1,
        "ordinary lines were dropped: the destination did stall"
    );
    // A revoke from the command line writes its event too.
    let out = std::process::Command::new(common::bin())
        .args(["session", "revoke", "--user", "admin", "--manifest"])
        .arg(&file)
        .arg("--data")
        .arg(&data)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let revoked = common::stderr(&out);
    assert!(
        revoked.contains("op=\"revoke\"") && revoked.contains("username=\"admin\""),
        "{revoked}"
    );
}

/// Requests whose connections the kernel completed, but `serve` had not
/// taken from its listener, when SIGTERM came (here: sent while the
/// process is stopped, as on a machine too busy to run it) are answered,
/// not reset; so is a request sent on a kept-alive connection then.
#[test]
fn requests_waiting_to_be_read_at_sigterm_are_answered() {
    let (_dir, mut served) = start();
    let address = served.base.trim_start_matches("http://").to_owned();
    let request = format!("GET /login HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    // A connection kept alive after one answer, idle between requests.
    let mut kept = std::net::TcpStream::connect(&address).unwrap();
    write!(kept, "GET /login HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut kept = std::io::BufReader::new(kept);
    let mut line = String::new();
    let mut length = 0;
    loop {
        line.clear();
        kept.read_line(&mut line).unwrap();
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    kept.read_exact(&mut body).unwrap();

    let pid = served.child.id().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    let mut waiting: Vec<Box<dyn Read>> = (0..8)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            Box::new(stream) as Box<dyn Read>
        })
        .collect();
    kept.get_mut().write_all(request.as_bytes()).unwrap();
    kept.get_ref()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    waiting.push(Box::new(kept));
    signal("-TERM");
    signal("-CONT");
    for (i, stream) in waiting.iter_mut().enumerate() {
        let mut answer = String::new();
        let read = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "request {i} was not answered: {read:?} {answer:?}"
        );
    }
    assert!(served.child.wait().unwrap().success());
}
