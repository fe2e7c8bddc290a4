//! What `serve` does besides answering requests: expired sessions swept,
//! the sign-in limiter's counts saved (SQLite), scheduled backups
//! (SQLite). On PostgreSQL several hosts share the database, so a sweep
//! runs once per interval across all of them: each host's timer asks the
//! database to claim the interval, and only the host that claims it
//! sweeps. A host that dies simply stops claiming; the next claim by any
//! other host takes over, with no leader to hand over.

use crate::auth::Auth;
use crate::database::Database;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often expired sessions are deleted.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);
/// How often the sign-in limiter's counts are saved when they changed: a
/// crash forgets at most this much of them.
pub(super) const SAVE_LIMITS_EVERY: Duration = Duration::from_secs(2);

/// Deletes expired sessions now and every [`SWEEP_EVERY`], on the one host
/// that claims each interval.
pub(super) async fn sweep_sessions(auth: Arc<Auth>, database: Arc<dyn Database>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        let (auth, database) = (auth.clone(), database.clone());
        let swept = tokio::task::spawn_blocking(move || {
            if !database.claim("sweep", SWEEP_EVERY)? {
                return Ok(None);
            }
            auth.sweep_expired().map(Some)
        });
        match swept.await {
            Ok(Ok(None | Some(0))) => {}
            Ok(Ok(Some(swept))) => tracing::info!(swept, "deleted expired sessions"),
            Ok(Err(e)) => tracing::warn!(error = %e, "deleting expired sessions failed"),
            Err(e) => tracing::warn!(error = %e, "the session sweep failed"),
        }
    }
}

/// `[app.backup]`: a backup when the newest one is `every` old (at once
/// when there is none), then every `every`.
pub(super) async fn scheduled_backups(
    data_dir: std::path::PathBuf,
    schedule: crate::manifest::BackupSchedule,
) {
    let newest_age = crate::backup::scheduled(&schedule.dir)
        .last()
        .and_then(|p| std::fs::metadata(p).ok()?.modified().ok()?.elapsed().ok());
    let first = newest_age.map_or(Duration::ZERO, |age| schedule.every.saturating_sub(age));
    tokio::time::sleep(first).await;
    let mut every = tokio::time::interval(schedule.every);
    loop {
        every.tick().await;
        let (data_dir, dir, keep) = (data_dir.clone(), schedule.dir.clone(), schedule.keep);
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || {
            crate::backup::take_scheduled(&data_dir, &dir, keep)
        })
        .await
        {
            Ok(Ok(path)) => {
                tracing::info!(path = %path.display(), ms = started.elapsed().as_millis() as u64, "backup written")
            }
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "the scheduled backup failed"),
            Err(e) => tracing::error!(error = %e, "the scheduled backup failed"),
        }
    }
}

/// Saves the sign-in limiter's counts every [`SAVE_LIMITS_EVERY`] when they
/// changed, so a restart does not reset an attacker's budget (SQLite; on
/// PostgreSQL each attempt writes them).
pub(super) async fn save_limits(auth: Arc<Auth>) {
    let mut every = tokio::time::interval(SAVE_LIMITS_EVERY);
    loop {
        every.tick().await;
        let auth = auth.clone();
        match tokio::task::spawn_blocking(move || auth.save_limits()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "saving the sign-in limits failed"),
            Err(e) => tracing::warn!(error = %e, "saving the sign-in limits failed"),
        }
    }
}
