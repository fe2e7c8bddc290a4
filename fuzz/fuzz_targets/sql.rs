//! The SQL check on any bytes: no panic, and no stack overflow on a
//! guest fiber's stack, whatever the statement.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rawalite_fuzz::{grant, on_fiber_stack, schema};
use rawalite_host::capabilities::db::portable::check;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let sql = sql.to_owned();
    on_fiber_stack(move || {
        let _ = check(&sql, &grant(), &schema());
    });
});
