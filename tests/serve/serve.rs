//! `rawalite serve` over real HTTP on 127.0.0.1: sign-in and cookies, the
//! same-origin rule, the header allowlist, request limits, a trapping guest
//! next to healthy ones, concurrency, and a SIGTERM under write load.

use crate::common;

use common::{Served, agent, demo_manifest};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) fn start() -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), true);
    let served = Served::start(&file, &dir.path().join("data"), &common::shared_cache());
    (dir, served)
}

pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub(super) fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
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

pub(super) fn get(served: &Served, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = agent().get(served.url(path)).header("Accept", "text/html");
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    reply(request.call())
}

pub(super) fn post(
    served: &Served,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Reply {
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
pub(super) fn sign_in(served: &Served) -> String {
    let (status, body, cookie) = common::sign_in(&served.base, "127.0.0.1", &served.admin_password);
    assert_eq!(status, 303, "{body}");
    cookie.expect("a session cookie")
}

pub(super) fn assert_security_headers(r: &Reply) {
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
fn a_static_file_is_answered_304_when_the_client_has_it() {
    let (_dir, served) = start();
    let first = get(&served, "/static/app.css", None);
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("an ETag").to_owned();
    let date = first
        .header("last-modified")
        .expect("a Last-Modified")
        .to_owned();
    assert_eq!(first.header("cache-control"), Some("public, max-age=3600"));
    for (name, value) in [
        ("If-None-Match", etag.as_str()),
        ("If-Modified-Since", &date),
    ] {
        let again = reply(
            agent()
                .get(served.url("/static/app.css"))
                .header(name, value)
                .call(),
        );
        assert_eq!(again.status, 304, "{name}");
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert!(again.body.is_empty());
    }
    let other = reply(
        agent()
            .get(served.url("/static/app.css"))
            .header("If-None-Match", "\"something else\"")
            .call(),
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.body, first.body);
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
