//! What one request of one guest may use, and the fixed bounds every guest
//! shares. Below both the runtime (which enforces memory and time) and the
//! capabilities (which enforce the rest), so neither depends on the other
//! for them. Every limit has a default; the manifest may change them per
//! guest.

use std::time::Duration;

/// The longest text or blob a guest's SQL may build or read. It bounds what
/// one function call can cost (the host cannot interrupt SQLite inside one):
/// with it, the costliest allowed call takes tens of milliseconds.
pub const VALUE_BYTES: usize = 1 << 20;

/// What one request of one guest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory, all of the component's memories together.
    pub memory: u64,
    /// Wall-clock time for the whole request, host calls included.
    pub timeout: Duration,
    /// Bytes of the response: body plus headers.
    pub response_bytes: u64,
    /// Host resource handles (open roots, streams) alive at once.
    pub handles: usize,
    /// Rows one `db.query` may return.
    pub db_rows: usize,
    /// Bytes one `db` call may take on the host: SQLite's working memory
    /// and the result together.
    pub db_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let memory = 64 << 20;
        Limits {
            memory,
            timeout: Duration::from_secs(1),
            response_bytes: 8 << 20,
            handles: 64,
            db_rows: 10_000,
            db_bytes: Limits::default_db_bytes(memory),
        }
    }
}

impl Limits {
    /// Unless the manifest says otherwise, a `db` call may take 16 MiB, or
    /// half the guest's memory when that is less: the result must fit in
    /// the guest beside everything else it holds.
    pub fn default_db_bytes(memory: u64) -> u64 {
        (16 << 20).min(memory / 2)
    }

    /// The largest file a guest may read, whatever its grant says: half its
    /// memory, since the guest must hold the bytes.
    pub fn read_bytes(&self) -> u64 {
        self.memory / 2
    }

    /// The most memory one request of this guest can hold at once, guest
    /// and host together, for a request of at most `request` bytes: its
    /// linear memory; the arguments of one host call, copied out of that
    /// memory (at most as much again); the larger of what one host call
    /// builds (a `db` call's budget plus the one value it may read past it
    /// and its copy, a file read); the response; the request; and the
    /// guest's captured output.
    pub fn worst_case_bytes(&self, request: u64) -> u64 {
        let value = VALUE_BYTES as u64;
        let host_call = (self.db_bytes + 2 * value).max(self.read_bytes());
        2 * self.memory + host_call + self.response_bytes + request + 2 * (64 << 10)
    }
}
