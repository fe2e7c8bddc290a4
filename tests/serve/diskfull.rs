//! A full disk, made honestly without a small file system: the running
//! server's file size limit (`RLIMIT_FSIZE`, lowered with `prlimit`) makes
//! every write past it fail with `EFBIG`, as a full disk fails with
//! `ENOSPC`. Writes through `db` and `paths` fail with a clear error,
//! nothing stored is damaged, reads go on, and when the limit is lifted
//! writes work again without a restart.

use crate::common;

use common::{Served, agent, guest, shared_cache};

/// (status, body) of a request to the probe.
fn call(served: &Served, post: Option<&[u8]>, path: &str) -> (u16, String) {
    let url = served.url(&format!("/probe{path}"));
    let mut response = match post {
        Some(body) => agent().post(&url).header("Origin", &served.base).send(body),
        None => agent().get(&url).call(),
    }
    .unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Sets the soft file size limit of process `pid` (the hard one stays, so
/// it can be raised again without privileges).
fn set_file_size_limit(pid: u32, bytes: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a valid pid and pointers to owned structs.
    unsafe {
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, std::ptr::null(), &mut limit),
            0
        );
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn a_full_disk_fails_writes_clearly_damages_nothing_and_writes_resume_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rawalite.toml");
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"full\"\ndata_dir = \"data\"\n[paths]\nfiles = \"files\"\n\n\
             [[guest]]\nname = \"probe\"\ncomponent = \"{}\"\nroute = \"/probe\"\n\
             [guest.db]\nread = [\"customers\"]\nwrite = [\"customers\"]\n\
             [guest.paths]\nfiles = {{ access = \"read-write\", quota = \"10 MiB\" }}\n",
            guest("probe").display()
        ),
    )
    .unwrap();
    let served = Served::start(&manifest, &dir.path().join("data"), &shared_cache());
    let insert = |name: &str| {
        call(
            &served,
            Some(b""),
            &format!(
                "/db/execute?sql=INSERT%20INTO%20customers%20(name)%20VALUES%20(%3F)&p=t:{name}"
            ),
        )
    };
    let names = || {
        call(
            &served,
            None,
            "/db/query?sql=SELECT%20name%20FROM%20customers%20ORDER%20BY%20id",
        )
        .1
    };
    assert_eq!(insert("before").0, 200);
    assert_eq!(
        call(
            &served,
            Some(b"old contents"),
            "/paths/write?root=files&path=keep.txt"
        )
        .0,
        200
    );

    // The disk is "full": no file may grow past one byte.
    set_file_size_limit(served.child.id(), 1);
    let (status, body) = insert("during");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("could not write to its disk"), "{body}");
    let big = vec![b'x'; 100_000];
    let (status, body) = call(&served, Some(&big), "/paths/write?root=files&path=keep.txt");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("disk is full") && body.contains("old file is unchanged"),
        "{body}"
    );

    // Reads go on, and what was stored is intact.
    assert_eq!(
        call(&served, None, "/paths/read?root=files&path=keep.txt"),
        (200, "old contents".to_owned())
    );
    assert!(names().contains("before") && !names().contains("during"));
    assert_eq!(
        agent()
            .get(&served.url("/healthz"))
            .call()
            .unwrap()
            .status(),
        200
    );

    // Space returns: writes work again, no restart.
    set_file_size_limit(served.child.id(), u64::MAX);
    assert_eq!(insert("after").0, 200);
    assert_eq!(
        call(
            &served,
            Some(b"new contents"),
            "/paths/write?root=files&path=keep.txt"
        )
        .0,
        200
    );
    assert_eq!(
        call(&served, None, "/paths/read?root=files&path=keep.txt").1,
        "new contents"
    );
    drop(served);
    let conn = rusqlite::Connection::open(dir.path().join("data/rawalite.db")).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let files: Vec<String> = std::fs::read_dir(dir.path().join("data/files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["keep.txt"], "no temporary file left behind");
}
