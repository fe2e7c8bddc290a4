//! What a request may be and how long its parts may take: the host's limits
//! on the way in, and the waits of a server that is busy or stopping.

use std::time::Duration;

/// The largest request body (bigger ones get 413).
pub const MAX_BODY: usize = 1 << 20;
/// The longest request target, path and query (longer ones get 414).
pub const MAX_URL: usize = 8 << 10;
/// The most bytes of request headers (more get 431).
pub const MAX_HEADERS: usize = 16 << 10;
/// The most a request can be: target, headers and body.
pub const MAX_REQUEST: usize = MAX_URL + MAX_HEADERS + MAX_BODY;
/// How long a client may take to send its body.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may wait for a render thread before it gets 503.
pub(super) const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// How long a finished body may wait for room among the bodies waiting for
/// clients before it gets 503: it holds its memory (and its render's
/// permits) meanwhile, so not long.
pub(super) const OUTGOING_WAIT: Duration = Duration::from_secs(1);
/// How long a stopping server waits for its requests beyond the longest
/// guest deadline before it cuts them.
pub(super) const DRAIN_MARGIN: Duration = Duration::from_secs(5);
/// Seconds a client is told to wait for a guest that is still compiling.
pub(super) const RETRY_AFTER: &str = "5";
