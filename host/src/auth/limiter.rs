//! Failed sign-ins, counted so that brute force is slow and a user under
//! attack can still sign in. Three counts, each over a sliding window:
//!
//! - per address and user: [`Rules::pair`] failures stop that address from
//!   trying that user again until the window has passed;
//! - per address: [`Rules::address`] failures (any users) stop the address;
//! - per user, from every address: past [`Rules::user`] failures the user
//!   is *slowed* — one attempt per [`Rules::pace`] from addresses it has not
//!   signed in from — never locked out. One address alone cannot reach this
//!   count (its pair count stops it first), so failures from one address
//!   never stand in the way of the right password from another.
//!
//! An attempt is counted as a failure when it is admitted, before its
//! password is checked, and forgiven if it succeeds: attempts running at
//! once never get past a limit together.
//!
//! On PostgreSQL the counts are rows every host shares: an attempt reads
//! its keys under row locks (taken in one order), changes them and writes
//! them back in one transaction, so failures spread over several hosts
//! count once and attempts at once across hosts never pass a limit
//! together; the database's clock times them. On SQLite they live in this
//! process and are saved as one snapshot.
//!
//! IPv6 addresses count per /64, what one client usually holds. Keys are
//! bounded in size (a username that cannot exist shares one key) and in
//! number; when the table is full, the least useful entries go first
//! (expired ones, then those with the fewest failures, oldest first), so
//! filling the table neither refuses everybody nor frees a client that
//! has many failures. Only failures count and a success clears its pair,
//! which is why this is a window of our own rather than a request-rate
//! limiter like governor's.

use crate::net::Address;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many failures each count allows in its window.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub pair: usize,
    pub address: usize,
    pub user: usize,
    /// How often a slowed user may be tried from an unfamiliar address.
    pub pace: Duration,
    pub window: Duration,
    /// Entries the table holds at most (counts and familiar addresses).
    pub keys: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            pair: 5,
            address: 20,
            user: 10,
            pace: Duration::from_secs(10),
            window: Duration::from_secs(15 * 60),
            keys: 100_000,
        }
    }
}
/// Addresses remembered per user as ones it signed in from.
const FAMILIAR_PER_USER: usize = 8;
/// How long a successful sign-in makes an address familiar.
pub const FAMILIAR_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// What a count is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Pair(Address, String),
    Address(Address),
    User(String),
}

impl Key {
    /// The key as a row's primary key.
    pub fn text(&self) -> String {
        match self {
            Key::Pair(a, u) => format!("pair {a} {u}"),
            Key::Address(a) => format!("address {a}"),
            Key::User(u) => format!("user {u}"),
        }
    }
}

/// Failures under one key, as Unix milliseconds, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Count {
    pub failures: VecDeque<u64>,
    /// For a slowed user: when an unfamiliar address may try next.
    pub next_try: Option<u64>,
}

impl Count {
    /// Whether it still holds anything at `now`.
    pub fn live(&self, now: u64) -> bool {
        !self.failures.is_empty() || self.next_try.is_some_and(|t| t > now)
    }
}

/// One attempt's share of the counts: the counts of its keys (the user's
/// first) and the user's familiar addresses, read together, changed by
/// the rules below and written back together.
pub struct Slice {
    pub now: u64,
    pub client: Option<Address>,
    pub counts: Vec<(Key, Count)>,
    pub familiar: Vec<(Address, u64)>,
    pub familiar_changed: bool,
}

#[derive(Default)]
struct Table {
    counts: HashMap<Key, Count>,
    /// Per user, the addresses it signed in from and when.
    familiar: HashMap<String, Vec<(Address, u64)>>,
}

/// Why an attempt may not go ahead: too many failures, try again after
/// this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub Duration);

pub struct Limiter {
    rules: Rules,
    counts: Counts,
}

/// How the limiter changes a slice of the shared counts: given the
/// database's clock, the counts of its keys and the user's familiar
/// addresses, the slice to write back.
pub type Change<'a> = Box<dyn FnOnce(u64, Vec<(Key, Count)>, Vec<(Address, u64)>) -> Slice + 'a>;

/// The limiter's counts in the database, shared by every host.
pub trait SharedCounts: Send + Sync {
    /// Reads the counts under `keys` and `user`'s familiar addresses,
    /// locked, lets `change` change them and writes them back, in one
    /// transaction: hosts sharing the database count each attempt once.
    fn update(
        &self,
        keys: &[Key],
        user: &str,
        deadline: Instant,
        change: Change<'_>,
    ) -> anyhow::Result<()>;

    /// Deletes the counts no failure of the last `window` is left in, and
    /// familiar addresses older than `familiar`.
    fn sweep(&self, window: Duration, familiar: Duration) -> anyhow::Result<()>;
}

/// Where the counts are kept.
enum Counts {
    /// In this process, saved by [`Limiter::snapshot`].
    Memory {
        table: Mutex<Table>,
        /// Changed since the last snapshot.
        dirty: AtomicBool,
    },
    /// In the database, shared by every host.
    Shared(std::sync::Arc<dyn SharedCounts>),
}

/// The key a username counts under: itself (lower-case) when it could be a
/// user's name, else one shared key that no name can be, so a key is never
/// longer than a name.
fn user_key(username: &str) -> String {
    if crate::auth::check_username(username).is_ok() {
        username.to_ascii_lowercase()
    } else {
        "!invalid".to_owned()
    }
}

/// Unix milliseconds now, by this machine's clock.
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The deadline of a change that records an attempt's outcome, which
/// should land even when the attempt's own time is up.
fn keeping() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Limiter {
    /// Counts in this process.
    pub fn new(rules: Rules) -> Self {
        Limiter {
            rules,
            counts: Counts::Memory {
                table: Mutex::default(),
                dirty: AtomicBool::new(false),
            },
        }
    }

    /// Counts in the database, shared by every host on it.
    pub fn shared(rules: Rules, store: std::sync::Arc<dyn SharedCounts>) -> Self {
        Limiter {
            rules,
            counts: Counts::Shared(store),
        }
    }

    /// Reads the slice of `username` and `client`, lets `change` change it
    /// and writes it back, all at once for every host that shares it.
    fn update<R>(
        &self,
        username: &str,
        client: Option<Address>,
        deadline: Instant,
        change: impl FnOnce(&Rules, &mut Slice) -> R,
    ) -> anyhow::Result<R> {
        let user = user_key(username);
        let keys = keys(&user, client);
        match &self.counts {
            Counts::Shared(store) => {
                let mut out = None;
                store.update(
                    &keys,
                    &user,
                    deadline,
                    Box::new(|now, counts, familiar| {
                        let mut slice = Slice {
                            now,
                            client,
                            counts,
                            familiar,
                            familiar_changed: false,
                        };
                        out = Some(change(&self.rules, &mut slice));
                        slice
                    }),
                )?;
                out.ok_or_else(|| anyhow::anyhow!("the sign-in counts were not changed"))
            }
            Counts::Memory { table, dirty } => {
                let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
                dirty.store(true, Ordering::Relaxed);
                let mut slice = Slice {
                    now: wall_ms(),
                    client,
                    counts: keys
                        .into_iter()
                        .map(|k| {
                            let count = table.counts.get(&k).cloned().unwrap_or_default();
                            (k, count)
                        })
                        .collect(),
                    familiar: table.familiar.get(&user).cloned().unwrap_or_default(),
                    familiar_changed: false,
                };
                let out = change(&self.rules, &mut slice);
                let now = slice.now;
                for (key, count) in slice.counts {
                    if !count.live(now) {
                        table.counts.remove(&key);
                        continue;
                    }
                    if !table.counts.contains_key(&key) {
                        make_room(&mut table, &self.rules, now);
                    }
                    table.counts.insert(key, count);
                }
                if slice.familiar_changed {
                    if !table.familiar.contains_key(&user) {
                        make_room(&mut table, &self.rules, now);
                    }
                    table.familiar.insert(user, slice.familiar);
                }
                Ok(out)
            }
        }
    }

    /// The counts as JSON (times in Unix milliseconds), so they survive a
    /// restart; `None` when nothing changed since the last snapshot, and
    /// always for counts kept in PostgreSQL.
    pub fn snapshot(&self) -> Option<Value> {
        let Counts::Memory { table, dirty } = &self.counts else {
            return None;
        };
        if !dirty.swap(false, Ordering::Relaxed) {
            return None;
        }
        let table = table.lock().unwrap_or_else(|e| e.into_inner());
        let counts: Vec<Value> = table
            .counts
            .iter()
            .map(|(key, count)| {
                let (kind, address, user) = match key {
                    Key::Pair(a, u) => ("pair", Some(*a), Some(u.as_str())),
                    Key::Address(a) => ("address", Some(*a), None),
                    Key::User(u) => ("user", None, Some(u.as_str())),
                };
                json!({
                    "kind": kind,
                    "address": address.map(|a| a.to_string()),
                    "user": user,
                    "failures": count.failures,
                    "next_try": count.next_try,
                })
            })
            .collect();
        let familiar: Vec<Value> = table
            .familiar
            .iter()
            .map(|(user, seen)| {
                let seen: Vec<Value> = seen
                    .iter()
                    .map(|(a, at)| json!([a.to_string(), at]))
                    .collect();
                json!({"user": user, "seen": seen})
            })
            .collect();
        Some(json!({"counts": counts, "familiar": familiar}))
    }

    /// Takes back the counts of a [`Limiter::snapshot`]; what cannot be
    /// read is skipped, what has expired is dropped, and at most
    /// `rules.keys` entries are kept.
    pub fn restore(&self, snapshot: &Value) {
        let Counts::Memory { table, .. } = &self.counts else {
            return;
        };
        let now = wall_ms();
        let window = ms(self.rules.window);
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        let address = |v: &Value| v.as_str().and_then(Address::parse);
        let user = |v: &Value| v.as_str().map(user_key);
        for c in snapshot["counts"].as_array().into_iter().flatten() {
            let key = match c["kind"].as_str() {
                Some("pair") => address(&c["address"])
                    .zip(user(&c["user"]))
                    .map(|(a, u)| Key::Pair(a, u)),
                Some("address") => address(&c["address"]).map(Key::Address),
                Some("user") => user(&c["user"]).map(Key::User),
                _ => None,
            };
            let Some(key) = key else { continue };
            let mut failures: VecDeque<u64> = c["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .filter(|t| *t <= now)
                .collect();
            prune(&mut failures, now, window);
            let count = Count {
                failures,
                // Never further off than one pace from now.
                next_try: c["next_try"]
                    .as_u64()
                    .map(|t| t.min(now + ms(self.rules.pace))),
            };
            if count.live(now) && table.counts.len() < self.rules.keys {
                table.counts.insert(key, count);
            }
        }
        for f in snapshot["familiar"].as_array().into_iter().flatten() {
            let Some(name) = user(&f["user"]) else {
                continue;
            };
            let seen: Vec<(Address, u64)> = f["seen"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pair| Some((address(&pair[0])?, pair[1].as_u64()?)))
                .filter(|(_, at)| now.saturating_sub(*at) < ms(FAMILIAR_FOR))
                .take(FAMILIAR_PER_USER)
                .collect();
            if !seen.is_empty() && table.counts.len() + table.familiar.len() < self.rules.keys {
                table.familiar.insert(name, seen);
            }
        }
    }

    /// Whether `username` may be tried from `client` now. An admitted
    /// attempt is counted as a failure at once (see [`Limiter::succeeded`]
    /// and [`Limiter::forgive`]), and a slowed user's turn is taken by it.
    /// When the shared counts cannot be read by `deadline` (the caller's:
    /// a wait on a frozen host's lock ends with the sign-in that waits),
    /// the attempt waits a second: no password is checked uncounted.
    pub fn admit(
        &self,
        username: &str,
        client: Option<Address>,
        deadline: Instant,
    ) -> Result<(), Refusal> {
        self.update(username, client, deadline, admit).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the sign-in limits could not be read; the attempt waits");
            Err(Refusal(Duration::from_secs(1)))
        })
    }

    /// Takes back the failure an admitted attempt was counted as, when the
    /// attempt ended before its password was checked (the database was
    /// busy).
    pub fn forgive(&self, username: &str, client: Option<Address>) {
        self.keep(self.update(username, client, keeping(), |_, slice| {
            for (_, count) in &mut slice.counts {
                count.failures.pop_back();
            }
        }));
    }

    /// Records a sign-in: its attempt is forgiven, the pair's failures too,
    /// and the address becomes familiar for the user. The other failures
    /// of the address and of the user stay.
    pub fn succeeded(&self, username: &str, client: Option<Address>) {
        self.keep(self.update(username, client, keeping(), |_, slice| {
            let now = slice.now;
            for (key, count) in &mut slice.counts {
                match key {
                    Key::Pair(..) => *count = Count::default(),
                    _ => drop(count.failures.pop_back()),
                }
            }
            if let Some(addr) = slice.client {
                slice.familiar.retain(|(a, _)| *a != addr);
                slice.familiar.push((addr, now));
                if slice.familiar.len() > FAMILIAR_PER_USER {
                    slice.familiar.remove(0);
                }
                slice.familiar_changed = true;
            }
        }));
    }

    fn keep(&self, outcome: anyhow::Result<()>) {
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "the sign-in limits could not be updated");
        }
    }
}

/// The rules of an attempt: refused while the pair or the address is over
/// its limit, or while a slowed user's turn has not come (unless the
/// address is familiar); else counted as a failure under every key.
fn admit(rules: &Rules, slice: &mut Slice) -> Result<(), Refusal> {
    let now = slice.now;
    let window = ms(rules.window);
    let mut wait = 0;
    for (key, count) in &mut slice.counts {
        prune(&mut count.failures, now, window);
        let max = match key {
            Key::Pair(..) => rules.pair,
            Key::Address(_) => rules.address,
            Key::User(_) => continue,
        };
        if count.failures.len() >= max {
            wait = wait.max(window.saturating_sub(now.saturating_sub(count.failures[0])));
        }
    }
    if wait > 0 {
        return Err(Refusal(Duration::from_millis(wait)));
    }
    let familiar = slice.client.is_some_and(|addr| {
        slice
            .familiar
            .iter()
            .any(|(a, at)| *a == addr && now.saturating_sub(*at) < ms(FAMILIAR_FOR))
    });
    let (_, user) = &mut slice.counts[0];
    if !familiar && user.failures.len() >= rules.user {
        match user.next_try {
            Some(next) if next > now => return Err(Refusal(Duration::from_millis(next - now))),
            _ => user.next_try = Some(now + ms(rules.pace)),
        }
    }
    // More than the largest limit is never needed.
    let most = rules.pair.max(rules.address).max(rules.user);
    for (_, count) in &mut slice.counts {
        count.failures.push_back(now);
        while count.failures.len() > most {
            count.failures.pop_front();
        }
    }
    Ok(())
}

/// Room for one more key: expired entries go first; when that is not
/// enough, the eighth of the counts that holds the fewest failures
/// (the oldest first among equals).
fn make_room(table: &mut Table, rules: &Rules, now: u64) {
    if table.counts.len() + table.familiar.len() < rules.keys {
        return;
    }
    let window = ms(rules.window);
    table.counts.retain(|_, count| {
        prune(&mut count.failures, now, window);
        count.live(now)
    });
    table.familiar.retain(|_, seen| {
        seen.retain(|(_, at)| now.saturating_sub(*at) < ms(FAMILIAR_FOR));
        !seen.is_empty()
    });
    if table.counts.len() + table.familiar.len() < rules.keys {
        return;
    }
    let mut worth: Vec<(usize, Option<u64>)> = table
        .counts
        .values()
        .map(|c| (c.failures.len(), c.failures.back().copied()))
        .collect();
    let evict = (worth.len() / 8).max(1).min(worth.len());
    if evict == 0 {
        // Only familiar addresses: the oldest user's go.
        let oldest = table
            .familiar
            .iter()
            .min_by_key(|(_, seen)| seen.iter().map(|(_, at)| *at).max())
            .map(|(user, _)| user.clone());
        if let Some(user) = oldest {
            table.familiar.remove(&user);
        }
        return;
    }
    let (_, cutoff, _) = worth.select_nth_unstable(evict - 1);
    let cutoff = *cutoff;
    let mut left = evict;
    table.counts.retain(|_, c| {
        let keep = left == 0 || (c.failures.len(), c.failures.back().copied()) > cutoff;
        if !keep {
            left -= 1;
        }
        keep
    });
}

/// The keys one attempt counts under, the user's first.
fn keys(user: &str, client: Option<Address>) -> Vec<Key> {
    let mut keys = vec![Key::User(user.to_owned())];
    if let Some(addr) = client {
        keys.push(Key::Pair(addr, user.to_owned()));
        keys.push(Key::Address(addr));
    }
    keys
}

/// Drops the failures that have left the window.
pub fn prune(times: &mut VecDeque<u64>, now: u64, window: u64) {
    while times
        .front()
        .is_some_and(|t| now.saturating_sub(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests;
