//! The restore unpacker on any archive: refused or restored, never a
//! panic, and nothing written outside the directory it restores into.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rawalite_host::backup::restore;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let archive = dir.path().join("in.tar.gz");
    std::fs::write(&archive, data).expect("the archive written");
    let data_dir = dir.path().join("data");
    let _ = restore(&archive, &data_dir, &mut |_| {});
    for entry in std::fs::read_dir(dir.path()).expect("the directory") {
        let name = entry.expect("an entry").file_name();
        assert!(
            name == "in.tar.gz" || name == "data",
            "restore left {name:?} beside the data directory"
        );
    }
});
