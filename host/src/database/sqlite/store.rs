//! The host's tables in SQLite: one writing connection (users, sessions,
//! the limiter's counts), taken with the request's deadline, and
//! read-only connections for looking up sessions, one per lookup running
//! at once, so that a page view waits neither for a write nor for another
//! lookup.

use super::{BUSY_TIMEOUT, Sqlite};
use crate::auth::store::{
    Counts, KeptCounts, NewSession, Pending, Resolved, SessionRow, Store, UserChange,
};
use crate::auth::{LoginError, User, split_roles};
use anyhow::Result;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::time::{Duration, Instant};

pub struct SqliteStore {
    database: Sqlite,
    conn: parking_lot::Mutex<Connection>,
    readers: std::sync::Mutex<Vec<Connection>>,
}

const USER_COLUMNS: &str =
    "SELECT id, username, display_name, roles, disabled, created_at FROM users";
const USER_COLUMNS_WITH_HASH: &str =
    "SELECT id, username, display_name, roles, disabled, created_at, password_hash FROM users";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        display_name: row.get(2)?,
        roles: split_roles(&row.get::<_, String>(3)?),
        disabled: row.get(4)?,
        created_at: row.get(5)?,
    })
}

impl SqliteStore {
    pub fn new(database: &Sqlite) -> Result<Self> {
        Ok(SqliteStore {
            conn: parking_lot::Mutex::new(database.connect(OpenFlags::SQLITE_OPEN_READ_WRITE)?),
            database: database.clone(),
            readers: std::sync::Mutex::default(),
        })
    }

    /// The writing connection, for the operator's commands: they may wait.
    fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        let conn = self.conn.lock();
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        conn
    }

    /// The connection, waited for and then busy-waiting on the database no
    /// later than `deadline`.
    fn conn_until(&self, deadline: Instant) -> Option<parking_lot::MutexGuard<'_, Connection>> {
        let conn = self.conn.try_lock_until(deadline)?;
        let left = deadline.saturating_duration_since(Instant::now());
        conn.busy_timeout(left.min(BUSY_TIMEOUT)).ok()?;
        Some(conn)
    }

    /// A write a lookup makes in passing, if it can be made at once: it
    /// waits neither for the writing connection nor for another writer (a
    /// guest's transaction); a later request makes it instead.
    fn try_write(&self, write: impl FnOnce(&Connection) -> rusqlite::Result<usize>) {
        let Some(conn) = self.conn.try_lock() else {
            return;
        };
        if conn.busy_timeout(Duration::ZERO).is_ok() {
            let _ = write(&conn);
        }
    }
}

impl Store for SqliteStore {
    fn add_user(&self, username: &str, display_name: &str, roles: &str, phc: &str) -> Result<bool> {
        let inserted = self.conn().execute(
            "INSERT INTO users (username, display_name, roles, password_hash) VALUES (?, ?, ?, ?)",
            params![username, display_name, roles, phc],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            other => other.map(|_| true).map_err(Into::into),
        }
    }

    fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{USER_COLUMNS} ORDER BY username COLLATE NOCASE"))?;
        let users = stmt
            .query_map([], user_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(users)
    }

    fn user(&self, username: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                &format!("{USER_COLUMNS} WHERE username = ?"),
                [username],
                user_from_row,
            )
            .optional()?)
    }

    fn update_user(
        &self,
        username: &str,
        change: UserChange<'_>,
        end_sessions: bool,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (column, value): (&str, &dyn rusqlite::ToSql) = match &change {
            UserChange::Password(phc) => ("password_hash", phc),
            UserChange::Disabled(disabled) => ("disabled", disabled),
        };
        let changed = tx.execute(
            &format!(
                "UPDATE users SET {column} = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE username = ?"
            ),
            params![value, username],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        if end_sessions {
            tx.execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?)",
                [username],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn sessions(&self) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT s.token_hash, u.username, s.client, s.created_at, s.last_seen_at, s.expires_at \
             FROM sessions s JOIN users u ON u.id = s.user_id ORDER BY s.created_at DESC",
        )?;
        let sessions = stmt
            .query_map([], |row| {
                Ok(SessionRow {
                    token_hash: row.get(0)?,
                    username: row.get(1)?,
                    client: row.get(2)?,
                    created_at: row.get(3)?,
                    last_seen_at: row.get(4)?,
                    expires_at: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(sessions)
    }

    fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM sessions WHERE token_hash = ?", [token_hash])?
            > 0)
    }

    fn delete_sessions_of(&self, username: &str) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?)",
            [username],
        )?)
    }

    fn remove_user(&self, username: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM users WHERE username = ?", [username])?
            > 0)
    }

    fn sign_in_lookup(
        &self,
        username: &str,
        deadline: Instant,
    ) -> Result<Option<(User, String)>, LoginError> {
        self.conn_until(deadline)
            .ok_or(LoginError::Busy)?
            .query_row(
                &format!("{USER_COLUMNS_WITH_HASH} WHERE username = ?"),
                [username],
                |row| Ok((user_from_row(row)?, row.get(6)?)),
            )
            .optional()
            .map_err(|e| internal(&e))
    }

    fn open_session(&self, s: &NewSession<'_>, deadline: Instant) -> Result<bool, LoginError> {
        let mut conn = self.conn_until(deadline).ok_or(LoginError::Busy)?;
        let opened = (|| {
            let tx = conn.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at, client) \
                 SELECT ?, id, ?, ?, ?, ? FROM users WHERE id = ? AND password_hash = ? AND disabled = 0",
                params![
                    s.token_hash,
                    s.now,
                    s.now,
                    s.expires_at,
                    s.client,
                    s.user_id,
                    s.password_hash,
                ],
            )?;
            // The new one and the newest others stay.
            tx.execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2 AND token_hash NOT IN \
                 (SELECT token_hash FROM sessions WHERE user_id = ?1 AND token_hash != ?2 \
                  ORDER BY created_at DESC, token_hash LIMIT ?3)",
                params![s.user_id, s.token_hash, s.keep as i64 - 1],
            )?;
            tx.commit()?;
            Ok::<_, rusqlite::Error>(inserted == 1)
        })();
        match opened {
            Ok(opened) => Ok(opened),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                Err(LoginError::Busy)
            }
            Err(e) => Err(internal(&e)),
        }
    }

    fn resolve(&self, token_hash: &[u8]) -> Result<Option<Resolved>> {
        let reader = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let reader = match reader {
            Some(reader) => reader,
            None => self.database.connect(OpenFlags::SQLITE_OPEN_READ_ONLY)?,
        };
        let row = reader
            .prepare_cached(
                "SELECT s.token_hash, s.last_seen_at, s.expires_at, u.id, u.username, u.display_name, u.roles, u.disabled, u.created_at \
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
            )
            .and_then(|mut stmt| {
                stmt.query_row([token_hash], |row| {
                    Ok(Resolved {
                        token_hash: row.get(0)?,
                        last_seen_at: row.get(1)?,
                        expires_at: row.get(2)?,
                        user: User {
                            id: row.get(3)?,
                            username: row.get(4)?,
                            display_name: row.get(5)?,
                            roles: split_roles(&row.get::<_, String>(6)?),
                            disabled: row.get(7)?,
                            created_at: row.get(8)?,
                        },
                    })
                })
            })
            .optional();
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reader);
        Ok(row?)
    }

    fn try_expire(&self, token_hash: &[u8]) {
        self.try_write(|c| c.execute("DELETE FROM sessions WHERE token_hash = ?", [token_hash]));
    }

    fn try_touch(&self, token_hash: &[u8], now: i64) {
        self.try_write(|c| {
            c.execute(
                "UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?",
                params![now, token_hash],
            )
        });
    }

    fn logout(&self, token_hash: &[u8], deadline: Instant) -> Result<()> {
        let conn = self
            .conn_until(deadline)
            .ok_or_else(|| anyhow::anyhow!("the user database was busy"))?;
        conn.execute("DELETE FROM sessions WHERE token_hash = ?", [token_hash])?;
        Ok(())
    }

    fn sweep(&self, now: i64, idle: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?1 - ?2",
            params![now, idle],
        )?)
    }

    /// SQLite's readers answer in a few microseconds: at once.
    fn resolve_async<'a>(&'a self, token_hash: &'a [u8]) -> Pending<'a, Option<Resolved>> {
        Box::pin(std::future::ready(self.resolve(token_hash)))
    }

    fn counts(&self) -> Counts<'_> {
        Counts::Kept(self)
    }
}

impl KeptCounts for SqliteStore {
    fn load(&self) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT state FROM sign_in_limits WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn save(&self, state: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO sign_in_limits (id, state) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            [state],
        )?;
        Ok(())
    }
}

fn internal(e: &dyn std::fmt::Display) -> LoginError {
    tracing::error!(error = %e, "the user database failed");
    LoginError::Internal
}
