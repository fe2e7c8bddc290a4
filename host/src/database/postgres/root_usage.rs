//! A root's usage when several hosts share its directory (the data
//! directory on one shared volume, the database on PostgreSQL): one row of
//! `host.root_usage` per root. A change holds the row's lock from reading
//! the usage to writing back what it made of it, so changes on every host
//! take turns as changes within one host do, and a quota counts what all
//! of them wrote.
//!
//! A host that dies mid-change leaves the row as it was (its transaction
//! ends with its connection); one that stops without a word (a paused VM, a
//! cut network) has its transaction ended by the server a second after its
//! hold (`root.rs`'s `HOLD`, the time its file work may take under the
//! lock), so other hosts wait no longer than that. If the file
//! had already been renamed into place, the row is short by that file until
//! a host opens the root again: every host measures the directory when it
//! starts, under the same lock.

use super::{Pool, Pooled, Postgres, describe};
use crate::capabilities::paths::{Change, RootError, SharedUsage, Usage};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long writing back the usage may take after the change itself: the
/// change is on disk by then, so the count should follow even when the
/// request's deadline has just passed.
const SETTLE: Duration = Duration::from_secs(5);

/// One root's row, and the connections to change it with.
pub(super) struct RootUsage {
    database: Arc<Postgres>,
    pool: Arc<Pool>,
    root: String,
}

impl RootUsage {
    /// The usage of the root named `root` in the manifest, in `database`.
    pub(super) fn new(database: &Arc<Postgres>, root: &str) -> Self {
        RootUsage {
            database: database.clone(),
            pool: database.host(),
            root: root.to_owned(),
        }
    }
}

impl SharedUsage for RootUsage {
    fn change(
        &self,
        deadline: Instant,
        hold: Duration,
        change: Change<'_>,
    ) -> Result<Usage, RootError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (conn, usage) = self.database.run(async {
            let conn = self.pool.get(deadline).await.map_err(|_| RootError::Busy)?;
            let row = step(deadline, &conn, async {
                // The change writes the file while the row stays locked; a
                // host that stops meanwhile (a paused VM, a cut network)
                // loses the lock a second after its `hold`.
                conn.begin(hold.min(wait) + Duration::from_secs(1), wait)
                    .await?;
                // Creates the row the first time, and locks it.
                conn.query_one(
                    "INSERT INTO host.root_usage (root, bytes, entries) VALUES ($1, 0, 0) \
                     ON CONFLICT (root) DO UPDATE SET root = excluded.root \
                     RETURNING bytes, entries",
                    &[&self.root],
                )
                .await
            })
            .await?;
            let usage = Usage {
                bytes: row.get::<_, i64>(0).max(0) as u64,
                entries: row.get::<_, i64>(1).max(0) as u64,
            };
            Ok::<_, RootError>((conn, usage))
        })?;
        let outcome = change(usage, deadline.min(Instant::now() + hold));
        let settled = self
            .database
            .run(step(Instant::now() + SETTLE, &conn, async {
                match &outcome {
                    Ok(after) => {
                        conn.execute(
                            "UPDATE host.root_usage SET bytes = $2, entries = $3 WHERE root = $1",
                            &[&self.root, &(after.bytes as i64), &(after.entries as i64)],
                        )
                        .await?;
                        conn.batch_execute("COMMIT").await
                    }
                    Err(_) => conn.batch_execute("ROLLBACK").await,
                }
            }));
        if let (Ok(_), Err(e)) = (&outcome, settled) {
            // The change is made; only its count is missing until a host
            // measures the root again.
            tracing::warn!(root = %self.root, error = ?e, "a change of a shared root is not counted");
        }
        outcome
    }
}

/// Runs `work` on `conn` no later than `deadline` ([`Pooled::until`]):
/// a lock not had in time is [`RootError::Busy`].
async fn step<T>(
    deadline: Instant,
    conn: &Pooled,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, RootError> {
    match conn.until(deadline, work).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Err(RootError::Busy)
        }
        Some(Err(e)) => Err(RootError::Shared(describe(&e))),
        None => Err(RootError::Busy),
    }
}
