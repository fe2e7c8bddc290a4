//! The `db` capability on SQLite: each guest's connections carry an
//! authorizer that enforces its grant on every statement, a progress
//! handler for its deadline, SQLite's own limits and the host's bounded
//! functions, and every call's memory is charged to the guest.

mod authorizer;
mod connection;
mod functions;
mod scan;

pub use authorizer::MAX_FUNCTION_CALLS;
pub use connection::LIKE_PATTERN_BYTES;
pub(super) use connection::{Budget, GuestConnection, Touched};
pub use functions::MAX_TRIM_SET;
