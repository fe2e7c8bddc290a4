//! Several `rawalite serve` hosts on one PostgreSQL database, as behind a
//! load balancer: a session opened on one works on all and ends on all at
//! once; the sign-in limiter counts every host's attempts together, also
//! when they come at once, and keeps them across a host's crash; a root on
//! a data directory the hosts share is held to one quota; `--watch` reloads
//! a deployed component on each host.

mod common;

use common::{Served, demo_on_shared_postgres};
use std::path::Path;
use std::time::Duration;
use ureq::Agent;

/// Three hosts of the demo app on one fresh database, each with a data
/// directory of its own, trusting 127.0.0.1 as their proxy (so a test can
/// say which client it is with `X-Forwarded-For`).
fn three_hosts(dir: &Path) -> (std::path::PathBuf, Vec<Served>) {
    let file = demo_on_shared_postgres(dir, false);
    let hosts = (0..3)
        .map(|i| {
            Served::start(
                &file,
                &dir.join(format!("data{i}")),
                &common::shared_cache(),
            )
        })
        .collect();
    (file, hosts)
}

fn agent() -> Agent {
    Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A sign-in on `host` from `client`: its status, its body and the
/// session cookie it set.
fn sign_in(host: &str, client: &str, password: &str) -> (u16, String, Option<String>) {
    let mut r = agent()
        .post(format!("{host}/login"))
        .header("Origin", host)
        .header("X-Forwarded-For", client)
        .send_form([("username", "admin"), ("password", password), ("next", "/")])
        .expect("the host answers");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_owned);
    let body = r.body_mut().read_to_string().unwrap_or_default();
    (r.status().as_u16(), body, cookie)
}

fn limited(body: &str) -> bool {
    body.contains("too many failed sign-ins")
}

/// The status of the start page on `host` with `cookie`.
fn start_page(host: &Served, cookie: &str) -> u16 {
    agent()
        .get(host.url("/"))
        .header("Cookie", cookie)
        .header("Accept", "text/html")
        .call()
        .expect("the host answers")
        .status()
        .as_u16()
}

#[test]
fn sessions_and_sign_in_limits_are_shared_by_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let (file, mut hosts) = three_hosts(dir.path());
    let password = hosts[0].admin_password.clone();
    assert!(!password.is_empty(), "the first host made the admin");

    // Signed in through one host, the session works on every host; signed
    // out through another, it ends on all of them at once.
    let bases: Vec<String> = hosts.iter().map(|h| h.base.clone()).collect();
    let (status, body, cookie) = sign_in(&bases[0], "198.51.100.1", &password);
    assert_eq!(status, 303, "{body}");
    let cookie = cookie.expect("a session cookie");
    for host in &hosts {
        assert_eq!(start_page(host, &cookie), 200, "signed in on {}", host.base);
    }
    let out = agent()
        .post(hosts[1].url("/login/logout"))
        .header("Origin", &hosts[1].base)
        .header("Cookie", &cookie)
        .send_form([("x", "")])
        .expect("the host answers");
    assert_eq!(out.status().as_u16(), 303);
    for host in &hosts {
        assert_eq!(
            start_page(host, &cookie),
            303,
            "signed out on {}",
            host.base
        );
    }

    // Failures spread over the three hosts from one address count once:
    // the pair's five, then the address is stopped on every host.
    let guesser = "203.0.113.9";
    for i in 0..5 {
        let (status, body, _) = sign_in(&bases[i % 3], guesser, "wrong password");
        assert_eq!(status, 401);
        assert!(!limited(&body), "attempt {} was refused: {body}", i + 1);
    }
    for host in &bases {
        let (_, body, _) = sign_in(host, guesser, &password);
        assert!(limited(&body), "{host} let a sixth try in: {body}");
    }
    // The right password from another address still signs in.
    assert_eq!(sign_in(&bases[2], "198.51.100.2", &password).0, 303);

    // Attempts at once, across hosts, never pass the limit together.
    let rival = "192.0.2.50";
    let admitted: usize = std::thread::scope(|s| {
        let tries: Vec<_> = (0..24)
            .map(|i| {
                let host = &bases[i % 3];
                s.spawn(move || !limited(&sign_in(host, rival, "wrong password").1))
            })
            .collect();
        tries
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum()
    });
    assert_eq!(admitted, 5, "the pair's limit, however many hosts at once");

    // A host that crashes and comes back still knows.
    hosts[0].child.kill().unwrap();
    hosts[0].child.wait().unwrap();
    hosts[0] = Served::start(&file, &dir.path().join("data0"), &common::shared_cache());
    let (_, body, _) = sign_in(&hosts[0].base, guesser, &password);
    assert!(limited(&body), "forgotten by a crash: {body}");

    // On PostgreSQL hosts may share one data directory (their roots on a
    // shared volume): a fourth host on the first one's starts and serves.
    let beside = Served::start(&file, &dir.path().join("data0"), &common::shared_cache());
    assert_eq!(sign_in(&beside.base, "198.51.100.3", &password).0, 303);
}

/// A write of `kib` KiB to `path` in root `exports` through the probe on
/// the host at `base`: its status and body.
fn write_file(base: &str, path: &str, kib: usize) -> (u16, String) {
    let mut r = agent()
        .post(format!("{base}/probe/paths/write?root=exports&path={path}"))
        .header("Origin", base)
        .send(vec![b'x'; kib << 10])
        .expect("the host answers");
    let body = r.body_mut().read_to_string().unwrap_or_default();
    (r.status().as_u16(), body)
}

fn remove_file(base: &str, path: &str) -> u16 {
    agent()
        .post(format!(
            "{base}/probe/paths/remove?root=exports&path={path}"
        ))
        .header("Origin", base)
        .send_empty()
        .expect("the host answers")
        .status()
        .as_u16()
}

#[test]
fn a_root_on_a_shared_volume_is_held_to_one_quota_by_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_on_shared_postgres(dir.path(), true);
    // The probe, the manifest's last guest, may keep 64 KiB in `exports`.
    let mut manifest = std::fs::read_to_string(&file).unwrap();
    manifest += "\n[guest.paths]\nexports = { access = \"read-write\", quota = \"64 KiB\" }\n";
    std::fs::write(&file, manifest).unwrap();
    let data = dir.path().join("shared");
    let start = || Served::start(&file, &data, &common::shared_cache());
    let hosts = [start(), start()];
    let [a, b] = [hosts[0].base.as_str(), hosts[1].base.as_str()];

    // 40 KiB through one host leaves no room for 40 KiB through the other.
    let (status, body) = write_file(a, "a", 40);
    assert_eq!(status, 200, "{body}");
    let (status, body) = write_file(b, "b", 40);
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("over this guest's quota of 65536"), "{body}");
    // Room freed through one host is there on the other.
    assert_eq!(remove_file(b, "a"), 200);
    let (status, body) = write_file(a, "b", 40);
    assert_eq!(status, 200, "{body}");
    assert_eq!(remove_file(b, "b"), 200);

    // Eight writers at once, four on each host, 20 KiB each: three fit.
    let outcomes: Vec<(u16, String)> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let base = [a, b][i % 2];
                s.spawn(move || write_file(base, &format!("f{i}"), 20))
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let written = outcomes.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(written, 3, "{outcomes:?}");
    for (status, body) in &outcomes {
        assert!(*status == 200 || body.contains("quota"), "{body}");
    }
    let on_disk: Vec<_> = std::fs::read_dir(data.join("exports"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(on_disk, vec![20 << 10; 3]);

    // A host that starts measures the root again and agrees.
    let third = start();
    let (status, body) = write_file(&third.base, "g", 20);
    assert!(body.contains("quota"), "{status}: {body}");
    let (status, body) = write_file(&third.base, "g", 4);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn each_host_reloads_a_replaced_component_under_watch() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_on_shared_postgres(dir.path(), true);
    // The probe from a file of the test's, which a deploy then replaces.
    let component = dir.path().join("probe.wasm");
    std::fs::copy(common::guest("probe"), &component).unwrap();
    let manifest = std::fs::read_to_string(&file).unwrap().replace(
        &common::guest("probe").display().to_string(),
        &component.display().to_string(),
    );
    std::fs::write(&file, manifest).unwrap();
    let hosts: Vec<Served> = (0..2)
        .map(|i| {
            Served::start_with(
                &file,
                &dir.path().join(format!("data{i}")),
                &common::shared_cache(),
                &["--watch"],
                &[],
                std::process::Stdio::null(),
            )
        })
        .collect();
    let page = |host: &Served| {
        let mut r = agent().get(host.url("/probe/greet")).call().unwrap();
        r.body_mut().read_to_string().unwrap_or_default()
    };
    for host in &hosts {
        assert!(
            !page(host).contains("<p>GET /greet</p>"),
            "the probe serves"
        );
    }

    let partial = component.with_extension("partial");
    std::fs::copy(common::guest("hello"), &partial).unwrap();
    std::fs::rename(&partial, &component).unwrap();
    for host in &hosts {
        let waited = std::time::Instant::now();
        while !page(host).contains("<p>GET /greet</p>") {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "{} never reloaded",
                host.base
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
