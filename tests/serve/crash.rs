//! Crash safety under SIGKILL: `serve` is killed at random moments while
//! clients write through `db` (single statements and transactions) and
//! through `paths` (overwrites of the same files). After each kill the
//! database passes `integrity_check`, every write acknowledged before the
//! kill is there, no transaction is half there, no file is torn, and after
//! a restart no temporary file is visible to a guest or left on disk (on
//! PostgreSQL, whose hosts may share the data directory, a young one may
//! stay on disk: it could be another host's write in progress).

use crate::common;

use common::{Served, agent, guest, shared_cache};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: usize = 20;
/// Each file version is this many bytes of one repeated 9-byte marker.
const FILE_BYTES: usize = 9 * 8 * 1024;
const FILES: [&str; 2] = ["a.txt", "b.txt"];

/// What the server acknowledged (answered 200) before it was killed.
#[derive(Default)]
struct Acknowledged {
    names: Vec<String>,
    pairs: Vec<String>,
    /// The newest acknowledged version of each file.
    versions: HashMap<&'static str, u64>,
}

fn manifest(dir: &Path) -> PathBuf {
    let file = dir.join("rawalite.toml");
    std::fs::write(
        &file,
        format!(
            "[app]\nname = \"crash\"\ndata_dir = \"data\"\n{}[paths]\nfiles = \"files\"\n\n\
             [[guest]]\nname = \"probe\"\ncomponent = \"{}\"\nroute = \"/probe\"\n\
             [guest.limits]\ntimeout_ms = 5000\n\
             [guest.db]\nread = [\"customers\"]\nwrite = [\"customers\"]\n\
             [guest.paths]\nfiles = {{ access = \"read-write\", quota = \"10 MiB\" }}\n",
            common::database_line(),
            guest("probe").display()
        ),
    )
    .unwrap();
    file
}

/// A file's content at version `v`: the marker `v00000042` repeated.
fn version(v: u64) -> Vec<u8> {
    format!("v{v:08}").repeat(FILE_BYTES / 9).into_bytes()
}

/// The version a file holds, or a panic if it is torn (mixed versions,
/// short, or not a version at all).
fn read_version(bytes: &[u8], file: &str) -> u64 {
    assert_eq!(
        bytes.len(),
        FILE_BYTES,
        "{file} is torn: {} bytes",
        bytes.len()
    );
    let marker = &bytes[..9];
    assert!(
        bytes.chunks(9).all(|c| c == marker),
        "{file} is torn: more than one version in it"
    );
    std::str::from_utf8(&marker[1..]).unwrap().parse().unwrap()
}

/// Clients writing until the server stops answering.
fn writers(
    base: &str,
    round: usize,
    acked: &Arc<Mutex<Acknowledged>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for w in 0..2 {
        let (base, acked) = (base.to_owned(), acked.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0.. {
                let name = format!("r{round}-w{w}-{i}");
                let url = format!(
                    "{base}/probe/db/execute?sql=INSERT%20INTO%20customers%20(name)%20VALUES%20(%3F)&p=t:{name}"
                );
                match agent().post(&url).header("Origin", &base).send_empty() {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().names.push(name),
                    Ok(r) => panic!("an insert failed with {}", r.status()),
                    Err(_) => break,
                }
            }
        }));
    }
    {
        let (base, acked) = (base.to_owned(), acked.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0.. {
                let pair = format!("pair-{round}-{i}");
                let body = serde_json::json!([
                    {"sql": "INSERT INTO customers (name) VALUES (?)", "params": [format!("t:{pair}-a")]},
                    {"sql": "INSERT INTO customers (name) VALUES (?)", "params": [format!("t:{pair}-b")]},
                ]);
                let url = format!("{base}/probe/db/transaction");
                match agent()
                    .post(&url)
                    .header("Origin", &base)
                    .send(body.to_string())
                {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().pairs.push(pair),
                    Ok(r) => panic!("a transaction failed with {}", r.status()),
                    Err(_) => break,
                }
            }
        }));
    }
    for file in FILES {
        let (base, acked) = (base.to_owned(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let from = acked
                .lock()
                .unwrap()
                .versions
                .get(file)
                .copied()
                .unwrap_or(0);
            for v in from + 1.. {
                let url = format!("{base}/probe/paths/write?root=files&path={file}");
                match agent()
                    .post(&url)
                    .header("Origin", &base)
                    .send(&version(v)[..])
                {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().versions.insert(file, v);
                    }
                    Ok(r) => panic!("a write failed with {}", r.status()),
                    Err(_) => break,
                }
            }
        }));
    }
    threads
}

/// What must hold after a kill, read behind the server's back.
fn check(manifest: &Path, data: &Path, acked: &Acknowledged) {
    if !common::on_postgres() {
        let conn = rusqlite::Connection::open(data.join("rawalite.db")).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
    }
    let stored: std::collections::HashSet<String> =
        common::sql_behind(manifest, data, "SELECT name FROM customers")
            .into_iter()
            .collect();
    common::assert_none_lost(&acked.names, &stored);
    for pair in &acked.pairs {
        assert!(
            stored.contains(&format!("{pair}-a")) && stored.contains(&format!("{pair}-b")),
            "acknowledged transaction {pair} lost"
        );
    }
    // Acknowledged or not, no transaction is half there.
    for name in stored.iter().filter(|n| n.starts_with("pair-")) {
        let (pair, half) = name.rsplit_once('-').unwrap();
        let other = if half == "a" { "b" } else { "a" };
        assert!(
            stored.contains(&format!("{pair}-{other}")),
            "half a transaction: {name}"
        );
    }
    for file in FILES {
        let Some(&newest) = acked.versions.get(file) else {
            continue;
        };
        let bytes = std::fs::read(data.join("files").join(file)).unwrap();
        let v = read_version(&bytes, file);
        assert!(
            v >= newest,
            "{file}: version {v} on disk, {newest} acknowledged"
        );
    }
}

/// After a start: the guest sees only the files, and no temporary file
/// is left on disk (the root cleans them when it opens). On PostgreSQL the
/// data directory may be shared by other hosts, so a young temporary file
/// stays (it could be another host's write in progress) but is never seen.
fn check_no_temporary_files(served: &Served, data: &Path) {
    let listing: serde_json::Value = serde_json::from_str(
        &agent()
            .get(&served.url("/probe/paths/list?root=files"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| FILES.contains(n)),
        "visible: {names:?}"
    );
    let on_disk: Vec<String> = std::fs::read_dir(data.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let shared = common::on_postgres();
    assert!(
        on_disk
            .iter()
            .all(|n| FILES.contains(&n.as_str()) || (shared && n.starts_with(".rawalite-tmp-"))),
        "on disk: {on_disk:?}"
    );
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_write_and_tears_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path());
    let data = dir.path().join("data");
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    // A different schedule each run; the seed is printed to replay one.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    println!("seed {seed}");
    for round in 0..ROUNDS {
        let mut served = Served::start(&manifest, &data, &shared_cache());
        if round > 0 {
            check_no_temporary_files(&served, &data);
        }
        let threads = writers(&served.base, round, &acked);
        // xorshift: 50-450 ms of writing before the kill.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 400));
        served.child.kill().unwrap(); // SIGKILL
        served.child.wait().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        check(&manifest, &data, &acked.lock().unwrap());
    }
    let served = Served::start(&manifest, &data, &shared_cache());
    check_no_temporary_files(&served, &data);
    let acked = acked.lock().unwrap();
    println!(
        "{ROUNDS} kills: {} inserts, {} transactions, file versions {:?} acknowledged",
        acked.names.len(),
        acked.pairs.len(),
        acked.versions
    );
    assert!(
        acked.names.len() > ROUNDS * 10,
        "too little load: {}",
        acked.names.len()
    );
    assert!(acked.versions.len() == FILES.len(), "no file was written");
}

/// The check above can fail: a file with two versions in it is caught.
#[test]
#[should_panic(expected = "torn")]
fn a_torn_file_is_caught() {
    let mut bytes = version(7);
    bytes[FILE_BYTES - 9..].copy_from_slice(b"v00000008");
    read_version(&bytes, "x.txt");
}
