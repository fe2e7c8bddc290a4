//! Work that may block (SQLite, a file, argon2, a log destination that
//! lags) without holding up the async worker thread a render runs on.

/// Runs `work`; on a worker of a multi-threaded runtime, tokio hands the
/// worker's other tasks to another thread meanwhile. Outside one (the
/// command line, tests) it simply runs.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
