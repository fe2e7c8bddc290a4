//! Several `rawalite serve` hosts on one PostgreSQL database, as behind a
//! load balancer: a session opened on one works on all and ends on all at
//! once; the sign-in limiter counts every host's attempts together, also
//! when they come at once, and keeps them across a host's crash; a root on
//! a data directory the hosts share is held to one quota; `--watch` reloads
//! a deployed component on each host.
//!
//! Past 600 lines on purpose: each case starts its own hosts on its own
//! database and reads as one story.

use crate::common;

use common::{Served, agent, demo_on_shared_postgres, sign_in};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

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

/// Waits until `done`, failing with `what` after a minute.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The most of `count()` seen while `work` runs, and what `work` returned.
fn most_while<T>(count: impl Fn() -> i64 + Sync, work: impl FnOnce() -> T) -> (i64, T) {
    let done = AtomicBool::new(false);
    let most = AtomicI64::new(0);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(count(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Set even when `work` panics, or the scope would wait forever.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _done = Done(&done);
        work()
    });
    (most.into_inner(), out)
}

/// A gate in the database the test holds shut: a host's statement that
/// reaches it (a trigger that takes advisory lock 7, shared) waits until
/// the test opens it. Where it stands: a host's first write of familiar
/// addresses (inside a sign-in's transaction, the user's rows locked) and
/// its write of a root's usage (after the file is in place, the root's
/// row locked).
struct Gate {
    url: String,
    holder: std::process::Child,
}

impl Gate {
    fn install(url: &str) {
        common::psql_value(
            url,
            "CREATE FUNCTION host.gate() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_advisory_xact_lock_shared(7); RETURN NEW; END $$; \
             CREATE TRIGGER gate BEFORE INSERT ON host.sign_in_familiar \
             FOR EACH STATEMENT EXECUTE FUNCTION host.gate(); \
             CREATE TRIGGER gate BEFORE UPDATE ON host.root_usage FOR EACH ROW \
             WHEN (NEW.bytes IS DISTINCT FROM OLD.bytes) EXECUTE FUNCTION host.gate()",
        );
    }

    fn shut(url: &str) -> Gate {
        let holder = std::process::Command::new("psql")
            .args(["-X", "-q", "-d", url])
            .args([
                "-c",
                "SELECT pg_advisory_lock(7)",
                "-c",
                "SELECT pg_sleep(600)",
            ])
            .env("PGAPPNAME", "gate")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql runs");
        wait_until("the gate to shut", || {
            common::psql_value(
                url,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7 AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            ) == "1"
        });
        Gate {
            url: url.to_owned(),
            holder,
        }
    }

    /// Whether a host's statement waits at the gate.
    fn reached(&self) -> bool {
        common::psql_value(
            &self.url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event = 'advisory' AND application_name <> 'gate'",
        ) == "1"
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        common::psql_value(
            &self.url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'gate'",
        );
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Backends of the database of `url` waiting for a lock.
fn waiting_for_locks(url: &str) -> i64 {
    common::psql_value(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .parse()
    .unwrap()
}

/// A host stopped with SIGSTOP, as a paused VM or a host cut off without
/// a word; it goes on when dropped.
struct Frozen(u32);

impl Frozen {
    fn freeze(host: &Served) -> Frozen {
        let pid = host.child.id();
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// A host that stops inside a transaction (a paused VM, a partition
/// without a FIN) holds its row locks until the server ends that
/// transaction: a sign-in's for 0.5 s, a root write's for 3 s. The same user
/// signs in through another host meanwhile, and another host writes to
/// the same root, each within a few seconds; no more than one backend ever
/// waits on the locks.
#[test]
fn a_frozen_host_holds_no_other_host_up_for_more_than_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_on_shared_postgres(dir.path(), true);
    let mut manifest = std::fs::read_to_string(&file).unwrap();
    manifest += "\n[guest.paths]\nexports = { access = \"read-write\", quota = \"1 MiB\" }\n";
    std::fs::write(&file, manifest).unwrap();
    let url = common::database_url(&file);
    Gate::install(&url);
    let data = dir.path().join("shared");
    let start = || Served::start(&file, &data, &common::shared_cache());
    let hosts = [start(), start()];
    let password = hosts[0].admin_password.clone();
    let [a, b] = [hosts[0].base.as_str(), hosts[1].base.as_str()];

    // Host A stops inside a sign-in's transaction, the user's rows locked.
    let took = frozen_while(
        &hosts[0],
        &url,
        || sign_in(a, "198.51.100.7", &password),
        || {
            let (status, body, _) = sign_in(b, "198.51.100.8", &password);
            assert_eq!(status, 303, "the sign-in through host B: {body}");
        },
    );
    eprintln!("the same user signed in through B while A was frozen in its sign-in: {took:?}");

    // Host A stops inside a root write, after the file and before the
    // root's usage: the row stays locked until the server ends it.
    let took = frozen_while(
        &hosts[0],
        &url,
        || write_file(a, "frozen", 4),
        || {
            let (status, body) = write_file(b, "other", 4);
            assert_eq!(status, 200, "the write through host B: {body}");
        },
    );
    eprintln!("a write to the same root through B while A was frozen in its own: {took:?}");
}

/// Runs `stuck` on `host` until it waits at a gate, stops the host there,
/// opens the gate (so the host's statement ends and its transaction stays
/// open, its locks held) and runs `other`: how long that took, which is
/// under 5 s, with never more than one backend waiting on locks.
fn frozen_while<T: Send>(
    host: &Served,
    url: &str,
    stuck: impl FnOnce() -> T + Send,
    other: impl FnOnce(),
) -> Duration {
    let gate = Gate::shut(url);
    std::thread::scope(|s| {
        let stuck = s.spawn(stuck);
        wait_until("the frozen host's statement to reach the gate", || {
            gate.reached()
        });
        let frozen = Frozen::freeze(host);
        drop(gate);
        let (most, took) = most_while(
            || waiting_for_locks(url),
            || {
                let started = Instant::now();
                other();
                started.elapsed()
            },
        );
        assert!(took < Duration::from_secs(5), "it took {took:?}");
        assert!(most <= 1, "{most} backends waited on locks at once");
        drop(frozen);
        let _ = stuck.join();
        took
    })
}

/// PgBouncer running `deploy/pgbouncer.ini` as shipped (addresses and
/// paths aside) in front of database `name` of the test cluster, TLS to
/// the hosts with the TLS cluster's certificate for `localhost`.
struct Bouncer {
    child: std::process::Child,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bouncer {
    fn start(dir: &Path, port: u16, name: &str, socket: &str, userlist: &str) -> Bouncer {
        let tls = Path::new(&std::env::var("RAWALITE_TEST_POSTGRES_TLS").expect(
            "RAWALITE_TEST_POSTGRES_TLS is not set: run the tests with `cargo xtask test`",
        ))
        .join("tls");
        let mut config =
            std::fs::read_to_string(common::workspace().join("deploy/pgbouncer.ini")).unwrap();
        for (shipped, here) in [
            (
                "rawalite = host=/var/run/postgresql port=5432 dbname=rawalite".to_owned(),
                format!("{name} = host={socket} port=5432 dbname={name}"),
            ),
            (
                "listen_port = 6432".to_owned(),
                format!("listen_port = {port}"),
            ),
            (
                "/etc/pgbouncer/server.crt".to_owned(),
                tls.join("server.crt").display().to_string(),
            ),
            (
                "/etc/pgbouncer/server.key".to_owned(),
                tls.join("server.key").display().to_string(),
            ),
            ("/var/log/postgresql".to_owned(), dir.display().to_string()),
            (
                "/var/run/postgresql/".to_owned(),
                format!("{}/", dir.display()),
            ),
        ] {
            assert!(
                config.contains(&shipped),
                "deploy/pgbouncer.ini has no {shipped}"
            );
            config = config.replace(&shipped, &here);
        }
        let auth = dir.join("userlist.txt");
        std::fs::write(&auth, userlist).unwrap();
        config = config.replace("/etc/pgbouncer/userlist.txt", &auth.display().to_string());
        let file = dir.join("pgbouncer.ini");
        std::fs::write(&file, config).unwrap();
        // PgBouncer refuses to run as root: as root it runs as the user the
        // cluster runs as, which owns the TLS key.
        let root = unsafe { libc::getuid() } == 0;
        if root {
            let chown = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir)
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let child = std::process::Command::new("/usr/sbin/pgbouncer")
            .args(if root { &["-u", "postgres"][..] } else { &[] })
            .arg(&file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pgbouncer starts (`cargo xtask test` installs it)");
        wait_until("PgBouncer to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Bouncer { child }
    }
}

/// Two hosts through PgBouncer in transaction mode, over TLS, on a
/// database that takes 40 connections (as a server of max_connections =
/// 40 would): thousands of signed-in pages and guest queries and writes
/// with no error, and never more than PgBouncer's 30 server connections.
/// Everything a host sends survives transaction pooling; `migrate` goes
/// to the server directly, and refuses the pooler.
#[test]
fn two_hosts_through_pgbouncer_in_transaction_mode_fit_forty_connections() {
    const SECRET: &str = "pooled-test-secret";
    let socket = std::env::var("RAWALITE_TEST_POSTGRES").expect("run with `cargo xtask test`");
    let admin = format!("postgres://postgres@/postgres?host={socket}");
    let name = format!("pool{}", std::process::id());
    let owner = format!("{name}_owner");
    for sql in [
        format!("CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD 'owner-secret'"),
        format!("CREATE DATABASE {name} OWNER {owner} CONNECTION LIMIT 40"),
    ] {
        common::psql_value(&admin, &sql);
    }
    let dir = tempfile::tempdir().unwrap();
    let bouncer_dir = dir.path().join("pgbouncer");
    std::fs::create_dir(&bouncer_dir).unwrap();
    let port = common::free_port();
    let ca = Path::new(&std::env::var("RAWALITE_TEST_POSTGRES_TLS").unwrap()).join("tls/ca.crt");
    let pooled = format!(
        "postgres://{owner}:owner-secret@localhost:{port}/{name}?pgbouncer=true&sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let file = common::demo_on_database(dir.path(), true, &pooled);
    // Every page gets 30 s, as in the balancer test: this test is about
    // what the pooler lets through, and on a machine busy with other work
    // (stress-ng beside it: 7 of 3,720 pages passed the 1 s default) a
    // page may wait that long for a core.
    let mut manifest = std::fs::read_to_string(&file).unwrap();
    for (from, to) in [
        ("timeout_ms = 5000\n", "timeout_ms = 30000\n"),
        (
            "route = \"/\"\n",
            "route = \"/\"\n[guest.limits]\ntimeout_ms = 30000\n",
        ),
        (
            "route = \"/customers\"\n",
            "route = \"/customers\"\n[guest.limits]\ntimeout_ms = 30000\n",
        ),
    ] {
        assert!(manifest.contains(from), "the demo manifest has no {from:?}");
        manifest = manifest.replacen(from, to, 1);
    }
    std::fs::write(&file, manifest).unwrap();
    let migrate = |url: &str| {
        std::process::Command::new(common::bin())
            .args(["migrate", "--manifest"])
            .arg(&file)
            .args(["--database", url])
            .env("RAWALITE_DATABASE_SECRET", SECRET)
            .output()
            .unwrap()
    };
    let out = migrate(&pooled);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("migrate needs a direct connection"),
        "{}",
        common::stderr(&out)
    );
    let out = migrate(&format!("postgres://{owner}@/{name}?host={socket}"));
    assert!(out.status.success(), "{}", common::stderr(&out));

    // The roles' SCRAM secrets, as PgBouncer's auth_file has them.
    let out = common::psql(
        &admin,
        &format!(
            "SELECT format('\"%s\" \"%s\"', rolname, rolpassword) FROM pg_authid \
             WHERE rolname = '{owner}' OR starts_with(rolname, '{name}_g_')"
        ),
    );
    let userlist = common::stdout(&out);
    assert!(userlist.lines().count() > 5, "{userlist}");
    let _bouncer = Bouncer::start(&bouncer_dir, port, &name, &socket, &userlist);

    let start = |i: usize| {
        Served::start_with(
            &file,
            &dir.path().join(format!("data{i}")),
            &common::shared_cache(),
            &[],
            &[("RAWALITE_DATABASE_SECRET", SECRET)],
            std::process::Stdio::null(),
        )
    };
    let hosts = [start(0), start(1)];
    let (status, body, cookie) = sign_in(&hosts[0].base, "198.51.100.1", &hosts[0].admin_password);
    assert_eq!(status, 303, "{body}");
    let cookie = cookie.expect("a session cookie");

    // Four clients on each host, each with the pages a user opens, the
    // probe's queries and now and then a write.
    let failures = std::sync::Mutex::new(Vec::new());
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let connections = || -> i64 {
        common::psql_value(
            &admin,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"),
        )
        .parse()
        .unwrap()
    };
    let bases: Vec<&str> = hosts.iter().map(|h| h.base.as_str()).collect();
    let (most, ()) = most_while(connections, || {
        std::thread::scope(|s| {
            for base in &bases {
                for client in 0..4 {
                    let (failures, sent, cookie) = (&failures, &sent, &cookie);
                    s.spawn(move || {
                        let agent = agent();
                        for i in 0..150 {
                            let mut requests = vec![
                                agent
                                    .get(format!("{base}/"))
                                    .header("Cookie", cookie)
                                    .header("Accept", "text/html"),
                                agent.get(format!("{base}/customers")).header("Cookie", cookie),
                                agent.get(format!(
                                    "{base}/probe/db/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20customers"
                                )),
                            ]
                            .into_iter()
                            .map(|r| r.call())
                            .collect::<Vec<_>>();
                            if i % 10 == 0 {
                                requests.push(
                                    agent
                                        .post(format!(
                                            "{base}/probe/db/execute?sql=INSERT%20INTO%20customers%20(name)%20VALUES%20(%3F)&p=t:c{client}_{i}"
                                        ))
                                        .header("Origin", *base)
                                        .send_empty(),
                                );
                            }
                            for response in requests {
                                sent.fetch_add(1, Ordering::Relaxed);
                                let failure = match response {
                                    Ok(mut r) => {
                                        let body = r.body_mut().read_to_string().unwrap_or_default();
                                        (r.status() != 200).then(|| format!("{}: {body}", r.status()))
                                    }
                                    Err(e) => Some(e.to_string()),
                                };
                                failures.lock().unwrap().extend(failure);
                            }
                        }
                    });
                }
            }
        })
    });
    let failures = failures.into_inner().unwrap();
    let sent = sent.into_inner();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(sent >= 3000, "{sent} requests");
    assert!(most <= 30, "{most} server connections at once");
    eprintln!("{sent} requests through PgBouncer, at most {most} server connections");
    // Every backend of the database came through PgBouncer's socket
    // connection to the server, none straight from a host over TCP.
    assert_eq!(
        common::psql_value(
            &admin,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND client_addr IS NOT NULL"
            ),
        ),
        "0"
    );
}
