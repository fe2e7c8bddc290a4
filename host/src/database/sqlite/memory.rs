//! SQLite's memory, charged to the guest call that uses it. The host gives
//! SQLite its own allocator before the first connection opens; while a
//! guest's call holds a [`Charge`] on a thread, every allocation SQLite
//! makes on that thread is counted against the call's byte budget and
//! checked against its deadline *before* the memory is handed out. A
//! refused allocation fails the statement with `SQLITE_NOMEM`, which the
//! `db` capability reports as `too-large` or `timeout` (see [`Trip`]).
//!
//! This bounds what SQLite builds for a guest wherever it builds it: result
//! registers, sorters, temporary tables, function results. Outside a charge
//! (the host's own connections) allocations pass straight through.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;
use std::time::Instant;

/// What stopped a charged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// It needed more than its budget.
    Memory,
    /// It was still allocating at its deadline.
    Deadline,
}

/// One thread's running charge.
#[derive(Clone, Copy)]
struct Budget {
    /// Bytes the call may still take; negative once overdrawn.
    left: i64,
    deadline: Instant,
    /// Refuse allocations past the budget (while SQLite works), or only
    /// count them (while the host reads a row SQLite already made).
    strict: bool,
    tripped: Option<Trip>,
}

thread_local! {
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
}

/// Counts every SQLite allocation on this thread against `bytes` and
/// `deadline` until dropped.
#[must_use]
pub struct Charge {
    budget: u64,
}

impl Charge {
    pub fn new(bytes: u64, deadline: Instant) -> Self {
        BUDGET.set(Some(Budget {
            left: i64::try_from(bytes).unwrap_or(i64::MAX),
            deadline,
            strict: true,
            tripped: None,
        }));
        Charge { budget: bytes }
    }

    /// Runs `f` with allocations counted but never refused: for reading a
    /// value SQLite has already computed, where a refused allocation would
    /// only turn into a NULL the reader cannot tell from a real one. The
    /// caller checks [`Charge::over`] after each value, so the overdraft is
    /// at most one value.
    pub fn lenient<R>(&self, f: impl FnOnce() -> R) -> R {
        update(|b| b.strict = false);
        let result = f();
        update(|b| b.strict = true);
        result
    }

    /// Counts bytes the host itself keeps for the call (the result it
    /// builds); false when that takes the call past its budget.
    pub fn spend(&self, bytes: usize) -> bool {
        update(|b| b.left -= bytes as i64);
        !self.over()
    }

    /// Whether the call has used more than its budget.
    pub fn over(&self) -> bool {
        BUDGET.get().is_some_and(|b| b.left < 0)
    }

    /// Why an allocation was refused, if one was.
    pub fn tripped(&self) -> Option<Trip> {
        BUDGET.get().and_then(|b| b.tripped)
    }

    /// The call's budget in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        BUDGET.set(None);
    }
}

fn update(f: impl FnOnce(&mut Budget)) {
    if let Some(mut budget) = BUDGET.get() {
        f(&mut budget);
        BUDGET.set(Some(budget));
    }
}

/// Whether a charged call runs on this thread and its deadline has
/// passed: for work SQLite does in one step, which the progress handler
/// cannot stop (see `NOCASE` in `capabilities/db/sqlite/functions.rs`). Reads the
/// clock at most once per 256 calls.
pub fn past_deadline() -> bool {
    thread_local! {
        static CALLS: Cell<u32> = const { Cell::new(0) };
    }
    let Some(budget) = BUDGET.get() else {
        return false;
    };
    if budget.tripped == Some(Trip::Deadline) {
        return true;
    }
    let n = CALLS.get().wrapping_add(1);
    CALLS.set(n);
    if !n.is_multiple_of(256) || Instant::now() < budget.deadline {
        return false;
    }
    update(|b| {
        b.tripped.get_or_insert(Trip::Deadline);
    });
    true
}

/// Allocations from this size on check the clock: the work that makes a
/// value this large is worth a look at the time; smaller ones are cheap.
const TIMED: usize = 1024;

/// Whether `bytes` more may be allocated on this thread now; records why
/// not. Checking the clock here bounds straight-line work that SQLite's
/// progress handler (which runs only at loop ends) cannot see.
fn admit(bytes: usize) -> bool {
    let Some(mut budget) = BUDGET.get() else {
        return true;
    };
    let left = budget.left - bytes as i64;
    if budget.strict {
        let trip = if left < 0 {
            Some(Trip::Memory)
        } else if bytes >= TIMED && Instant::now() >= budget.deadline {
            Some(Trip::Deadline)
        } else {
            None
        };
        if let Some(trip) = trip {
            budget.tripped.get_or_insert(trip);
            BUDGET.set(Some(budget));
            return false;
        }
    }
    budget.left = left;
    BUDGET.set(Some(budget));
    true
}

fn refund(bytes: usize) {
    update(|b| b.left += bytes as i64);
}

/// Each block carries its size in a header, for `xSize` and the refund.
const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

unsafe fn size_of_block(p: *mut c_void) -> usize {
    // SAFETY: `p` came from `x_malloc`/`x_realloc`, which wrote the size
    // into the header just before it.
    unsafe { *(p.cast::<u8>().sub(HEADER).cast::<usize>()) }
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let size = usize::try_from(n).unwrap_or(0);
    let Some(layout) = layout(size) else {
        return std::ptr::null_mut();
    };
    if !admit(size) {
        return std::ptr::null_mut();
    }
    // SAFETY: the layout has a non-zero size (it includes the header).
    let base = unsafe { System.alloc(layout) };
    if base.is_null() {
        refund(size);
        return std::ptr::null_mut();
    }
    // SAFETY: the block is at least HEADER bytes and aligned for usize.
    unsafe {
        base.cast::<usize>().write(size);
        base.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: `p` is a live block of ours; its layout is the one it was
    // allocated with.
    unsafe {
        let size = size_of_block(p);
        refund(size);
        let base = p.cast::<u8>().sub(HEADER);
        System.dealloc(base, layout(size).expect("allocated with this layout"));
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: realloc of nothing is a malloc.
        return unsafe { x_malloc(n) };
    }
    let size = usize::try_from(n).unwrap_or(0);
    // SAFETY: `p` is a live block of ours.
    let old = unsafe { size_of_block(p) };
    let (Some(old_layout), Some(_)) = (layout(old), layout(size)) else {
        return std::ptr::null_mut();
    };
    if size > old && !admit(size - old) {
        return std::ptr::null_mut();
    }
    // SAFETY: `base` was allocated with `old_layout`; the new size is
    // non-zero and its layout valid (checked above).
    let base = unsafe { System.realloc(p.cast::<u8>().sub(HEADER), old_layout, size + HEADER) };
    if base.is_null() {
        if size > old {
            refund(size - old);
        }
        return std::ptr::null_mut();
    }
    if size < old {
        refund(old - size);
    }
    // SAFETY: as in `x_malloc`.
    unsafe {
        base.cast::<usize>().write(size);
        base.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` is a live block of ours.
    unsafe { size_of_block(p) as c_int }
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    (n + 7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    rusqlite::ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Gives SQLite this allocator. It must run before SQLite is first used in
/// the process (opening any connection initializes it); `Database::open`
/// calls it, and it fails if something opened SQLite earlier.
pub fn install() -> Result<(), &'static str> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let installed = *INSTALLED.get_or_init(|| {
        let methods = rusqlite::ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLite copies the methods; each function above upholds
        // the contract of sqlite3_mem_methods (8-byte aligned blocks, xSize
        // of a live block, realloc keeps the contents).
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MALLOC,
                &methods as *const rusqlite::ffi::sqlite3_mem_methods,
            ) == rusqlite::ffi::SQLITE_OK
        }
    });
    if installed {
        Ok(())
    } else {
        Err(
            "SQLite was in use before RawaLite could give it its memory accounting; open the database with rawalite_host::database first",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn allocations_past_the_budget_are_refused_and_refunds_make_room() {
        install().unwrap();
        let charge = Charge::new(1000, later());
        unsafe {
            let a = x_malloc(600);
            assert!(!a.is_null());
            assert!(x_malloc(600).is_null(), "over the budget");
            assert_eq!(charge.tripped(), Some(Trip::Memory));
            x_free(a);
            let b = x_malloc(900);
            assert!(!b.is_null(), "the free made room");
            let c = x_realloc(b, 2000);
            assert!(c.is_null(), "growing past the budget");
            let d = x_realloc(b, 100);
            assert!(!d.is_null());
            assert_eq!(x_size(d), 100);
            x_free(d);
        }
    }

    #[test]
    fn lenient_reads_count_but_do_not_refuse() {
        install().unwrap();
        let charge = Charge::new(100, later());
        let p = charge.lenient(|| unsafe { x_malloc(500) });
        assert!(!p.is_null());
        assert!(charge.over());
        unsafe { x_free(p) };
        assert!(!charge.over());
        assert!(charge.spend(100));
        assert!(!charge.spend(1));
    }

    #[test]
    fn allocations_after_the_deadline_are_refused() {
        install().unwrap();
        let charge = Charge::new(1 << 20, Instant::now());
        assert!(unsafe { x_malloc(TIMED as c_int) }.is_null());
        assert_eq!(charge.tripped(), Some(Trip::Deadline));
    }

    #[test]
    fn without_a_charge_nothing_is_counted() {
        install().unwrap();
        unsafe {
            let p = x_malloc(10 << 20);
            assert!(!p.is_null());
            x_free(p);
        }
    }
}
