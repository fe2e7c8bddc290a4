//! What every capability call of one request shares: the guest, the
//! request's deadline, and the audit log's budget. Refuses to start any
//! call once the deadline has passed (the guest is stopped instead), and
//! keeps a guest from flooding the log: past [`AUDIT_EVENTS`] events a
//! request's calls are only counted, and one summary says how many (and
//! how many of them were denied).

use super::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Audit events one request may write; the rest are counted.
pub const AUDIT_EVENTS: u32 = 256;

/// Why a capability call failed: an error the guest gets back, or a reason
/// to stop the guest (the call does not return).
#[derive(Debug)]
pub enum CallError {
    Guest(Error),
    Stop(wasmtime::Error),
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Guest(e)
    }
}

/// The request's deadline passed while the host was working for it (or
/// before a call began). The guest is stopped as if the epoch had.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineReached;

impl fmt::Display for DeadlineReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request's deadline passed during a host call")
    }
}

impl std::error::Error for DeadlineReached {}

/// The guest called something its grant does not allow and the call has no
/// way to return an error (`session.logout`). It is stopped with this.
#[derive(Debug, Clone)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// One request's capability calls.
pub struct Call {
    pub(crate) guest: Arc<str>,
    pub(crate) deadline: Instant,
    audited: u32,
    dropped: u32,
    /// How many of the dropped events were denied calls.
    dropped_denied: u32,
}

impl Call {
    pub(crate) fn new(guest: Arc<str>, deadline: Instant) -> Self {
        Call {
            guest,
            deadline,
            audited: 0,
            dropped: 0,
            dropped_denied: 0,
        }
    }

    /// Starts a call: its start time, or a stop when the deadline has passed.
    pub(crate) fn begin(&self) -> wasmtime::Result<Instant> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(wasmtime::Error::new(DeadlineReached));
        }
        Ok(now)
    }

    /// Counts the call in the metrics, and says whether its audit event
    /// may be written (counting it if not).
    pub(crate) fn audit(&mut self, capability: &'static str, outcome: &'static str) -> bool {
        crate::metrics::capability(&self.guest, capability, outcome);
        if self.audited < AUDIT_EVENTS {
            self.audited += 1;
            true
        } else {
            self.dropped += 1;
            self.dropped_denied += u32::from(outcome == "denied");
            false
        }
    }
}

impl Drop for Call {
    /// One summary for the events the cap held back, which the log keeps
    /// (it counts the denied calls among them).
    fn drop(&mut self) {
        if self.dropped > 0 {
            crate::log_queue::keep(true, || {
                tracing::warn!(
                    target: "rawalite::audit",
                    guest = %self.guest,
                    dropped = self.dropped,
                    denied = self.dropped_denied,
                    "this request made more than {AUDIT_EVENTS} capability calls; the events of the rest were not written"
                )
            });
        }
    }
}
