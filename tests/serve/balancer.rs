//! Three `rawalite serve` hosts on one PostgreSQL behind HAProxy, with the
//! configuration the repository ships (`deploy/haproxy.cfg`, only its
//! ports rewritten), under write load through the balancer: a host killed
//! with SIGKILL loses no acknowledged write and fails only what was sent
//! to it, nothing once the balancer has marked it down, and it rejoins
//! when it is back;
//! a rolling restart (SIGTERM, one host at a time) fails no request at all.

use crate::common;

use common::{Served, agent, demo_on_shared_postgres, free_port, sql_behind};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn haproxy() -> PathBuf {
    [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("haproxy is not installed: `cargo xtask test` installs it (apt-get install haproxy)")
}

/// HAProxy running the shipped configuration.
struct Balancer {
    child: Child,
    base: String,
    stats: String,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Balancer {
    fn start(dir: &Path, hosts: &[u16; 3]) -> Balancer {
        let (front, stats) = (free_port(), free_port());
        let mut config = std::fs::read_to_string(common::workspace().join("deploy/haproxy.cfg"))
            .expect("deploy/haproxy.cfg");
        for (shipped, port) in [(8080, front), (8404, stats)]
            .into_iter()
            .chain((8081..).zip(*hosts))
        {
            let (from, to) = (format!("127.0.0.1:{shipped}"), format!("127.0.0.1:{port}"));
            assert!(config.contains(&from), "deploy/haproxy.cfg has no {from}");
            config = config.replace(&from, &to);
        }
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        Balancer {
            child,
            base: format!("http://127.0.0.1:{front}"),
            stats: format!("http://127.0.0.1:{stats}/stats;csv"),
        }
    }

    /// A column of the stats of server `name` ("status", "stot", …).
    fn stat(&self, name: &str, column: &str) -> Option<String> {
        let mut r = agent().get(&self.stats).call().ok()?;
        let csv = r.body_mut().read_to_string().ok()?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let at = header.iter().position(|h| *h == column)?;
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"hosts") && f.get(1) == Some(&name))
            .and_then(|f| f.get(at).map(|v| v.to_string()))
    }

    /// Waits until the balancer's health checks see server `name` as
    /// `status` (`UP`, `DOWN`).
    fn wait_for(&self, name: &str, status: &str) {
        let waited = Instant::now();
        loop {
            let now = self.stat(name, "status");
            if now.as_deref().is_some_and(|s| s.starts_with(status)) {
                return;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "{name} never became {status} (last {now:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Writes through the balancer from 8 threads until told to stop; each
/// outcome is filed under the phase it was sent in, or under phase 1 (the
/// kill) if it was still in flight then: a request the balancer had sent
/// to the dying host may be answered 502 only after the host is marked
/// down, on a busy machine seconds later.
struct Load {
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<String>>>,
    failed: Arc<Mutex<Vec<(usize, String)>>>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str) -> Load {
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let writers = (0..8)
            .map(|w| {
                let (base, phase, stop) = (base.to_owned(), phase.clone(), stop.clone());
                let (acknowledged, failed) = (acknowledged.clone(), failed.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let name = format!("writer-{w}-{i}");
                        let url = format!(
                            "{base}/probe/db/execute?sql=INSERT%20INTO%20customers%20(name)%20VALUES%20(%3F)&p=t:{name}"
                        );
                        let sent = phase.load(Ordering::Relaxed);
                        let outcome = agent.post(&url).header("Origin", &base).send_empty();
                        let ended = phase.load(Ordering::Relaxed);
                        let phase = if (sent..=ended).contains(&1) { 1 } else { sent };
                        match outcome {
                            Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().push(name),
                            Ok(r) => failed.lock().unwrap().push((phase, format!("{name}: {}", r.status()))),
                            Err(e) => failed.lock().unwrap().push((phase, format!("{name}: {e}"))),
                        }
                    }
                })
            })
            .collect();
        Load {
            phase,
            stop,
            acknowledged,
            failed,
            writers,
        }
    }

    /// Stops the writers and waits for them.
    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers.drain(..) {
            w.join().unwrap();
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Lets at least `n` more writes be acknowledged.
    fn more(&self, n: usize) {
        let target = self.acknowledged() + n;
        let waited = Instant::now();
        while self.acknowledged() < target {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "the load stalled: {:?}",
                self.failed.lock().unwrap().last()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failures_in(&self, phase: usize) -> Vec<String> {
        let failed = self.failed.lock().unwrap();
        failed
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[test]
fn three_hosts_behind_haproxy_lose_nothing_when_one_dies_or_all_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_on_shared_postgres(dir.path(), true);
    // The writes are given 30 s rather than the probe's 5: on a machine
    // busy with other work a write may wait that long for a core, and this
    // test is about what the balancer and the hosts lose, not deadlines.
    let manifest = std::fs::read_to_string(&file).unwrap();
    assert!(manifest.contains("timeout_ms = 5000"), "{manifest}");
    std::fs::write(
        &file,
        manifest.replace("timeout_ms = 5000", "timeout_ms = 30000"),
    )
    .unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let start = |i: usize| {
        Served::start_listening(
            &file,
            &dir.path().join(format!("data{i}")),
            &common::shared_cache(),
            &format!("127.0.0.1:{}", ports[i]),
            &["--drain-grace", "2"],
        )
    };
    let mut hosts: Vec<Served> = (0..3).map(start).collect();
    let balancer = Balancer::start(dir.path(), &ports);
    for name in ["host1", "host2", "host3"] {
        balancer.wait_for(name, "UP");
    }

    let mut load = Load::start(&balancer.base);
    load.more(50);

    // SIGKILL of one host: what was sent to it fails with the balancer's
    // 502, and once the balancer has marked it down nothing fails. (Not
    // only what it had in flight: the kernel tears a killed process down
    // memory first, sockets after, and until then its listening socket
    // still accepts connections, ~2 ms on an idle machine, longer on a
    // busy one, so a writer may be sent there twice.)
    load.phase.store(1, Ordering::Relaxed);
    hosts[1].child.kill().unwrap();
    hosts[1].child.wait().unwrap();
    balancer.wait_for("host2", "DOWN");
    load.phase.store(2, Ordering::Relaxed);
    load.more(50);
    let lost = load.failures_in(1);
    assert!(
        lost.iter().all(|f| f.ends_with(": 502 Bad Gateway")),
        "a request failed otherwise than by reaching the dead host: {lost:?}"
    );

    // It restarts and rejoins: the balancer sends it requests again.
    load.phase.store(3, Ordering::Relaxed);
    hosts[1] = start(1);
    balancer.wait_for("host2", "UP");
    let served_before: u64 = balancer.stat("host2", "stot").unwrap().parse().unwrap();
    load.more(100);
    let served_after: u64 = balancer.stat("host2", "stot").unwrap().parse().unwrap();
    assert!(
        served_after > served_before,
        "host2 rejoined but got no request"
    );

    // A rolling restart: SIGTERM one host at a time, each drains and exits
    // 0, comes back and rejoins; no request fails.
    load.phase.store(4, Ordering::Relaxed);
    for (i, host) in hosts.iter_mut().enumerate() {
        let status = host.stop();
        assert!(
            status.success(),
            "host{} did not drain cleanly: {status}",
            i + 1
        );
        *host = start(i);
        balancer.wait_for(&format!("host{}", i + 1), "UP");
        load.more(30);
    }
    load.finish();
    assert_eq!(
        load.failures_in(0),
        Vec::<String>::new(),
        "before anything happened"
    );
    assert_eq!(
        load.failures_in(2),
        Vec::<String>::new(),
        "after the balancer marked the dead host down"
    );
    assert_eq!(
        load.failures_in(3),
        Vec::<String>::new(),
        "while the host restarted and rejoined"
    );
    assert_eq!(
        load.failures_in(4),
        Vec::<String>::new(),
        "during the rolling restart"
    );

    // Every acknowledged write is in PostgreSQL.
    let stored: HashSet<String> = sql_behind(
        &file,
        &dir.path().join("data0"),
        "SELECT name FROM customers",
    )
    .into_iter()
    .collect();
    common::assert_none_lost(load.acknowledged.lock().unwrap().iter(), &stored);
}
