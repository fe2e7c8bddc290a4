//! SQL functions whose built-in versions can take quadratic time on large
//! values, replaced on guest connections by versions with a bounded cost.
//! SQLite runs a function call without checking its progress handler, so
//! one `instr` of a 1 MiB needle in a 1 MiB haystack would hold a thread
//! for seconds past any deadline.
//!
//! - `instr(X, Y)` and `replace(X, Y, Z)` search with `memchr::memmem`
//!   (linear) instead of a `memcmp` at every offset;
//! - `trim`, `ltrim`, `rtrim` with a character set keep SQLite's algorithm
//!   but refuse a set longer than [`MAX_TRIM_SET`] bytes, which bounds it
//!   to that many comparisons per character.
//!
//! - the `NOCASE` collation compares as SQLite's does, and once the call's
//!   deadline has passed it answers "equal" at once: a sort is one step of
//!   SQLite's program that its progress handler cannot interrupt, and
//!   comparing long texts byte by byte made one run over a second past
//!   its deadline. With every comparison instant the sort ends, and the
//!   next step stops the statement.
//!
//! Each returns exactly what the built-in returns (the tests compare them
//! on random values); arguments are converted by SQLite itself
//! (`sqlite3_value_text`), so numbers and blobs read as they always do.

use rusqlite::ffi;
use std::ffi::{c_int, c_void};

/// The most bytes `trim`'s character set may have.
pub const MAX_TRIM_SET: usize = 64;

/// Installs the functions on a connection.
pub(super) fn install(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    type Function =
        unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);
    // The one-argument trims strip spaces only, which is cheap: SQLite's stay.
    let functions: [(&std::ffi::CStr, c_int, Function, usize); 5] = [
        (c"instr", 2, instr, 0),
        (c"replace", 3, replace, 0),
        (c"trim", 2, trim, TRIM_LEFT | TRIM_RIGHT),
        (c"ltrim", 2, trim, TRIM_LEFT),
        (c"rtrim", 2, trim, TRIM_RIGHT),
    ];
    for (name, args, f, flags) in functions {
        // SAFETY: the handle is live for the call; the callbacks follow the
        // sqlite3_create_function_v2 contract and keep no state.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                conn.handle(),
                name.as_ptr(),
                args,
                ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC | ffi::SQLITE_INNOCUOUS,
                flags as *mut c_void,
                Some(f),
                None,
                None,
                None,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None));
        }
    }
    // SAFETY: as above; the comparison keeps no state and reads only the
    // two keys SQLite passes with their lengths.
    let rc = unsafe {
        ffi::sqlite3_create_collation_v2(
            conn.handle(),
            c"NOCASE".as_ptr(),
            ffi::SQLITE_UTF8,
            std::ptr::null_mut(),
            Some(nocase),
            None,
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None));
    }
    Ok(())
}

/// SQLite's `NOCASE`: ASCII letters compared without case over the
/// shorter length (stopping at a NUL), then the shorter first. Past the
/// call's deadline, everything is equal.
unsafe extern "C" fn nocase(
    _: *mut c_void,
    len_a: c_int,
    a: *const c_void,
    len_b: c_int,
    b: *const c_void,
) -> c_int {
    if crate::database::sqlite::memory::past_deadline() {
        return 0;
    }
    let (len_a, len_b) = (len_a.max(0) as usize, len_b.max(0) as usize);
    let slice = |p: *const c_void, len: usize| -> &[u8] {
        if len == 0 || p.is_null() {
            &[]
        } else {
            // SAFETY: SQLite passes a key of `len` bytes.
            unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }
        }
    };
    nocase_compare(slice(a, len_a), slice(b, len_b))
}

pub(super) fn nocase_compare(a: &[u8], b: &[u8]) -> c_int {
    let shorter_first = (a.len() as c_int).saturating_sub(b.len() as c_int);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_ascii_lowercase(), y.to_ascii_lowercase());
        if x == 0 || x != y {
            let order = c_int::from(x) - c_int::from(y);
            return if order == 0 { shorter_first } else { order };
        }
    }
    shorter_first
}

const TRIM_LEFT: usize = 1;
const TRIM_RIGHT: usize = 2;

/// An argument's type and its bytes as SQLite reads it: a blob's bytes, or
/// anything else as text. `None` for NULL (or when SQLite ran out of memory
/// converting it, which it has already recorded).
unsafe fn arg<'a>(argv: *mut *mut ffi::sqlite3_value, i: usize) -> Option<(c_int, &'a [u8])> {
    // SAFETY: SQLite passes `argc` live values; callers stay below argc.
    unsafe {
        let value = *argv.add(i);
        let kind = ffi::sqlite3_value_type(value);
        if kind == ffi::SQLITE_NULL {
            return None;
        }
        // The pointer first, then the length (SQLite's documented order).
        let ptr = if kind == ffi::SQLITE_BLOB {
            ffi::sqlite3_value_blob(value).cast::<u8>()
        } else {
            ffi::sqlite3_value_text(value)
        };
        let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
        if len == 0 {
            return Some((kind, &[]));
        }
        if ptr.is_null() {
            return None;
        }
        Some((kind, std::slice::from_raw_parts(ptr, len)))
    }
}

/// `instr(X, Y)`: the 1-based position of the first Y in X (in characters
/// for text, bytes when both are blobs), 0 when there is none, NULL when
/// either is NULL.
unsafe extern "C" fn instr(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: two arguments, as registered.
    let (Some((hay_kind, hay)), Some((needle_kind, needle))) =
        (unsafe { arg(argv, 0) }, unsafe { arg(argv, 1) })
    else {
        return;
    };
    let text = !(hay_kind == ffi::SQLITE_BLOB && needle_kind == ffi::SQLITE_BLOB);
    let position = instr_position(hay, needle, text);
    // SAFETY: a live context.
    unsafe { ffi::sqlite3_result_int64(ctx, position) };
}

/// SQLite's instr on bytes: text positions count characters (UTF-8 lead
/// bytes), and a match may start only where a character does (or at 0).
pub(super) fn instr_position(hay: &[u8], needle: &[u8], text: bool) -> i64 {
    if needle.is_empty() {
        return 1;
    }
    let continuation = |b: u8| b & 0xc0 == 0x80;
    if text && continuation(needle[0]) {
        // Only offset 0 may start with a continuation byte.
        return i64::from(hay.starts_with(needle));
    }
    match memchr::memmem::find(hay, needle) {
        None => 0,
        Some(0) => 1,
        Some(at) if text => 1 + hay[1..=at].iter().filter(|b| !continuation(**b)).count() as i64,
        Some(at) => at as i64 + 1,
    }
}

/// `replace(X, Y, Z)`: X with every Y, left to right and not overlapping,
/// replaced by Z. All three read as text.
unsafe extern "C" fn replace(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: three arguments, as registered; text of each, in SQLite's order.
    unsafe {
        let Some(input) = text_arg(argv, 0) else {
            return;
        };
        let Some(pattern) = text_arg(argv, 1) else {
            return;
        };
        if pattern.first().is_none_or(|b| *b == 0) {
            result_text(ctx, input);
            return;
        }
        let Some(with) = text_arg(argv, 2) else {
            return;
        };
        let limit = ffi::sqlite3_limit(
            ffi::sqlite3_context_db_handle(ctx),
            ffi::SQLITE_LIMIT_LENGTH,
            -1,
        );
        match replaced(input, pattern, with, usize::try_from(limit).unwrap_or(0)) {
            Some(out) => result_text(ctx, &out),
            None => ffi::sqlite3_result_error_toobig(ctx),
        }
    }
}

/// The replacement, or `None` when it would be longer than `limit` bytes.
pub(super) fn replaced(input: &[u8], pattern: &[u8], with: &[u8], limit: usize) -> Option<Vec<u8>> {
    let finder = memchr::memmem::Finder::new(pattern);
    let mut out = Vec::with_capacity(input.len());
    let mut from = 0;
    for at in finder.find_iter(input) {
        out.extend_from_slice(&input[from..at]);
        out.extend_from_slice(with);
        from = at + pattern.len();
        if with.len() > pattern.len() && out.len() + (input.len() - from) > limit {
            return None;
        }
    }
    out.extend_from_slice(&input[from..]);
    Some(out)
}

/// `trim`, `ltrim`, `rtrim` with a character set: SQLite's algorithm, for
/// sets of at most [`MAX_TRIM_SET`] bytes.
unsafe extern "C" fn trim(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: two arguments, as registered; the user data is the flags.
    unsafe {
        let Some(input) = text_arg(argv, 0) else {
            return;
        };
        let Some(set) = text_arg(argv, 1) else { return };
        if set.len() > MAX_TRIM_SET {
            let message = format!(
                "the character set of trim, ltrim or rtrim may have at most {MAX_TRIM_SET} bytes"
            );
            ffi::sqlite3_result_error(ctx, message.as_ptr().cast(), message.len() as c_int);
            return;
        }
        let flags = ffi::sqlite3_user_data(ctx) as usize;
        result_text(
            ctx,
            trimmed(input, set, flags & TRIM_LEFT != 0, flags & TRIM_RIGHT != 0),
        );
    }
}

/// SQLite's trim: the set splits into characters the way SQLite skips
/// UTF-8 (a byte from 0xc0 up takes the continuation bytes after it), and
/// at each end the first character of the set that matches is removed,
/// until none does. The set ends at its first NUL byte, as a C string does.
pub(super) fn trimmed<'a>(input: &'a [u8], set: &[u8], left: bool, right: bool) -> &'a [u8] {
    let set = set.split(|b| *b == 0).next().unwrap_or_default();
    let mut chars = Vec::new();
    let mut i = 0;
    while i < set.len() {
        let start = i;
        i += 1;
        if set[start] >= 0xc0 {
            while i < set.len() && set[i] & 0xc0 == 0x80 {
                i += 1;
            }
        }
        chars.push(&set[start..i]);
    }
    let mut s = input;
    if left {
        while let Some(c) = chars.iter().find(|c| s.starts_with(c)) {
            s = &s[c.len()..];
        }
    }
    if right {
        while let Some(c) = chars.iter().find(|c| s.ends_with(c)) {
            s = &s[..s.len() - c.len()];
        }
    }
    s
}

/// An argument as text (SQLite converts numbers and blobs), or `None` for
/// NULL.
unsafe fn text_arg<'a>(argv: *mut *mut ffi::sqlite3_value, i: usize) -> Option<&'a [u8]> {
    // SAFETY: as in `arg`.
    unsafe {
        let value = *argv.add(i);
        let ptr = ffi::sqlite3_value_text(value);
        if ptr.is_null() {
            return None;
        }
        let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
        Some(std::slice::from_raw_parts(ptr, len))
    }
}

unsafe fn result_text(ctx: *mut ffi::sqlite3_context, text: &[u8]) {
    // SAFETY: SQLite copies the bytes (SQLITE_TRANSIENT) before returning;
    // an empty text still needs a non-null pointer.
    unsafe {
        ffi::sqlite3_result_text64(
            ctx,
            if text.is_empty() {
                c"".as_ptr()
            } else {
                text.as_ptr().cast()
            },
            text.len() as u64,
            ffi::SQLITE_TRANSIENT(),
            ffi::SQLITE_UTF8 as u8,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rusqlite::types::Value;

    fn connections() -> (rusqlite::Connection, rusqlite::Connection) {
        crate::database::sqlite::init().unwrap();
        let builtin = rusqlite::Connection::open_in_memory().unwrap();
        let ours = rusqlite::Connection::open_in_memory().unwrap();
        install(&ours).unwrap();
        (builtin, ours)
    }

    /// Values that stress the conversions: text with multi-byte characters,
    /// blobs (which SQLite may read as text that is not valid UTF-8),
    /// numbers and NULL.
    fn value() -> impl Strategy<Value = Value> {
        let bytes = prop::collection::vec(
            prop::sample::select(vec![
                b'a', b'b', 0xc3, 0xa9, 0x80, 0xe2, 0x82, 0xac, 0, b' ',
            ]),
            0..12,
        );
        prop_oneof![
            4 => "[ab é€]{0,12}".prop_map(Value::Text),
            3 => bytes.prop_map(Value::Blob),
            1 => any::<i64>().prop_map(Value::Integer),
            1 => prop::sample::select(vec![0.5, -1.0, 1e20, 3.0]).prop_map(Value::Real),
            1 => Just(Value::Null),
        ]
    }

    /// An argument as SQL: the value itself, or read as text.
    fn argument(i: usize, as_text: bool) -> String {
        if as_text {
            format!("CAST(?{i} AS TEXT)")
        } else {
            format!("?{i}")
        }
    }

    fn same(sql: &str, values: &[Value]) -> Result<(), TestCaseError> {
        let (builtin, ours) = connections();
        let run = |conn: &rusqlite::Connection| {
            conn.query_row(sql, rusqlite::params_from_iter(values), |row| {
                row.get::<_, Value>(0)
            })
            .map_err(|e| e.to_string())
        };
        prop_assert_eq!(run(&builtin), run(&ours), "{} with {:?}", sql, values);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn instr_matches_sqlite(a in value(), b in value(), text in any::<(bool, bool)>()) {
            same(&format!("SELECT instr({}, {})", argument(1, text.0), argument(2, text.1)), &[a, b])?;
        }

        #[test]
        fn replace_matches_sqlite(a in value(), b in value(), c in value(), text in any::<bool>()) {
            same(&format!("SELECT replace({}, ?2, ?3)", argument(1, text)), &[a, b, c])?;
        }

        #[test]
        fn nocase_orders_as_sqlite_does(a in value(), b in value()) {
            let (builtin, ours) = connections();
            let order = |conn: &rusqlite::Connection| {
                conn.query_row(
                    "SELECT CAST(?1 AS TEXT) < CAST(?2 AS TEXT) COLLATE NOCASE, CAST(?1 AS TEXT) = CAST(?2 AS TEXT) COLLATE NOCASE",
                    [&a, &b],
                    |row| Ok((row.get::<_, Option<bool>>(0)?, row.get::<_, Option<bool>>(1)?)),
                )
                .unwrap()
            };
            prop_assert_eq!(order(&builtin), order(&ours), "{:?} {:?}", a, b);
        }

        #[test]
        fn trims_match_sqlite(a in value(), set in value(), which in 0..3usize) {
            let name = ["trim", "ltrim", "rtrim"][which];
            same(&format!("SELECT {name}(?1, ?2)"), &[a, set])?;
        }
    }

    #[test]
    fn past_the_deadline_nocase_calls_everything_equal() {
        let (a, b) = ("a".repeat(4000) + "x", "A".repeat(4000) + "y");
        let compare = || unsafe {
            nocase(
                std::ptr::null_mut(),
                a.len() as c_int,
                a.as_ptr().cast(),
                b.len() as c_int,
                b.as_ptr().cast(),
            )
        };
        assert!(compare() < 0, "outside a call: SQLite's order");
        let in_time = crate::database::sqlite::memory::Charge::new(
            u64::MAX,
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        );
        assert!((0..1000).all(|_| compare() < 0), "before the deadline");
        drop(in_time);
        let _late =
            crate::database::sqlite::memory::Charge::new(u64::MAX, std::time::Instant::now());
        let equal_after = (0..1000).position(|_| compare() == 0);
        assert!(equal_after.is_some_and(|n| n <= 256), "{equal_after:?}");
        assert_eq!(compare(), 0, "and from then on");
    }

    #[test]
    fn the_costly_cases_are_linear_or_refused() {
        let (_, ours) = connections();
        let big = "a".repeat(1 << 20);
        let needle = format!("{}b", "a".repeat(1 << 19));
        let started = std::time::Instant::now();
        let at: i64 = ours
            .query_row(
                "SELECT instr(?1, ?2) + length(replace(?1, ?2, 'x'))",
                [&big, &needle],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(at, 1 << 20);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let long_set = "x".repeat(MAX_TRIM_SET + 1);
        let e = ours
            .query_row("SELECT trim(?1, ?2)", [&big, &long_set], |r| {
                r.get::<_, String>(0)
            })
            .unwrap_err();
        assert!(e.to_string().contains("at most 64 bytes"), "{e}");
    }
}
