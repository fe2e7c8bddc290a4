use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn bounds(quota: u64, entries: u64) -> Bounds {
    Bounds {
        quota,
        entries,
        max_file: 1 << 20,
        deadline: Instant::now() + Duration::from_secs(10),
    }
}

#[test]
fn a_shared_root_keeps_temporary_files_another_host_may_be_writing() {
    let dir = tempfile::tempdir().unwrap();
    let young = dir.path().join(format!("{TEMP_PREFIX}young"));
    let old = dir.path().join(format!("{TEMP_PREFIX}old"));
    std::fs::write(&young, b"in flight").unwrap();
    std::fs::write(&old, b"abandoned").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - IN_FLIGHT - Duration::from_secs(60))
        .unwrap();
    let shared = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
    let usage = sweep_and_measure(&shared, true).unwrap();
    assert!(young.exists(), "a write in flight elsewhere was swept");
    assert!(!old.exists(), "an abandoned one stayed");
    assert_eq!(usage, Usage::default(), "neither is counted");
    Root::open(dir.path()).unwrap();
    assert!(!young.exists(), "one host alone sweeps every one");
}

#[test]
fn every_entry_costs_a_block_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let b = bounds(1 << 20, 100);
    root.write("a", b"x", &b).unwrap();
    root.create_dir("d", &b).unwrap();
    root.write("d/big", &[7; 10_000], &b).unwrap();
    let usage = root.usage();
    assert_eq!(
        usage,
        Usage {
            bytes: BLOCK + BLOCK + 10_000,
            entries: 3
        }
    );
    // A fresh walk agrees with what the writes kept.
    assert_eq!(Root::open(dir.path()).unwrap().usage(), usage);
    root.remove("d/big", b.deadline).unwrap();
    assert_eq!(
        root.usage(),
        Usage {
            bytes: 2 * BLOCK,
            entries: 2
        }
    );
}

#[test]
fn directories_are_held_to_the_quota_and_the_entry_bound() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let small = bounds(3 * BLOCK, 100);
    for i in 0..3 {
        root.create_dir(&format!("d{i}"), &small).unwrap();
    }
    assert!(matches!(
        root.create_dir("d3", &small),
        Err(RootError::Quota { .. })
    ));
    let few = bounds(1 << 20, 4);
    root.write("f", b"", &few).unwrap();
    assert!(matches!(
        root.write("g", b"", &few),
        Err(RootError::TooManyEntries { limit: 4 })
    ));
    assert!(matches!(
        root.list("", 3),
        Err(RootError::TooManyToList { limit: 3 })
    ));
}

#[test]
fn a_write_stops_at_its_deadline_and_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let mut b = bounds(64 << 20, 100);
    b.max_file = 64 << 20;
    root.write("f", b"old", &b).unwrap();
    b.deadline = Instant::now();
    let big = vec![1u8; 4 << 20];
    assert!(matches!(
        root.write("f", &big, &b),
        Err(RootError::Deadline)
    ));
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    assert_eq!(
        root.usage(),
        Usage {
            bytes: BLOCK,
            entries: 1
        }
    );
}

#[test]
fn a_change_waits_for_the_root_only_until_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let held = root.usage.lock();
    let mut b = bounds(1 << 20, 100);
    b.deadline = Instant::now() + Duration::from_millis(20);
    assert!(matches!(root.write("a", b"x", &b), Err(RootError::Busy)));
    assert!(matches!(root.remove("a", b.deadline), Err(RootError::Busy)));
    drop(held);
    b.deadline = Instant::now() + Duration::from_secs(10);
    root.write("a", b"x", &b).unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Write(u8, usize),
    Mkdir(u8),
    Remove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6u8, 0..20_000usize).prop_map(|(n, len)| Op::Write(n, len)),
        (0..6u8).prop_map(Op::Mkdir),
        (0..6u8).prop_map(Op::Remove),
    ]
}

/// `d2/f4`-style names: files at the top or in one of the directories.
fn name(n: u8) -> String {
    if n.is_multiple_of(2) {
        format!("f{n}")
    } else {
        format!("d{}/f{n}", n % 3)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// A path the check lets through is plain: relative, made of normal
    /// segments only, bounded, free of control characters.
    #[test]
    fn accepted_paths_are_plain(path in prop_oneof![".{0,80}", "[a./\\\\]{0,12}"]) {
        if let Ok(p) = check_path(&path) {
            let components: Vec<_> = Path::new(p).components().collect();
            prop_assert!(components.iter().all(|c| matches!(c, std::path::Component::Normal(_))), "{:?}", p);
            prop_assert!(components.len() <= MAX_SEGMENTS && p.len() <= MAX_PATH_BYTES);
            prop_assert!(!p.chars().any(char::is_control) && !p.contains('\\'));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// No path, however it is put together, reads a file outside the
    /// root, through `..` or through a link that leads out.
    #[test]
    fn no_path_reads_outside_the_root(pieces in prop::collection::vec(
        prop::sample::select(vec!["..", ".", "out", "in", "secret", "a", "/", "\\", "//"]), 1..8)
    ) {
        let (_dir, root) = escape_fixture();
        let path = pieces.concat();
        if let Ok(bytes) = root.read(&path, 1 << 20) {
            prop_assert_ne!(bytes, b"top secret".to_vec(), "{} escaped", path);
        }
    }
}

/// A root holding `a`, a link `in` to its own `a`, and a link `out` to a
/// directory beside it that holds `secret`.
fn escape_fixture() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"top secret").unwrap();
    let inside = dir.path().join("root");
    std::fs::create_dir(&inside).unwrap();
    std::fs::write(inside.join("a"), b"fine").unwrap();
    std::os::unix::fs::symlink(&outside, inside.join("out")).unwrap();
    std::os::unix::fs::symlink("a", inside.join("in")).unwrap();
    let root = Root::open(&inside).unwrap();
    (dir, root)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the guest does, the usage the root keeps is what a
    /// fresh walk of the directory finds, and never past the bounds.
    #[test]
    fn kept_usage_matches_a_fresh_walk(ops in prop::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let b = bounds(64 << 10, 8);
        for op in ops {
            let _ = match op {
                Op::Write(n, len) => root.write(&name(n), &vec![1; len], &b),
                Op::Mkdir(n) => root.create_dir(&format!("d{}", n % 3), &b),
                Op::Remove(n) => root.remove(&name(n), b.deadline)
                    .or_else(|_| root.remove(&format!("d{}", n % 3), b.deadline)),
            };
            let kept = root.usage();
            prop_assert!(kept.bytes <= b.quota && kept.entries <= b.entries, "{:?}", kept);
            prop_assert_eq!(kept, Root::open(dir.path()).unwrap().usage());
        }
    }
}

fn bad(path: &str) -> String {
    match check_path(path) {
        Err(RootError::BadPath(why)) => why,
        other => panic!("{path:?} passed: {other:?}"),
    }
}

#[test]
fn plain_relative_paths_pass() {
    for path in [
        "a.txt",
        "exports/2026/11/invoice-42.csv",
        "ünïcödé name.txt",
    ] {
        assert!(check_path(path).is_ok(), "{path}");
    }
}

#[test]
fn malformed_paths_are_refused_with_a_reason() {
    assert!(bad("").contains("empty"));
    assert!(bad("/etc/passwd").contains("relative"));
    assert!(bad("../../etc/passwd").contains("`..`"));
    assert!(bad("a/../../x").contains("`..`"));
    assert!(bad("a//b").contains("empty segment"));
    assert!(bad("a/").contains("empty segment"));
    assert!(bad("a\0b").contains("control"));
    assert!(bad("a\nb").contains("control"));
    assert!(bad(&"x".repeat(2000)).contains("1024"));
    assert!(bad(&vec!["a"; 33].join("/")).contains("32 segments"));
    assert!(bad("a\\..\\b").contains("`/`"));
    assert!(bad(".rawalite-tmp-1234").contains("reserved"));
}
