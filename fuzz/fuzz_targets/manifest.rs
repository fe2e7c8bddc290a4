//! The manifest parser on any text: a clear error or a manifest, never a
//! panic or a stack overflow on a guest fiber's stack.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rawalite_fuzz::on_fiber_stack;
use rawalite_host::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_owned();
    on_fiber_stack(move || {
        let _ = Manifest::parse(std::path::Path::new("/fuzz/rawalite.toml"), &text);
    });
});
