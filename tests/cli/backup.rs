//! `rawalite backup` under write load and `rawalite restore` into a fresh
//! directory: every write acknowledged before the backup began is there,
//! the roots' files too, and the app serves the restored data. A restore
//! refuses a damaged archive and a data directory `serve` is running on,
//! and a hostile archive writes nothing it does not list, at no more than
//! the size it lists, and reads nothing outside its own entries.
//!
//! Past 600 lines on purpose: one case per way an archive or a data
//! directory can be wrong, each with its own setup.

use crate::common;

use common::{Served, bin, demo_manifest, run, shared_cache};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `rawalite restore ARCHIVE --data DATA`.
fn restore(archive: &Path, data: &Path) -> (i32, String) {
    run(&[
        "restore",
        archive.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ])
}

fn names(db: &Path) -> std::collections::HashSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM customers").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_backup_under_write_load_restores_every_acknowledged_write_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_manifest(dir.path(), true);
    let data = dir.path().join("data");
    let served = Served::start(&manifest, &data, &shared_cache());
    let password = served.admin_password.clone();
    std::fs::write(data.join("exports/report.csv"), "a,b\n1,2\n").unwrap();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (base, acked, stop) = (served.base.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    let url = format!(
                        "{base}/probe/db/execute?sql=INSERT%20INTO%20customers%20(name)%20VALUES%20(%3F)&p=t:{name}"
                    );
                    let r = agent.post(&url).header("Origin", &base).send_empty().unwrap();
                    assert_eq!(r.status(), 200);
                    acked.lock().unwrap().push(name);
                }
            })
        })
        .collect();
    // Some writes acknowledged before the backup starts, however busy the
    // machine is.
    let waited = std::time::Instant::now();
    while acked.lock().unwrap().len() <= 20 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the writers got no answers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: Vec<String> = acked.lock().unwrap().clone();
    let archive = dir.path().join("backup.tar.gz");
    let (code, out) = run(&[
        "backup",
        archive.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("==> snapshot of the database"),
        "progress: {out}"
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(before.len() > 20, "too little load: {}", before.len());
    drop(served);

    // Into a fresh directory.
    let fresh = dir.path().join("fresh");
    let (code, out) = restore(&archive, &fresh);
    assert_eq!(code, 0, "{out}");
    let restored = names(&fresh.join("rawalite.db"));
    let lost: Vec<&String> = before.iter().filter(|n| !restored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes missing, e.g. {:?}",
        lost.len(),
        lost[0]
    );
    assert_eq!(
        std::fs::read_to_string(fresh.join("exports/report.csv")).unwrap(),
        "a,b\n1,2\n"
    );

    // The app serves it, users and all.
    let served = Served::start(&manifest, &fresh, &shared_cache());
    assert_eq!(
        served.admin_password, "",
        "the restored admin is reused, not created"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let signed_in = agent
        .post(served.url("/login"))
        .header("Origin", &served.base)
        .send_form([("username", "admin"), ("password", password.as_str())])
        .unwrap();
    assert_eq!(signed_in.status(), 303, "the restored admin signs in");
    let mut count = agent
        .get(served.url("/probe/db/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20customers"))
        .call()
        .unwrap();
    let count: serde_json::Value =
        serde_json::from_str(&count.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        count["rows"][0][0].as_u64().unwrap() as usize,
        restored.len()
    );

    // Not while serve runs on it; the directory is untouched.
    let (code, out) = restore(&archive, &fresh);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`rawalite serve` is running"), "{out}");
    drop(served);

    // A damaged archive is refused and changes nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = dir.path().join("damaged.tar.gz");
    std::fs::write(&damaged, bytes).unwrap();
    let (code, out) = restore(&damaged, &fresh);
    assert_eq!(code, 2, "{out}");
    assert_eq!(names(&fresh.join("rawalite.db")), restored);

    // A restore over existing data keeps what it replaced.
    let (code, out) = restore(&archive, &fresh);
    assert_eq!(code, 0, "{out}");
    let kept = out
        .lines()
        .find_map(|l| l.strip_prefix("the directory it replaced is kept at "))
        .unwrap();
    assert!(Path::new(kept).join("rawalite.db").is_file(), "{out}");
}

#[test]
fn a_backup_of_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out) = run(&["migrate", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // A migration this binary does not know, as a newer rawalite would leave.
    rawalite_host::database::sqlite::init().unwrap();
    rusqlite::Connection::open(data.join("rawalite.db"))
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             SELECT 999, 'from_the_future', applied_on, '0' FROM refinery_schema_history LIMIT 1",
            [],
        )
        .unwrap();
    let archive = dir.path().join("b.tar.gz");
    let (code, out) = run(&[
        "backup",
        archive.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "a backup takes the database as it is: {out}");
    let elsewhere = dir.path().join("elsewhere");
    let (code, out) = restore(&archive, &elsewhere);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("migration 0999_from_the_future applied, which this rawalite does not know"),
        "{out}"
    );
    assert!(!elsewhere.exists(), "nothing restored");
}

#[test]
fn serve_takes_scheduled_backups_keeps_the_newest_and_refuses_a_dir_inside_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_manifest(dir.path(), false);
    let scheduled = std::fs::read_to_string(&manifest).unwrap().replacen(
        "[paths]",
        "[app.backup]\nevery = \"1s\"\nkeep = 2\ndir = \"backups\"\n\n[paths]",
        1,
    );
    std::fs::write(&manifest, &scheduled).unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&manifest, &data, &shared_cache());
    let backups = dir.path().join("backups");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let names = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&backups)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.retain(|n| n.ends_with(".tar.gz"));
        names.sort();
        names
    };
    // The first at once, one a second after: three written, two kept.
    while names().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no backups: {:?}",
            names()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A later one replaces the oldest: two kept once it is written (for a
    // moment in between, the new one and both old ones are there).
    let first = names();
    let kept = loop {
        let now = names();
        if now.len() == 2 && now.last() != first.last() {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(20),
            "no newer backup after {first:?}, or more than two kept: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|n| n.starts_with("rawalite-2")), "{kept:?}");
    drop(served);
    let newest = backups.join(kept.last().unwrap());
    let (code, out) = restore(&newest, &dir.path().join("restored"));
    assert_eq!(code, 0, "{out}");

    // Backups inside a root would be open to guests: refused at start.
    let inside = scheduled.replace(
        "dir = \"backups\"",
        &format!("dir = \"{}\"", data.join("exports/backups").display()),
    );
    std::fs::write(&manifest, inside).unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(&manifest)
        .arg("--data")
        .arg(&data)
        .env("RAWALITE_CACHE_DIR", shared_cache())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("[app.backup] dir"), "{err}");
    // The same, spelled so that it does not look like it (the directory
    // does not exist yet).
    let sneaky = scheduled.replace(
        "dir = \"backups\"",
        &format!(
            "dir = \"{}/nothing/../data/exports/hidden\"",
            dir.path().display()
        ),
    );
    std::fs::write(&manifest, sneaky).unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(&manifest)
        .arg("--data")
        .arg(&data)
        .env("RAWALITE_CACHE_DIR", shared_cache())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[app.backup] dir") && err.contains("/data/exports/hidden"),
        "compared where it really is: {err}"
    );
}

#[test]
fn doctor_says_what_is_wrong_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(
        &manifest,
        "[app]\nname = \"d\"\ndata_dir = \"data\"\n[paths]\nfiles = \"files\"\n\n\
         [[guest]]\nname = \"g\"\ncomponent = \"g.wasm\"\n\
         [guest.paths]\nfiles = { access = \"read-write\", quota = \"64 KiB\" }\n",
    )
    .unwrap();
    let with_manifest = |command: &str| run(&[command, "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(with_manifest("migrate").0, 0);
    std::fs::create_dir_all(data.join("files")).unwrap();
    let (code, out) = with_manifest("doctor");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    the database passes its integrity check"),
        "{out}"
    );
    assert!(out.contains("ok    migrations are current"), "{out}");
    assert!(out.contains("ok    root `files` holds"), "{out}");
    // How serve resets a sandbox here, which swap decides.
    assert!(out.contains("`serve` resets each sandbox with"), "{out}");
    assert!(
        !out.contains("other users"),
        "private from the start: {out}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("rawalite.db")), 0o600);

    // A crash's temporary file, a nearly full root, a directory and a
    // database others may read.
    std::fs::write(data.join("files/.rawalite-tmp-0123456789abcdef"), "half").unwrap();
    std::fs::write(data.join("files/big.bin"), vec![0u8; 60 << 10]).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("rawalite.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, out) = with_manifest("doctor");
    assert_eq!(code, 0, "warnings only: {out}");
    assert!(
        out.contains("WARN  1 temporary file(s) left by a crash"),
        "{out}"
    );
    assert!(out.contains("raise `quota` under [guest.paths]"), "{out}");
    assert!(
        out.contains(&format!("`chmod 700 {}`", data.display())),
        "{out}"
    );
    assert!(out.contains("`chmod 600 "), "{out}");

    // A damaged database fails, with what to do.
    let db = data.join("rawalite.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[4096..8192] {
        *b = 0xff;
    }
    std::fs::write(&db, bytes).unwrap();
    let (code, out) = with_manifest("doctor");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("rawalite restore"),
        "{out}"
    );
}

/// A probe with a root `files` it may write, for backups under file writes.
fn files_app(dir: &Path) -> std::path::PathBuf {
    common::manifest(
        dir,
        "[paths]\nfiles = \"files\"\n\n[[guest]]\nname = \"probe\"\ncomponent = \"{probe}\"\nroute = \"/probe\"\n\
         [guest.paths]\nfiles = { access = \"read-write\", quota = \"300 MiB\" }\n",
    )
}

/// Bytes that do not compress, so that archiving them takes a while.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_backup_taken_while_a_guest_rewrites_a_file_restores() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = files_app(dir.path());
    let data = dir.path().join("data");
    let served = Served::start(&manifest, &data, &shared_cache());
    // A big file first, so the file after it is read long after the backup began.
    std::fs::write(data.join("files/a-big.bin"), noise(24 << 20)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(0u64));
    let writer = {
        let (base, stop, written) = (served.base.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = agent
                    .post(format!("{base}/probe/paths/write?root=files&path=hot.txt"))
                    .header("Origin", &base)
                    .send(format!("version {n}"))
                    .unwrap();
                assert_eq!(r.status(), 200);
                *written.lock().unwrap() = n;
            }
        })
    };
    let waited = std::time::Instant::now();
    while *written.lock().unwrap() < 5 {
        assert!(waited.elapsed() < Duration::from_secs(60), "no writes");
        std::thread::sleep(Duration::from_millis(10));
    }
    let archives: Vec<_> = (0..3)
        .map(|i| {
            let archive = dir.path().join(format!("live-{i}.tar.gz"));
            let (code, out) = run(&[
                "backup",
                archive.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--manifest",
                manifest.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "{out}");
            archive
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(*written.lock().unwrap() > 10, "the guest kept writing");
    for (i, archive) in archives.iter().enumerate() {
        let fresh = dir.path().join(format!("fresh-{i}"));
        let (code, out) = restore(archive, &fresh);
        assert_eq!(code, 0, "{out}");
        let hot = std::fs::read_to_string(fresh.join("files/hot.txt")).unwrap();
        assert!(hot.starts_with("version "), "{hot:?}");
    }
}

/// A real archive's entries, BACKUP.json parsed.
fn entries(archive: &Path) -> (serde_json::Value, Vec<(String, Vec<u8>)>) {
    use std::io::Read;
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut all = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        all.push((path, bytes));
    }
    let contents = serde_json::from_slice(&all.remove(0).1).unwrap();
    (contents, all)
}

/// An archive entry: its path, the size its header claims (its length when
/// `None`), and the bytes it carries.
type Forged = (String, Option<u64>, Vec<u8>);

/// Writes an archive of `contents` and `files`.
fn forge(dest: &Path, contents: &serde_json::Value, files: &[Forged]) {
    let out = std::fs::File::create(dest).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    let json = serde_json::to_vec(contents).unwrap();
    let mut append = |path: &str, size: u64, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes).unwrap();
    };
    append("BACKUP.json", json.len() as u64, &json);
    for (path, size, bytes) in files {
        append(path, size.unwrap_or(bytes.len() as u64), bytes);
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn a_hostile_archive_writes_nothing_unlisted_nor_past_its_size_and_reads_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = files_app(dir.path());
    let data = dir.path().join("data");
    assert_eq!(
        run(&["migrate", "--manifest", manifest.to_str().unwrap()]).0,
        0
    );
    std::fs::create_dir_all(data.join("files")).unwrap();
    std::fs::write(data.join("files/note.txt"), "hello").unwrap();
    let real = dir.path().join("real.tar.gz");
    let (code, out) = run(&[
        "backup",
        real.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let (contents, files) = entries(&real);
    let honest: Vec<Forged> = files
        .iter()
        .map(|(p, b)| (p.clone(), None, b.clone()))
        .collect();
    let listing = |path: &str, size: u64, sha256: &str| {
        let mut c = contents.clone();
        c["files"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"path": path, "size": size, "sha256": sha256}));
        c
    };
    let cases: Vec<(&str, serde_json::Value, Vec<Forged>, &str)> = vec![
        (
            "an entry larger than listed (a bomb)",
            listing("bomb", 10, &"0".repeat(64)),
            [
                honest.clone(),
                vec![("bomb".into(), None, vec![0; 64 << 20])],
            ]
            .concat(),
            "bomb is not the size BACKUP.json lists",
        ),
        (
            "an entry whose bytes are not its checksum's",
            listing("files/x", 4, &"0".repeat(64)),
            [
                honest.clone(),
                vec![("files/x".into(), None, b"evil".to_vec())],
            ]
            .concat(),
            "files/x does not match its checksum",
        ),
        (
            "a listed host path",
            listing("/etc/hostname", 1, &"0".repeat(64)),
            honest.clone(),
            "lists `/etc/hostname`, which is not a file a backup holds",
        ),
        (
            "a listed path that climbs out",
            listing("../../../../etc/hostname", 1, &"0".repeat(64)),
            honest.clone(),
            "which is not a file a backup holds",
        ),
        (
            "a device",
            listing("/dev/zero", 1, &"0".repeat(64)),
            honest.clone(),
            "which is not a file a backup holds",
        ),
        (
            "the live database's journal",
            listing("rawalite.db-wal", 4, &"0".repeat(64)),
            [
                honest.clone(),
                vec![("rawalite.db-wal".into(), None, b"junk".to_vec())],
            ]
            .concat(),
            "lists `rawalite.db-wal`",
        ),
        (
            "serve's lock",
            listing(".serve.lock", 4, &"0".repeat(64)),
            [
                honest.clone(),
                vec![(".serve.lock".into(), None, b"junk".to_vec())],
            ]
            .concat(),
            "lists `.serve.lock`",
        ),
        (
            "a file listed but not in the archive",
            listing("files/ghost", 4, &"0".repeat(64)),
            honest.clone(),
            "files/ghost is listed in BACKUP.json but missing from the archive",
        ),
        (
            "more than the disk holds",
            listing("files/huge", 1 << 60, &"0".repeat(64)),
            honest.clone(),
            "more than the",
        ),
        (
            "sizes whose sum wraps past 2^64 to a few KiB",
            {
                let mut c = listing("files/a", 1 << 63, &"0".repeat(64));
                c["files"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"path": "files/b", "size": 1u64 << 63, "sha256": "0".repeat(64)}));
                c
            },
            [
                honest.clone(),
                vec![("files/a".into(), None, vec![0; 1 << 20])],
            ]
            .concat(),
            "add up to more than 16 EiB",
        ),
    ];
    for (what, contents, files, expected) in cases {
        let forged = dir.path().join("forged.tar.gz");
        forge(&forged, &contents, &files);
        let fresh = dir.path().join("fresh");
        let started = std::time::Instant::now();
        let (code, out) = restore(&forged, &fresh);
        assert_eq!(code, 2, "{what}: {out}");
        assert!(out.contains(expected), "{what}: {out}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        assert!(!fresh.exists(), "{what}: nothing is restored");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".rawalite-restore-"))
            .collect();
        assert!(left.is_empty(), "{what}: staging left behind: {left:?}");
    }
    // The honest archive, rewritten the same way, restores.
    let forged = dir.path().join("forged.tar.gz");
    forge(&forged, &contents, &honest);
    let (code, out) = restore(&forged, &dir.path().join("fresh"));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fresh/files/note.txt")).unwrap(),
        "hello"
    );
}

#[test]
fn restore_keeps_serve_off_both_directories_until_the_swap_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = files_app(dir.path());
    let data = dir.path().join("data");
    assert_eq!(
        run(&["migrate", "--manifest", manifest.to_str().unwrap()]).0,
        0
    );
    std::fs::create_dir_all(data.join("files")).unwrap();
    // Slow to unpack, quick to compress.
    std::fs::write(data.join("files/zeros.bin"), vec![0u8; 256 << 20]).unwrap();
    let archive = dir.path().join("slow.tar.gz");
    let (code, out) = run(&[
        "backup",
        archive.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    std::fs::remove_file(data.join("files/zeros.bin")).unwrap();

    let restoring = std::process::Command::new(bin())
        .args([
            "restore",
            archive.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waited = std::time::Instant::now();
    while !std::fs::read_dir(dir.path()).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".rawalite-restore-")
    }) {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "restore never began"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let serve = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(&manifest)
        .arg("--data")
        .arg(&data)
        .env("RAWALITE_CACHE_DIR", shared_cache())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&serve.stderr);
    assert_eq!(serve.status.code(), Some(2), "{err}");
    assert!(err.contains("`rawalite restore` is running"), "{err}");
    let status = restoring.wait_with_output().unwrap().status;
    assert!(status.success());
    assert_eq!(
        std::fs::metadata(data.join("files/zeros.bin"))
            .unwrap()
            .len(),
        256 << 20
    );
    // Once it is done, serve starts on the restored directory.
    drop(Served::start(&manifest, &data, &shared_cache()));
}
