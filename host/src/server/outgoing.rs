//! What the host holds for clients that have not read their responses yet.
//! A guest's finished body stays in memory until the client has taken it,
//! so the bodies waiting for clients share one byte budget: a body holds
//! its share until its last byte has left the process (the share is freed
//! with the memory), and a render whose body finds no room in time is
//! answered `503` instead of being kept. Bodies that fit a socket's send
//! buffer leave at once and are not counted. Static files are streamed
//! in small chunks and never held whole.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bytes of bodies that may wait for their clients at once.
pub const OUTGOING_BYTES: usize = 32 << 20;
/// A body this small fits the kernel's send buffer (16 KiB at least) and
/// leaves the process as soon as it is written.
const UNCOUNTED: usize = 16 << 10;
/// The budget's unit: a body holds its size in KiB, rounded up.
const UNIT: usize = 1 << 10;

/// The budget shared by every connection of a server.
pub(super) struct Outgoing {
    units: Arc<Semaphore>,
    total: u32,
}

impl Outgoing {
    pub(super) fn new(bytes: usize) -> Self {
        let total = (bytes / UNIT) as u32;
        Outgoing {
            units: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// `body`, once it has a share of the budget: the share goes with the
    /// bytes, freed when hyper drops the last of them. `None` when no
    /// share came free within `wait`.
    pub(super) async fn hold(&self, body: Vec<u8>, wait: Duration) -> Option<Bytes> {
        if body.len() <= UNCOUNTED {
            return Some(Bytes::from(body));
        }
        // A body larger than the whole budget waits for all of it.
        let units = body.len().div_ceil(UNIT).min(self.total as usize) as u32;
        let permit = tokio::time::timeout(wait, self.units.clone().acquire_many_owned(units))
            .await
            .ok()?
            .ok()?;
        Some(Bytes::from_owner(Held {
            body,
            _permit: permit,
        }))
    }

    /// Bytes of the budget in use now.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        (self.total as usize - self.units.available_permits()) * UNIT
    }
}

/// A body and its share of the budget, dropped together.
struct Held {
    body: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_holds_its_share_until_its_last_byte_is_dropped() {
        let outgoing = Outgoing::new(1 << 20);
        let body = outgoing
            .hold(vec![1; 600 << 10], Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(outgoing.in_use(), 600 << 10);
        let tail = body.slice(500 << 10..);
        drop(body);
        assert_eq!(outgoing.in_use(), 600 << 10, "a slice keeps the memory");
        assert!(
            outgoing
                .hold(vec![2; 600 << 10], Duration::from_millis(10))
                .await
                .is_none(),
            "no room: refused after the wait"
        );
        drop(tail);
        assert_eq!(outgoing.in_use(), 0);
        assert!(
            outgoing
                .hold(vec![2; 600 << 10], Duration::ZERO)
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn small_bodies_are_not_counted_and_huge_ones_take_it_all() {
        let outgoing = Outgoing::new(1 << 20);
        let small = outgoing.hold(vec![0; 100], Duration::ZERO).await.unwrap();
        assert_eq!(outgoing.in_use(), 0);
        let huge = outgoing
            .hold(vec![0; 4 << 20], Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(outgoing.in_use(), 1 << 20);
        assert_eq!(huge.len(), 4 << 20);
        drop((small, huge));
    }
}
