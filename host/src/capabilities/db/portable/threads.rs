//! Where the portable check runs: threads of its own with a stack of
//! [`STACK`]. The check recurses as deep as `depth.rs` lets a statement
//! nest, which must not happen on a guest's fiber (2 MiB, part of it
//! taken by the guest, and a stack that sqlparser's own guard misreads);
//! and it takes up to ~100 ms for 64 KiB of SQL, which must not hold an
//! async worker or a lock other requests wait on. The caller waits (its
//! fiber or its blocking thread), no longer than its deadline. A check
//! that panics (a bug in the parser) answers `internal`; its thread lives
//! on.

use super::{Checked, Schema, check};
use crate::capabilities::db::grant::DbGrant;
use crate::capabilities::{Error, ErrorCode};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Each checking thread's stack: room for the deepest statement
/// [`super::DEPTH`] allows many times over (the unit tests check that it
/// fits in 2 MiB). Untouched stack costs address space, not memory.
pub(super) const STACK: usize = 64 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// Checks on a checking thread; the awaiting fiber yields meanwhile.
pub async fn check_async(
    sql: &str,
    grant: Arc<DbGrant>,
    schema: Arc<Schema>,
    deadline: Instant,
) -> Result<Checked, Error> {
    let (sender, answer) = tokio::sync::oneshot::channel();
    submit(sql, grant, schema, move |checked| {
        let _ = sender.send(checked);
    })?;
    match tokio::time::timeout_at(deadline.into(), answer).await {
        Ok(Ok(checked)) => checked,
        Ok(Err(_)) => Err(failed()),
        Err(_) => Err(past_deadline()),
    }
}

/// Checks on a checking thread; the calling thread waits.
pub fn check_blocking(
    sql: &str,
    grant: Arc<DbGrant>,
    schema: Arc<Schema>,
    deadline: Instant,
) -> Result<Checked, Error> {
    let (sender, answer) = mpsc::sync_channel(1);
    submit(sql, grant, schema, move |checked| {
        let _ = sender.send(checked);
    })?;
    match answer.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(checked) => checked,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(past_deadline()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(failed()),
    }
}

fn submit(
    sql: &str,
    grant: Arc<DbGrant>,
    schema: Arc<Schema>,
    answer: impl FnOnce(Result<Checked, Error>) + Send + 'static,
) -> Result<(), Error> {
    let sql = sql.to_owned();
    let job: Job = Box::new(move || answer(check(&sql, &grant, &schema)));
    let Some(jobs) = jobs() else {
        return Err(Error::new(
            ErrorCode::Unavailable,
            "the host could not start its SQL checker; the host's log has the details",
        ));
    };
    jobs.send(job).map_err(|_| failed())
}

/// The checking threads' queue, started on first use.
fn jobs() -> Option<&'static mpsc::Sender<Job>> {
    static JOBS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let mut started = 0;
        for i in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rawalite-sql-{i}"))
                .stack_size(STACK)
                .spawn(move || work(&receiver));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "cannot start a thread for the SQL check"),
            }
        }
        (started > 0).then_some(sender)
    })
    .as_ref()
}

fn work(receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match receiver.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("the SQL check panicked; the statement was refused");
        }
    }
}

fn failed() -> Error {
    Error::new(
        ErrorCode::Internal,
        "the statement could not be checked; the host's log has the details",
    )
}

fn past_deadline() -> Error {
    Error::new(
        ErrorCode::Timeout,
        "checking the statement ran past the request's deadline",
    )
}
