//! The host's tables in PostgreSQL (schema `host`), over the host's own
//! connections. Each call is one statement or one transaction; a call for
//! a request gives up at its deadline.

use crate::auth::limiter::{Change, Count, Key, SharedCounts};
use crate::auth::store::{Counts, NewSession, Pending, Resolved, SessionRow, Store, UserChange};
use crate::auth::{LoginError, User, split_roles};
use crate::database::postgres::{Pool, PoolError, Pooled, Postgres, describe};
use crate::net::Address;
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Row;

#[derive(Clone)]
pub struct PostgresStore {
    database: Arc<Postgres>,
    pool: Arc<Pool>,
}

const USER_COLUMNS: &str =
    "SELECT id, username, display_name, roles, disabled, created_at FROM host.users";

fn user_from_row(row: &Row) -> User {
    User {
        id: row.get(0),
        username: row.get(1),
        display_name: row.get(2),
        roles: split_roles(&row.get::<_, String>(3)),
        disabled: row.get(4),
        created_at: row.get(5),
    }
}

/// The bounds of the host's transactions ([`Pooled::begin`]): a host that
/// stops inside one holds its row locks for at most [`IDLE`], and another
/// host waits for a lock at most [`LOCK`] before its call fails.
const IDLE: Duration = Duration::from_secs(5);
const LOCK: Duration = Duration::from_secs(4);
/// [`IDLE`] for the sign-in limiter's transactions, which every sign-in
/// of a user takes in turn: short, so a frozen host delays the user's
/// sign-in elsewhere by less than a login guest's default deadline (1 s).
const SIGN_IN_IDLE: Duration = Duration::from_millis(500);

/// How long the operator's commands wait for the database.
fn patient() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

impl PostgresStore {
    pub fn new(database: &Arc<Postgres>) -> Self {
        PostgresStore {
            pool: database.host(),
            database: database.clone(),
        }
    }

    /// Runs `work` with one of the host's connections, waiting for it no
    /// later than `deadline`.
    fn with<T: Send + 'static>(
        &self,
        deadline: Instant,
        work: impl for<'c> FnOnce(&'c Pooled) -> Work<'c, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.database.run(self.on_connection(deadline, work))
    }

    /// `work` on one of the host's connections, waited for no later than
    /// `deadline`, as a future.
    fn on_connection<T: Send + 'static>(
        &self,
        deadline: Instant,
        work: impl for<'c> FnOnce(&'c Pooled) -> Work<'c, T> + Send + 'static,
    ) -> impl Future<Output = Result<T, StoreError>> {
        let pool = self.pool.clone();
        async move {
            let conn = pool.get(deadline).await.map_err(StoreError::Pool)?;
            until(deadline, &conn, work(&conn)).await
        }
    }

    fn resolving(
        &self,
        token_hash: &[u8],
    ) -> impl Future<Output = Result<Option<Resolved>, StoreError>> {
        let hash = token_hash.to_vec();
        self.on_connection(patient(), move |c| {
            Box::pin(async move {
                // Every signed-in request: prepared once per connection
                // (unless behind a pooler).
                let row = c
                    .query_opt(
                        "SELECT s.token_hash, s.last_seen_at, s.expires_at, u.id, u.username, u.display_name, u.roles, u.disabled, u.created_at \
                         FROM host.sessions s JOIN host.users u ON u.id = s.user_id WHERE s.token_hash = $1",
                        &[&hash],
                    )
                    .await?;
                Ok(row.map(|row| Resolved {
                    token_hash: row.get(0),
                    last_seen_at: row.get(1),
                    expires_at: row.get(2),
                    user: User {
                        id: row.get(3),
                        username: row.get(4),
                        display_name: row.get(5),
                        roles: split_roles(&row.get::<_, String>(6)),
                        disabled: row.get(7),
                        created_at: row.get(8),
                    },
                }))
            })
        })
    }
}

impl Store for PostgresStore {
    fn add_user(&self, username: &str, display_name: &str, roles: &str, phc: &str) -> Result<bool> {
        let (username, display_name, roles, phc) = (
            username.to_owned(),
            display_name.to_owned(),
            roles.to_owned(),
            phc.to_owned(),
        );
        Ok(self.with(patient(), move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO host.users (username, display_name, roles, password_hash) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                    &[&username, &display_name, &roles, &phc],
                )
                .await
                .map(|n| n == 1)
            })
        })?)
    }

    fn users(&self) -> Result<Vec<User>> {
        Ok(self.with(patient(), |c| {
            Box::pin(async move {
                let rows = c
                    .query(&format!("{USER_COLUMNS} ORDER BY lower(username)"), &[])
                    .await?;
                Ok(rows.iter().map(user_from_row).collect())
            })
        })?)
    }

    fn user(&self, username: &str) -> Result<Option<User>> {
        let username = username.to_owned();
        Ok(self.with(patient(), move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        &format!("{USER_COLUMNS} WHERE lower(username) = lower($1)"),
                        &[&username],
                    )
                    .await?;
                Ok(row.as_ref().map(user_from_row))
            })
        })?)
    }

    fn update_user(
        &self,
        username: &str,
        change: UserChange<'_>,
        end_sessions: bool,
    ) -> Result<bool> {
        let username = username.to_owned();
        let (password, disabled) = match change {
            UserChange::Password(phc) => (Some(phc.to_owned()), None),
            UserChange::Disabled(d) => (None, Some(d)),
        };
        Ok(self.with(patient(), move |c| {
            Box::pin(async move {
                c.begin(IDLE, LOCK).await?;
                let changed = c
                    .execute(
                        "UPDATE host.users SET password_hash = coalesce($2, password_hash), disabled = coalesce($3, disabled), \
                         updated_at = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                         WHERE lower(username) = lower($1)",
                        &[&username, &password, &disabled],
                    )
                    .await?;
                if changed > 0 && end_sessions {
                    c.execute(
                        "DELETE FROM host.sessions WHERE user_id = (SELECT id FROM host.users WHERE lower(username) = lower($1))",
                        &[&username],
                    )
                    .await?;
                }
                c.batch_execute("COMMIT").await?;
                Ok(changed > 0)
            })
        })?)
    }

    fn sessions(&self) -> Result<Vec<SessionRow>> {
        Ok(self.with(patient(), |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT s.token_hash, u.username, s.client, s.created_at, s.last_seen_at, s.expires_at \
                         FROM host.sessions s JOIN host.users u ON u.id = s.user_id ORDER BY s.created_at DESC",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| SessionRow {
                        token_hash: row.get(0),
                        username: row.get(1),
                        client: row.get(2),
                        created_at: row.get(3),
                        last_seen_at: row.get(4),
                        expires_at: row.get(5),
                    })
                    .collect())
            })
        })?)
    }

    fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        let hash = token_hash.to_vec();
        Ok(self.with(patient(), move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM host.sessions WHERE token_hash = $1", &[&hash])
                    .await
                    .map(|n| n > 0)
            })
        })?)
    }

    fn delete_sessions_of(&self, username: &str) -> Result<usize> {
        let username = username.to_owned();
        Ok(self.with(patient(), move |c| {
            Box::pin(async move {
                c.execute(
                    "DELETE FROM host.sessions WHERE user_id = (SELECT id FROM host.users WHERE lower(username) = lower($1))",
                    &[&username],
                )
                .await
                .map(|n| n as usize)
            })
        })?)
    }

    fn remove_user(&self, username: &str) -> Result<bool> {
        let username = username.to_owned();
        Ok(self.with(patient(), move |c| {
            Box::pin(async move {
                c.execute(
                    "DELETE FROM host.users WHERE lower(username) = lower($1)",
                    &[&username],
                )
                .await
                .map(|n| n > 0)
            })
        })?)
    }

    fn sign_in_lookup(
        &self,
        username: &str,
        deadline: Instant,
    ) -> Result<Option<(User, String)>, LoginError> {
        let username = username.to_owned();
        self.with(deadline, move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT id, username, display_name, roles, disabled, created_at, password_hash \
                         FROM host.users WHERE lower(username) = lower($1)",
                        &[&username],
                    )
                    .await?;
                Ok(row.map(|r| (user_from_row(&r), r.get(6))))
            })
        })
        .map_err(login_error)
    }

    fn open_session(&self, s: &NewSession<'_>, deadline: Instant) -> Result<bool, LoginError> {
        let (hash, user_id, phc, now, expires, client, keep) = (
            s.token_hash.to_vec(),
            s.user_id,
            s.password_hash.to_owned(),
            s.now,
            s.expires_at,
            s.client.clone(),
            s.keep as i64 - 1,
        );
        self.with(deadline, move |c| {
            Box::pin(async move {
                c.begin(IDLE, LOCK).await?;
                let inserted = c
                    .execute(
                        "INSERT INTO host.sessions (token_hash, user_id, created_at, last_seen_at, expires_at, client) \
                         SELECT $1, id, $3, $3, $4, $5 FROM host.users WHERE id = $2 AND password_hash = $6 AND NOT disabled",
                        &[&hash, &user_id, &now, &expires, &client, &phc],
                    )
                    .await?;
                c.execute(
                    "DELETE FROM host.sessions WHERE user_id = $1 AND token_hash <> $2 AND token_hash NOT IN \
                     (SELECT token_hash FROM host.sessions WHERE user_id = $1 AND token_hash <> $2 \
                      ORDER BY created_at DESC, token_hash LIMIT $3)",
                    &[&user_id, &hash, &keep],
                )
                .await?;
                c.batch_execute("COMMIT").await?;
                Ok(inserted == 1)
            })
        })
        .map_err(login_error)
    }

    fn resolve(&self, token_hash: &[u8]) -> Result<Option<Resolved>> {
        Ok(self.database.run(self.resolving(token_hash))?)
    }

    /// Its worker serves other requests while the database answers.
    fn resolve_async<'a>(&'a self, token_hash: &'a [u8]) -> Pending<'a, Option<Resolved>> {
        Box::pin(async move { Ok(self.database.awaited(self.resolving(token_hash)).await?) })
    }

    fn counts(&self) -> Counts<'_> {
        Counts::Shared(Arc::new(self.clone()))
    }

    fn try_expire(&self, token_hash: &[u8]) {
        let _ = self.delete_session(token_hash);
    }

    fn try_touch(&self, token_hash: &[u8], now: i64) {
        let hash = token_hash.to_vec();
        let _ = self.with(Instant::now() + Duration::from_millis(200), move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE host.sessions SET last_seen_at = $2 WHERE token_hash = $1",
                    &[&hash, &now],
                )
                .await
            })
        });
    }

    fn logout(&self, token_hash: &[u8], deadline: Instant) -> Result<()> {
        let hash = token_hash.to_vec();
        self.with(deadline, move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM host.sessions WHERE token_hash = $1", &[&hash])
                    .await
            })
        })?;
        Ok(())
    }

    fn sweep(&self, now: i64, idle: i64) -> Result<usize> {
        Ok(self.with(patient(), move |c| {
            Box::pin(async move {
                c.execute(
                    "DELETE FROM host.sessions WHERE expires_at <= $1 OR last_seen_at <= $1 - $2",
                    &[&now, &idle],
                )
                .await
                .map(|n| n as usize)
            })
        })?)
    }
}

impl SharedCounts for PostgresStore {
    /// Reads the sign-in counts under `keys` and `user`'s familiar
    /// addresses under row locks, lets `change` change them and writes
    /// them back, in one transaction: hosts sharing the database count each
    /// attempt once, and attempts at once take turns. Times are the
    /// database's clock, one clock for every host.
    fn update(
        &self,
        keys: &[Key],
        user: &str,
        deadline: Instant,
        change: Change<'_>,
    ) -> Result<()> {
        let pool = self.pool.clone();
        self.database.run(async move {
            let conn = pool.get(deadline).await.map_err(StoreError::Pool)?;
            let work = async {
                // Every key gets a row to lock, and rows are inserted and
                // locked in one order: two attempts never wait on each
                // other in a circle.
                let mut texts: Vec<String> = keys.iter().map(Key::text).collect();
                texts.sort();
                // A host that stops inside (a paused VM, a cut network)
                // holds these rows' locks: the server ends its transaction
                // when it has been idle for SIGN_IN_IDLE, so another host's
                // attempt for the same user goes on within its guest's
                // deadline. Nothing here waits between statements but the
                // round trips.
                conn.begin(SIGN_IN_IDLE, LOCK).await?;
                conn.execute(
                    "INSERT INTO host.sign_in_counts (key, failures, last) \
                     SELECT k, '{}', 0 FROM unnest($1::text[]) AS k ORDER BY k ON CONFLICT DO NOTHING",
                    &[&texts],
                )
                .await?;
                let rows = conn
                    .query(
                        "SELECT key, failures, next_try FROM host.sign_in_counts \
                         WHERE key = ANY($1) ORDER BY key FOR UPDATE",
                        &[&texts],
                    )
                    .await?;
                let now: i64 = conn
                    .query_one(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8",
                        &[],
                    )
                    .await?
                    .get(0);
                let familiar = conn
                    .query(
                        "SELECT address, at FROM host.sign_in_familiar WHERE username = $1 ORDER BY at",
                        &[&user],
                    )
                    .await?
                    .iter()
                    .filter_map(|r| {
                        Some((Address::parse(r.get(0))?, r.get::<_, i64>(1).max(0) as u64))
                    })
                    .collect();
                let counts = keys
                    .iter()
                    .map(|key| {
                        let text = key.text();
                        let count = rows
                            .iter()
                            .find(|r| r.get::<_, &str>(0) == text)
                            .map(|r| Count {
                                failures: r
                                    .get::<_, Vec<i64>>(1)
                                    .into_iter()
                                    .map(|t| t.max(0) as u64)
                                    .collect(),
                                next_try: r.get::<_, Option<i64>>(2).map(|t| t.max(0) as u64),
                            })
                            .unwrap_or_default();
                        (key.clone(), count)
                    })
                    .collect();
                let now = now.max(0) as u64;
                let slice = change(now, counts, familiar);
                for (key, count) in &slice.counts {
                    if count.live(now) {
                        let failures: Vec<i64> = count.failures.iter().map(|t| *t as i64).collect();
                        conn.execute(
                            "UPDATE host.sign_in_counts SET failures = $2, next_try = $3, last = $4 WHERE key = $1",
                            &[&key.text(), &failures, &count.next_try.map(|t| t as i64), &(now as i64)],
                        )
                        .await?;
                    } else {
                        conn.execute("DELETE FROM host.sign_in_counts WHERE key = $1", &[&key.text()])
                            .await?;
                    }
                }
                if slice.familiar_changed {
                    conn.execute("DELETE FROM host.sign_in_familiar WHERE username = $1", &[&user])
                        .await?;
                    for (address, at) in &slice.familiar {
                        conn.execute(
                            "INSERT INTO host.sign_in_familiar (username, address, at) VALUES ($1, $2, $3)",
                            &[&user, &address.to_string(), &(*at as i64)],
                        )
                        .await?;
                    }
                }
                conn.batch_execute("COMMIT").await?;
                Ok(())
            };
            Ok(until(deadline, &conn, work).await?)
        })
    }

    /// Deletes the counts no failure of the last `window` is left in, and
    /// familiar addresses older than `familiar`.
    fn sweep(&self, window: Duration, familiar: Duration) -> Result<()> {
        let (window, familiar) = (window.as_millis() as i64, familiar.as_millis() as i64);
        self.with(patient(), move |c| {
            Box::pin(async move {
                let now = "(extract(epoch FROM clock_timestamp()) * 1000)::int8";
                c.execute(
                    &format!("DELETE FROM host.sign_in_counts WHERE last < {now} - $1"),
                    &[&window],
                )
                .await?;
                c.execute(
                    &format!("DELETE FROM host.sign_in_familiar WHERE at < {now} - $1"),
                    &[&familiar],
                )
                .await
            })
        })?;
        Ok(())
    }
}

/// Runs `work` on `conn` no later than `deadline` ([`Pooled::until`]).
async fn until<T>(
    deadline: Instant,
    conn: &Pooled,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match conn.until(deadline, work).await {
        Some(result) => result.map_err(StoreError::Db),
        None => Err(StoreError::Pool(PoolError::Busy)),
    }
}

/// One call's work on a connection.
type Work<'c, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
>;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Pool(PoolError),
    #[error("the user database failed: {}", describe(.0))]
    Db(tokio_postgres::Error),
}

fn login_error(e: StoreError) -> LoginError {
    match e {
        StoreError::Pool(PoolError::Busy) => LoginError::Busy,
        other => {
            tracing::error!(error = %other, "the user database failed");
            LoginError::Internal
        }
    }
}
