//! `rawalite backup` under write load and `rawalite restore` into a fresh
//! directory: every write acknowledged before the backup began is there,
//! the roots' files too, and the app serves the restored data. A restore
//! refuses a damaged archive and a data directory `serve` is running on.

mod common;

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
    std::thread::sleep(Duration::from_millis(300));
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
    std::thread::sleep(Duration::from_millis(200));
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
    rawalite_host::database::init().unwrap();
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
    std::thread::sleep(Duration::from_millis(2500));
    let kept = names();
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

    // A crash's temporary file, a nearly full root, a directory others may write.
    std::fs::write(data.join("files/.rawalite-tmp-0123456789abcdef"), "half").unwrap();
    std::fs::write(data.join("files/big.bin"), vec![0u8; 60 << 10]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, out) = with_manifest("doctor");
    assert_eq!(code, 0, "warnings only: {out}");
    assert!(
        out.contains("WARN  1 temporary file(s) left by a crash"),
        "{out}"
    );
    assert!(out.contains("raise `quota` under [guest.paths]"), "{out}");
    assert!(out.contains("`chmod go-w"), "{out}");

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
