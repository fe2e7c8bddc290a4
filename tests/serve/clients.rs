//! What `serve` holds for its clients stays bounded: slow readers of big
//! responses, statements a guest makes new on every call, and connections
//! from one address. Memory is the server's resident set, read from
//! `/proc` while the attack runs and after it ends.

use crate::common;

use common::{Served, shared_cache};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib << 10
}

/// A connection to `to` from the loopback address `from`, with a receive
/// buffer of 4 KiB: a client that can hold little and reads slowly.
fn slow_client(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    common::connect_from(from, to, Some(4096))
}

fn address(served: &Served) -> SocketAddr {
    served.base.trim_start_matches("http://").parse().unwrap()
}

/// Sends a GET of `path`.
fn send(stream: &mut TcpStream, path: &str) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
}

/// Reads a response's status line.
fn status(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line).trim().to_owned()
}

/// Sends a GET of `path` and reads the response's status line.
fn ask(stream: &mut TcpStream, path: &str) -> String {
    send(stream, path);
    status(stream)
}

fn app(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    common::manifest(
        dir,
        &format!(
            "[[guest]]\nname = \"probe\"\ncomponent = \"{{probe}}\"\nroute = \"/probe\"\n\
             [guest.db]\nread = [\"customers\"]\nwrite = [\"customers\"]\n{extra}"
        ),
    )
}

#[test]
fn slow_readers_of_big_responses_hold_bounded_memory_which_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = app(dir.path(), "");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "data_dir = \"data\"",
        "data_dir = \"data\"\nstatic = \"static\"",
    );
    std::fs::write(&file, text).unwrap();
    std::fs::create_dir_all(dir.path().join("static")).unwrap();
    std::fs::write(dir.path().join("static/big.png"), vec![7u8; 8_000_000]).unwrap();
    let served = Served::start(&file, &dir.path().join("data"), &shared_cache());
    let pid = served.child.id();
    let to = address(&served);
    let before = rss(pid);

    // 300 readers of the 8 MB file from three addresses, 100 of a 7 MiB
    // guest page from a fourth: each reads its status line, then nothing.
    let mut readers = Vec::new();
    for i in 0..400u16 {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (i / 100) as u8);
        let path = if !(200..300).contains(&i) {
            "/static/big.png"
        } else {
            "/probe/big?mb=7"
        };
        let mut stream = slow_client(from, to);
        send(&mut stream, path);
        readers.push(stream);
    }
    let mut peak = 0;
    let statuses: Vec<String> = readers
        .iter_mut()
        .map(|stream| {
            let status = status(stream);
            peak = peak.max(rss(pid));
            status
        })
        .collect();
    let served_whole = |want: &str| statuses.iter().filter(|s| s.contains(want)).count();
    assert_eq!(
        served_whole("200") + served_whole("503"),
        400,
        "every reader got an answer: {statuses:?}"
    );
    assert!(served_whole("200") >= 300, "the static readers were served");
    // Let the server write what the sockets take, then look again.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss(pid));
    }
    assert!(
        peak < 200 << 20,
        "serve held {} MiB for 400 slow readers (it started at {} MiB)",
        peak >> 20,
        before >> 20
    );

    // The readers leave: the memory comes back (but for what the first
    // renders and connections leave warm: pooled instance slots, threads).
    drop(readers);
    let left = Instant::now();
    eprintln!(
        "serve: {} MiB before, {} MiB at the peak",
        before >> 20,
        peak >> 20
    );
    while rss(pid) > before + (64 << 20) {
        assert!(
            left.elapsed() < Duration::from_secs(60),
            "serve still holds {} MiB after the readers left (it started at {} MiB)",
            rss(pid) >> 20,
            before >> 20
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_reader_that_stops_reading_is_cut_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = app(dir.path(), "");
    let served = Served::start(&file, &dir.path().join("data"), &shared_cache());
    let to = address(&served);
    let mut stalled = slow_client(Ipv4Addr::new(127, 0, 0, 2), to);
    assert!(ask(&mut stalled, "/probe/big?mb=7").contains("200"));
    // It reads nothing more. Past the rate window (and a margin for a busy
    // machine) the server has given up on it: what it can still read is
    // what the sockets held, far from the whole body.
    std::thread::sleep(rawalite_host::server::RATE_WINDOW + Duration::from_secs(10));
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = 0;
    let mut sink = vec![0u8; 1 << 20];
    while let Ok(n @ 1..) = stalled.read(&mut sink) {
        got += n;
    }
    assert!(got < 6 << 20, "the stalled reader got {got} bytes of 7 MiB");
    let mut other = slow_client(Ipv4Addr::new(127, 0, 0, 3), to);
    assert!(ask(&mut other, "/probe/echo").contains("200"));
}

#[test]
fn distinct_large_statements_leave_no_memory_behind() {
    let dir = tempfile::tempdir().unwrap();
    // Time enough for eight writers to wait their turns on a busy machine.
    let file = app(dir.path(), "[guest.limits]\ntimeout_ms = 10000\n");
    let served = Served::start(&file, &dir.path().join("data"), &shared_cache());
    let pid = served.child.id();
    let ids: Vec<String> = (10_000..20_300).map(|n: u32| n.to_string()).collect();
    let in_list = ids.join(",");
    let statement = |i: usize| {
        let sql = format!("UPDATE customers SET name = name WHERE id IN ({in_list}) AND {i} = {i}");
        serde_json::json!([{ "sql": sql, "params": [] }]).to_string()
    };
    assert!(statement(0).len() > 60_000 && statement(0).len() < 65_000);
    let base = served.base.clone();
    // Each statement runs once; one that found the database busy (the
    // writers queue for its lock) is sent again.
    let send = |i: usize| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let started = Instant::now();
        loop {
            let r = agent
                .post(format!("{base}/probe/db/transaction"))
                .header("Origin", &base)
                .send(statement(i))
                .unwrap();
            let status = r.status();
            if status == 409 && started.elapsed() < Duration::from_secs(120) {
                continue;
            }
            assert_eq!(status, 200, "{}", r.into_body().read_to_string().unwrap());
            return;
        }
    };
    for i in 0..16 {
        send(i);
    }
    let before = rss(pid);
    const STATEMENTS: usize = 2000;
    std::thread::scope(|s| {
        for t in 0..8 {
            let send = &send;
            s.spawn(move || {
                for i in (t..STATEMENTS).step_by(8) {
                    send(1000 + i);
                }
            });
        }
    });
    let after = rss(pid);
    assert!(
        after < before + (64 << 20),
        "{STATEMENTS} distinct statements grew serve from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );
}

#[test]
fn one_address_holds_a_share_of_the_connections_and_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = app(dir.path(), "");
    let served = Served::start(&file, &dir.path().join("data"), &shared_cache());
    let to = address(&served);
    let greedy = Ipv4Addr::new(127, 0, 0, 2);
    let mut held: Vec<TcpStream> = (0..128).map(|_| slow_client(greedy, to)).collect();
    // The 129th from the same address is told to come back later...
    let mut refused = slow_client(greedy, to);
    assert!(ask(&mut refused, "/probe/echo").contains("503"));
    // ...while another address is served, and the held ones still work.
    let mut other = slow_client(Ipv4Addr::new(127, 0, 0, 3), to);
    assert!(ask(&mut other, "/probe/echo").contains("200"));
    assert!(ask(&mut held[0], "/probe/echo").contains("200"));
}
