//! Attacks on the host, from a hostile guest and from a hostile client,
//! each tried for real: the guests of `guests/hostile/` and the probe
//! against the host in process, through `rawalite render`, and against a
//! running `rawalite serve`. SECURITY.md lists each attack with the test
//! here (or elsewhere) that shows it fails.
//!
//! Times are only checked as generous hang guards; memory is measured
//! with the kernel's own count (`getrusage`) of a `rawalite render` run.
//!
//! Past 600 lines on purpose: each case is one attack with its own guest
//! and its own assertion, read one at a time; they share no helper worth a
//! file of its own.

use crate::common;

use common::{ProbeApp, Served, agent, assert_code, demo_manifest, get_with, guest, stderr, url};
use rawalite_host::capabilities::ErrorCode;
use rawalite_host::capabilities::session::Caller;
use rawalite_host::runtime::{Outcome, Stopped};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `rawalite ARGS…` and returns its output and the most memory it
/// held (resident, in bytes) as the kernel counted it.
// The child is reaped by `wait4`, which also reads its resource usage.
#[allow(clippy::zombie_processes)]
fn rawalite_rss(args: &[&str], cache: &std::path::Path) -> (Output, u64) {
    let child = Command::new(common::bin())
        .args(args)
        .env("RAWALITE_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rawalite runs");
    let pid = child.id() as libc::pid_t;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdout = child.stdout.expect("piped");
    let mut stderr = child.stderr.expect("piped");
    let reader = std::thread::spawn(move || {
        let _ = stderr.read_to_end(&mut err);
        err
    });
    let _ = stdout.read_to_end(&mut out);
    let err = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    let output = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: out,
        stderr: err,
    };
    (output, usage.ru_maxrss as u64 * 1024)
}

const PROBE: &str = r#"
[[guest]]
name = "probe"
component = "{probe}"
[guest.db]
read = ["customers", "invoices"]
write = ["customers"]
[guest.paths]
files = { access = "read-write", quota = "64 KiB" }

[[guest]]
name = "squatter"
component = "{squatter}"
[guest.limits]
timeout_ms = 300
"#;

fn fixture() -> ProbeApp {
    ProbeApp::open(&format!(
        "[paths]\nfiles = \"files\"\n{}",
        PROBE.replace("{squatter}", &guest("squatter").display().to_string())
    ))
}

#[test]
fn a_guest_waiting_inside_the_host_is_stopped_at_its_deadline() {
    let f = fixture();
    let squatter = f.guest("squatter");
    for route in ["/sleep", "/naps", "/stdin", "/clock"] {
        let started = Instant::now();
        let outcome = squatter
            .render(&get_with(route, &[]), Caller::default())
            .outcome;
        assert!(
            matches!(outcome, Outcome::Stopped(Stopped::Deadline { .. })),
            "{route}: {outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{route} held the thread for {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn an_error_never_shows_the_columns_of_a_table_outside_the_grant() {
    let f = fixture();
    let probe = f.guest("probe");
    let query = |sql: &str| {
        probe
            .render(&get_with("/db/query", &[("sql", sql)]), Caller::default())
            .outcome
    };
    let execute = |sql: &str| {
        probe
            .render(&get_with("/db/execute", &[("sql", sql)]), Caller::default())
            .outcome
    };
    // A column that exists and one that does not get the same answer.
    let real = common::err(query("SELECT password_hash FROM users"));
    let made_up = common::err(query("SELECT no_such_column FROM users"));
    assert_eq!(real.code, ErrorCode::Denied);
    assert_eq!(real.message, made_up.message);
    for outcome in [
        execute("INSERT INTO users (no_such_column) VALUES (1)"),
        execute("UPDATE users SET no_such_column = 1"),
        query("SELECT u.no_such_column FROM customers c JOIN users u ON 1"),
        query("SELECT 1 FROM \"users\" WHERE no_such_column = 1"),
    ] {
        let e = assert_code(outcome, ErrorCode::Denied, "`users`");
        assert!(!e.message.contains("column"), "{}", e.message);
    }
    // A granted table's own errors stay as helpful as before.
    assert_code(
        query("SELECT no_such_column FROM customers"),
        ErrorCode::InvalidInput,
        "no_such_column",
    );
}

#[test]
fn directories_count_against_the_quota() {
    let f = fixture();
    let probe = f.guest("probe");
    let mut made = 0;
    let refused = (0..3000).find_map(|i| {
        let outcome = probe
            .render(
                &get_with(
                    "/paths/mkdir",
                    &[("root", "files"), ("path", &format!("d{i}"))],
                ),
                Caller::default(),
            )
            .outcome;
        match outcome {
            Outcome::Response(_) => {
                made += 1;
                None
            }
            other => Some(other),
        }
    });
    // 64 KiB holds 16 directories of a 4 KiB block each.
    assert_eq!(made, 16);
    assert_code(
        refused.expect("the quota stopped the directories"),
        ErrorCode::TooLarge,
        "quota",
    );
}

#[test]
fn a_guest_reads_no_more_than_half_its_memory() {
    let f = fixture();
    std::fs::write(f.data_path("files").join("big.bin"), vec![0u8; 40 << 20]).unwrap();
    let probe = f.guest("probe");
    let outcome = probe
        .render(
            &get_with("/paths/read", &[("root", "files"), ("path", "big.bin")]),
            Caller::default(),
        )
        .outcome;
    assert_code(outcome, ErrorCode::TooLarge, "file limit of 33554432 bytes");
}

/// What the flood guest writes to the log through `rawalite render`.
fn flood_log(route: &str) -> String {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["render", guest("flood").to_str().unwrap(), route])
        .env("RAWALITE_CACHE_DIR", cache.path())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn a_guest_cannot_forge_a_log_line() {
    let log = flood_log("/forge");
    for line in log.lines() {
        // Every event is the host's: a time stamp, then a level, then the
        // host's target; a guest's text never starts a line.
        assert!(
            line.starts_with("20") && !line.starts_with("2026-01-01T00:00:00.000000Z"),
            "a line the host did not write: {line:?}"
        );
        assert!(!line.contains('\u{1b}'), "a terminal escape: {line:?}");
    }
    assert!(log.contains("root=\"x\\n2026-01-01"), "{log}");
    assert!(log.contains("line=\"\\r2026-01-01"), "{log}");
}

#[test]
fn a_guest_cannot_flood_the_log() {
    let log = flood_log("/calls?n=1000");
    let audit = log
        .lines()
        .filter(|l| l.contains("rawalite::audit"))
        .count();
    assert_eq!(audit, 257, "256 events and one summary");
    assert!(log.contains("dropped=1744"), "{log}");
    let log = flood_log("/print?lines=1000");
    let lines = log
        .lines()
        .filter(|l| l.contains("rawalite::guest"))
        .count();
    assert_eq!(lines, 65, "64 lines and one summary");
    assert!(log.contains("dropped_bytes=0 dropped_lines=936"), "{log}");
    // Past 64 KiB the output is not even kept.
    let log = flood_log("/print?lines=100000");
    assert!(
        log.contains("dropped_bytes=") && !log.contains("dropped_bytes=0 "),
        "{log}"
    );
}

fn start() -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), true);
    let served = Served::start(&file, &dir.path().join("data"), &common::shared_cache());
    (dir, served)
}

fn status(served: &Served, path: &str) -> u16 {
    agent()
        .get(served.url(path))
        .call()
        .map_or(0, |r| r.status().as_u16())
}

#[test]
fn sixty_four_sleeping_guests_do_not_delay_other_routes() {
    let (_dir, served) = start();
    let sleepers: Vec<_> = (0..64)
        .map(|_| {
            let url = served.url("/probe/sleep?ms=3000");
            std::thread::spawn(move || {
                let r = agent().get(url).call();
                (Instant::now(), r.map_or(0, |r| r.status().as_u16()))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        assert_eq!(status(&served, "/hello"), 200);
    }
    let hello_done = Instant::now();
    for sleeper in sleepers {
        let (done, code) = sleeper.join().unwrap();
        assert!(
            done > hello_done,
            "a sleeper finished before the twenty hellos did"
        );
        // A sleeper either slept, or waited its turn too long and was told
        // to come back (its route has only its share of the threads).
        assert!(code == 200 || code == 503, "{code}");
    }
}

#[test]
fn half_open_connections_neither_stay_nor_keep_a_client_out() {
    let (_dir, served) = start();
    let addr = served.base.trim_start_matches("http://").to_owned();
    // From three addresses: one address may hold 128 connections.
    let mut held: Vec<TcpStream> = (0..300u16)
        .map(|i| {
            let from = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / 100) as u8);
            let mut s = common::connect_from(from, addr.parse().unwrap(), None);
            s.write_all(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            s
        })
        .collect();
    // An idle kept-alive connection, too.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    held.push(idle);
    // A normal client is served meanwhile.
    assert_eq!(status(&served, "/hello"), 200);
    // Every held connection is closed within the header timeout (15 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    for mut s in held {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a connection was still open after 40 s: {e}"),
        }
    }
    assert_eq!(status(&served, "/hello"), 200);
}

#[test]
fn redirects_never_leave_the_site() {
    let (_dir, served) = start();
    let sign_in = |next: &str| {
        agent()
            .post(served.url("/login"))
            .header("Origin", &served.base)
            .send_form([
                ("username", "admin"),
                ("password", served.admin_password.as_str()),
                ("next", next),
            ])
            .unwrap()
    };
    for (next, lands) in [
        ("/customers", "/customers"),
        ("/\t/evil.example", "/"),
        ("//evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("/\\evil.example", "/"),
        (" //evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
    ] {
        let r = sign_in(next);
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], lands, "{next:?}");
    }
    // A guest's own Location header gets the same check.
    for (location, lands) in [("/\t/evil.example", "/"), ("/invoices", "/invoices")] {
        let r = agent()
            .get(served.url(&url("/probe/headers", &[("location", location)])))
            .call()
            .unwrap();
        assert_eq!(r.headers()["location"], lands, "{location:?}");
    }
}

#[test]
fn an_origin_that_is_not_ascii_is_refused() {
    let (_dir, served) = start();
    let addr = served.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "POST /probe/echo HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: same-origin\r\nContent-Length: 0\r\nConnection: close\r\nOrigin: http://{addr}"
    )
    .into_bytes();
    request.extend_from_slice(b"\xff\r\n\r\n");
    s.write_all(&request).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[test]
fn off_loopback_serve_needs_its_host_names_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), false);
    let out = Command::new(common::bin())
        .args([
            "serve",
            "--manifest",
            file.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .env("RAWALITE_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hosts = ["), "{}", stderr(&out));

    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "[app]\n",
        "[app]\nhosts = [\"invoices.example\"]\n",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new(common::bin())
        .args([
            "serve",
            "--manifest",
            file.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .env("RAWALITE_CACHE_DIR", dir.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0);
        if let Some(at) = line.find("http://0.0.0.0:") {
            break line[at + 15..].trim().trim_end_matches('/').to_owned();
        }
    };
    let ask_for = |path: &str, host: &str| {
        agent()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("Host", host)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    // An empty compile cache: hello compiles once the server listens.
    let waited = std::time::Instant::now();
    while ask_for("/healthz", "invoices.example") != 200 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "hello never compiled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ask = |host: &str| ask_for("/hello", host);
    assert_eq!(ask("invoices.example"), 200);
    assert_eq!(ask(&format!("INVOICES.example:{port}")), 200);
    assert_eq!(ask("rebound.attacker.example"), 421);
    assert_eq!(ask("127.0.0.1"), 421);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn roots_that_overlap_each_other_or_the_data_are_refused() {
    for (paths, needle) in [
        ("files = \".\"", "holds the data directory"),
        ("files = \"..\"", "holds the data directory"),
        ("a = \"files\"\nb = \"files/inner\"", "overlap"),
        ("a = \"files\"\nb = \"files\"", "overlap"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = common::manifest(dir.path(), &format!("[paths]\n{paths}\n"));
        let out = common::rawalite(
            &[
                "render",
                "--manifest",
                file.to_str().unwrap(),
                "--guest",
                "none",
            ],
            &dir.path().join("cache"),
        );
        assert_eq!(out.status.code(), Some(2), "{paths}");
        assert!(stderr(&out).contains(needle), "{paths}: {}", stderr(&out));
        for key in paths.lines().map(|l| l.split(' ').next().unwrap()) {
            assert!(stderr(&out).contains(key), "{paths}: {}", stderr(&out));
        }
    }
}

#[test]
fn a_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = common::rawalite(&["render", guest("hello").to_str().unwrap(), "/"], &cache);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "a compiled artifact was written where others may write"
    );
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    common::rawalite(&["render", guest("hello").to_str().unwrap(), "/"], &cache);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}

/// Statements as deep as 64 KiB of SQL lets them nest, in every shape that
/// nests: chains of each binary operator, `NOT`s, `CASE` in `CASE`,
/// parentheses, subqueries, `IN` lists and set operations, each of about
/// `levels` levels (past 64 KiB, the host's limit answers).
fn deep_statements(levels: usize) -> Vec<(String, String)> {
    let chain = |op: &str| format!("1{}", format!(" {op} 1").repeat(levels));
    let mut shapes: Vec<(String, String)> = [
        "-", "+", "*", "/", "%", "||", "=", "<>", "<", ">", "<=", ">=", "AND", "OR", "&", "|",
        "<<", "IS",
    ]
    .iter()
    .map(|op| (format!("a chain of {op}"), chain(op)))
    .collect();
    shapes.push(("NOTs".into(), format!("{}1", "NOT ".repeat(levels))));
    shapes.push((
        "CASE in CASE".into(),
        format!(
            "{}1{}",
            "CASE WHEN 1 THEN ".repeat(levels),
            " END".repeat(levels)
        ),
    ));
    shapes.push((
        "parentheses".into(),
        format!("{}1{}", "(".repeat(levels), ")".repeat(levels)),
    ));
    shapes.push((
        "subqueries".into(),
        format!("{}1{}", "(SELECT ".repeat(levels), ")".repeat(levels)),
    ));
    shapes.push((
        "an IN list".into(),
        format!(
            "1 IN ({})",
            (0..levels)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    ));
    shapes
}

/// `rawalite serve` answers every statement of [`deep_statements`] through
/// `db.query`, `db.execute` and `db.transaction` (with an error or a
/// result), on SQLite (plain and with `portable_sql`) and on PostgreSQL,
/// and is still up and serving at the end.
#[test]
fn no_statement_however_deep_takes_serve_down() {
    let modes: &[bool] = if common::on_postgres() {
        &[true]
    } else {
        &[false, true]
    };
    for &portable in modes {
        let dir = tempfile::tempdir().unwrap();
        let file = common::manifest(
            dir.path(),
            &format!(
                "{}[[guest]]\nname = \"probe\"\ncomponent = \"{{probe}}\"\nroute = \"/probe\"\n[guest.limits]\ntimeout_ms = 5000\n[guest.db]\nread = [\"customers\"]\nwrite = [\"customers\"]\n",
                if portable {
                    "portable_sql = true\n"
                } else {
                    ""
                }
            ),
        );
        let served = Served::start(&file, &dir.path().join("data"), &common::shared_cache());
        let agent = agent();
        let post = |path: &str, body: String| {
            agent
                .post(served.url(path))
                .header("Origin", &served.base)
                .send(body)
                .map(|r| r.status().as_u16())
        };
        for levels in [1_000, 8_000, 30_000, 60_000] {
            for (shape, expr) in deep_statements(levels) {
                let query = format!("SELECT {expr} AS x FROM customers");
                let write = format!("UPDATE customers SET name = name WHERE id = {expr}");
                let transaction = serde_json::json!([{ "sql": write.clone(), "params": [] }]);
                for (call, answer) in [
                    ("db.query", post("/probe/db/query", query)),
                    ("db.execute", post("/probe/db/execute", write)),
                    (
                        "db.transaction",
                        post("/probe/db/transaction", transaction.to_string()),
                    ),
                ] {
                    let status = answer.unwrap_or_else(|e| {
                        panic!("{shape} of {levels} levels through {call} (portable_sql {portable}): no answer: {e}")
                    });
                    assert!(
                        [200, 400, 403, 413, 500, 504].contains(&status),
                        "{shape} of {levels} levels through {call}: {status}"
                    );
                }
            }
        }
        let mut served = served;
        assert!(
            served.child.try_wait().unwrap().is_none(),
            "serve stopped (portable_sql {portable})"
        );
        assert_eq!(
            status(
                &served,
                "/probe/db/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20customers"
            ),
            200
        );
        served.stop();
    }
}

/// Tests about SQLite itself, which the PostgreSQL pass of `cargo xtask test`
/// skips (`--skip sqlite_only::`); each says which test covers the same
/// ground on PostgreSQL.
mod sqlite_only {
    use super::*;

    // SQLite's allocations charged to the call; on PostgreSQL, `postgres::a_result_past_the_limits_stops_on_the_server`.
    /// Statements that try to make the host build far more than the guest may
    /// hold: each ends with its code, and `rawalite render` never holds more
    /// than the guest's memory cap (64 MiB) beyond what `SELECT 1` needs.
    #[test]
    fn database_attacks_end_with_their_code_and_bounded_memory() {
        let f = fixture();
        let manifest = f.manifest.to_str().unwrap().to_owned();
        let cache = f.dir.path().join("cache");
        let columns = |n: usize, column: &str| -> String {
            (0..n)
                .map(|i| column.replace("{i}", &i.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let run = |sql: &str| {
            rawalite_rss(
                &[
                    "render",
                    "--manifest",
                    &manifest,
                    "--guest",
                    "probe",
                    &url("/db/query", &[("sql", sql)]),
                ],
                &cache,
            )
        };
        let (out, baseline) = run("SELECT 1");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let cases = [
            // The issue's attacks, as they were written.
            (
                format!("SELECT {}", columns(200, "zeroblob(16777216) AS a{i}")),
                "too-large",
            ),
            (
                format!("SELECT {}", columns(2000, "zeroblob(16777216) AS a{i}")),
                "",
            ),
            (
                format!(
                    "SELECT {}",
                    vec!["length(hex(zeroblob(8000000)))"; 400].join(" + ")
                ),
                "too-large",
            ),
            // Within the function limit, the memory charge stops them.
            (
                format!("SELECT {}", columns(95, "zeroblob(1048576) AS a{i}")),
                "too-large",
            ),
            (
                format!(
                    "WITH t(x) AS (SELECT randomblob(1000000)) SELECT {} FROM t",
                    vec!["x"; 2000].join(", ")
                ),
                "too-large",
            ),
            (
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000000) SELECT count(DISTINCT hex(x)) FROM c".to_owned(),
                "too-large",
            ),
            // Values SQLite only builds when the host reads them (a zeroblob is
            // lazy): counted one by one as they are read.
            (
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 40) SELECT zeroblob(1000000) FROM c".to_owned(),
                "too-large",
            ),
            (
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000000) SELECT length(group_concat(x)) FROM c".to_owned(),
                "too-large",
            ),
        ];
        for (sql, code) in &cases {
            let started = Instant::now();
            let (out, rss) = run(sql);
            let error = stderr(&out);
            assert_eq!(out.status.code(), Some(3), "{}…: {error}", &sql[..60]);
            // Memory and time race on a busy machine: either bound may stop
            // the statement first, and either is a clean stop.
            assert!(
                error.starts_with(&format!("error: {code}"))
                    || (*code == "too-large" && error.starts_with("error: timeout")),
                "{}…: {error}",
                &sql[..60]
            );
            assert!(
                rss < baseline + (64 << 20),
                "{}…: {} MiB held, {} MiB for SELECT 1",
                &sql[..60],
                rss >> 20,
                baseline >> 20
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}…",
                &sql[..60]
            );
        }
    }

    // SQLite's NOCASE sort; on PostgreSQL, `postgres::a_query_past_its_deadline_is_cancelled_on_the_server`.
    /// A sort is one step SQLite's progress handler cannot interrupt; comparing
    /// long texts without case took one 1.29 s against a 150 ms deadline.
    #[test]
    fn a_long_sort_ends_near_its_deadline() {
        let f = ProbeApp::open(
            "[[guest]]\nname = \"probe\"\ncomponent = \"{probe}\"\n[guest.db]\nread = [\"customers\"]\n\
             [guest.limits]\nmemory = \"256 MiB\"\ntimeout_ms = 150\ndb_bytes = \"64 MiB\"\n",
        );
        let probe = f.guest("probe");
        let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 12000) \
                   SELECT count(*) FROM (SELECT row_number() OVER (ORDER BY v COLLATE NOCASE) \
                   FROM (SELECT printf('%.4000c', 'a') || x AS v FROM c))";
        let started = Instant::now();
        let outcome = probe
            .render(&get_with("/db/query", &[("sql", sql)]), Caller::default())
            .outcome;
        let took = started.elapsed();
        let stopped_at_deadline = match &outcome {
            Outcome::Error(e) => e.code == ErrorCode::Timeout,
            Outcome::Stopped(Stopped::Deadline { .. }) => true,
            _ => false,
        };
        assert!(stopped_at_deadline, "{outcome:?}");
        // 100 ms past the deadline on an idle machine; a generous guard here.
        assert!(
            took < Duration::from_millis(650),
            "the sort ran for {took:?}"
        );
    }
}
