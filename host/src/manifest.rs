//! `rawalite.toml`: the app, its guests, their routes, grants and limits.
//! Parsed once at start; an unknown key or a bad value is an error that
//! names the file, the line, the key and what is wrong.

use crate::capabilities::db::DbGrant;
use crate::capabilities::paths::PathsGrant;
use crate::capabilities::session::SessionGrant;
use crate::runtime::{Limits, MAX_MEMORY};
use bytesize::ByteSize;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed manifest with every path made absolute.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file itself.
    pub file: PathBuf,
    pub app_name: String,
    /// Where the database and the roots live, unless `--data` says otherwise.
    pub data_dir: PathBuf,
    /// The PATHS registry: root name → directory, relative to the data
    /// directory unless absolute.
    pub roots: BTreeMap<String, PathBuf>,
    /// The app's own static assets, served by `serve` at `/static/`.
    pub static_dir: Option<PathBuf>,
    /// The names `serve` answers to when it listens off loopback.
    pub hosts: Vec<String>,
    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<Network>,
    /// `[app.backup]`, when `serve` takes backups on a schedule.
    pub backup: Option<BackupSchedule>,
    /// `[app] database`: a PostgreSQL URL; SQLite in the data directory
    /// when absent. `RAWALITE_DATABASE_URL` and `--database` override it.
    pub database: Option<String>,
    /// `[app] portable_sql`: hold guests' SQL to the portable subset on
    /// SQLite too (it always is on PostgreSQL).
    pub portable_sql: bool,
    pub guests: Vec<GuestEntry>,
}

/// An address or a network (`10.0.0.0/8`, `::1`) of `[app] trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(ipnet::IpNet);

impl Network {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 client may reach a dual-stack socket as ::ffff:a.b.c.d.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Network)
            .map_err(|_| format!("`{text}` is not an address or a network such as 10.0.0.0/8"))
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One `[[guest]]`.
#[derive(Debug, Clone)]
pub struct GuestEntry {
    pub name: String,
    pub component: PathBuf,
    /// The path prefix `serve` sends to this guest; `None` for guests that
    /// are only rendered from the command line.
    pub route: Option<String>,
    pub limits: Limits,
    /// `[guest.db]`; `None` means no database at all.
    pub db: Option<DbGrant>,
    /// `[guest.paths]`; empty means no roots.
    pub paths: PathsGrant,
    /// `[guest.session]`; the default requires nothing.
    pub session: SessionGrant,
    /// `[guest.browser]`; the default: no script, requests from its own
    /// pages only.
    pub browser: BrowserGrant,
}

/// `[guest.browser]`: what a guest's pages may do in a visitor's browser
/// beyond the default, which is no script at all and state changes only
/// from the guest's own pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserGrant {
    /// Files of the app's static directory its pages may run, as they are
    /// served (`/static/app.js`).
    #[serde(default)]
    pub scripts: Vec<String>,
    /// Guests whose pages may send it forms and requests.
    #[serde(default)]
    pub accept_from: Vec<String>,
}

/// Why a manifest was refused: one line naming the file, and where known
/// the line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl GuestEntry {
    /// Whether `[guest.db]` grants any table.
    pub fn grants_db(&self) -> bool {
        self.db.as_ref().is_some_and(|db| !db.is_empty())
    }

    /// Whether `[guest.paths]` grants any root.
    pub fn grants_paths(&self) -> bool {
        !self.paths.is_empty()
    }
}

impl Manifest {
    /// Reads and checks the manifest at `file`.
    pub fn load(file: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(file).map_err(|e| ManifestError {
            file: file.to_owned(),
            line: None,
            message: format!("cannot read the manifest: {e}"),
        })?;
        Self::parse(file, &text)
    }

    /// Checks manifest `text`, resolving relative paths against `file`'s directory.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = parse_toml(file, text)?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        let error = |key: String, message: String| ManifestError {
            file: file.to_owned(),
            line: None,
            message: format!("{key}: {message}"),
        };

        for (name, path) in &raw.paths {
            check_name(name).map_err(|m| error(format!("paths.{name}"), m))?;
            if path.as_os_str().is_empty() {
                return Err(error(
                    format!("paths.{name}"),
                    "the path is empty".to_owned(),
                ));
            }
        }
        let mut guests: Vec<GuestEntry> = Vec::with_capacity(raw.guest.len());
        for (i, g) in raw.guest.into_iter().enumerate() {
            let key = |field: &str| format!("guest[{i}] ({}).{field}", g.name);
            check_name(&g.name).map_err(|m| error(format!("guest[{i}].name"), m))?;
            if guests.iter().any(|other| other.name == g.name) {
                return Err(error(key("name"), "another guest has this name".to_owned()));
            }
            if let Some(route) = &g.route {
                check_route(route).map_err(|m| error(key("route"), m))?;
                if let Some(other) = guests.iter().find(|o| o.route.as_ref() == Some(route)) {
                    return Err(error(
                        key("route"),
                        format!("guest `{}` already has the route `{route}`", other.name),
                    ));
                }
            }
            let limits = g.limits.resolve().map_err(|m| error(key("limits"), m))?;
            let db = g.db.map(DbGrant::normalized);
            if let Some(grant) = &db {
                grant.check().map_err(|m| error(key("db"), m))?;
            }
            for (root, grant) in &g.paths {
                let key = key(&format!("paths.{root}"));
                if !raw.paths.contains_key(root) {
                    return Err(error(
                        key,
                        format!(
                            "there is no root `{root}` in [paths] (roots: {})",
                            raw.paths.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                grant.check().map_err(|m| error(key, m))?;
            }
            for role in &g.session.roles {
                crate::auth::check_role(role)
                    .map_err(|e| error(key("session.roles"), e.to_string()))?;
            }
            let static_dir = raw.app.r#static.as_ref().map(|dir| base.join(dir));
            for script in &g.browser.scripts {
                check_script(script, static_dir.as_deref())
                    .map_err(|m| error(key("browser.scripts"), m))?;
            }
            guests.push(GuestEntry {
                component: base.join(&g.component),
                name: g.name,
                route: g.route,
                limits,
                db,
                paths: g.paths,
                session: g.session,
                browser: g.browser,
            });
        }
        for (i, g) in guests.iter().enumerate() {
            for sender in &g.browser.accept_from {
                if sender == &g.name || !guests.iter().any(|o| &o.name == sender) {
                    return Err(error(
                        format!("guest[{i}] ({}).browser.accept_from", g.name),
                        format!(
                            "`{sender}` is not another guest of this manifest (guests: {})",
                            guests
                                .iter()
                                .map(|o| o.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }

        if let Some(url) = &raw.app.database {
            crate::database::postgres::check_scheme(url)
                .map_err(|e| error("app.database".to_owned(), e.to_string()))?;
        }
        for host in &raw.app.hosts {
            check_host(host).map_err(|m| error("app.hosts".to_owned(), m))?;
        }
        let backup = match raw.app.backup {
            Some(b) if b.keep == 0 => {
                return Err(error(
                    "app.backup.keep".to_owned(),
                    "keep at least one backup".to_owned(),
                ));
            }
            Some(b) => Some(BackupSchedule {
                every: b.every.0,
                keep: b.keep,
                dir: base.join(b.dir),
            }),
            None => None,
        };
        Ok(Manifest {
            file: file.to_owned(),
            app_name: raw.app.name,
            data_dir: base.join(raw.app.data_dir),
            roots: raw.paths,
            static_dir: raw.app.r#static.map(|dir| base.join(dir)),
            hosts: raw.app.hosts,
            trusted_proxies: raw.app.trusted_proxies,
            backup,
            database: raw.app.database,
            portable_sql: raw.app.portable_sql,
            guests,
        })
    }

    /// The guest called `name`, or an error listing the guests there are.
    pub fn guest(&self, name: &str) -> Result<&GuestEntry, ManifestError> {
        self.guests
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| ManifestError {
                file: self.file.clone(),
                line: None,
                message: format!(
                    "no guest named `{name}` (guests: {})",
                    self.guests
                        .iter()
                        .map(|g| g.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// Deserializes TOML, reporting the key path (`guest[1].limits.memory`) and
/// the line of the first error.
fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ManifestError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| toml_error(file, text, &e, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        toml_error(file, text, e.inner(), Some(path))
    })
}

fn toml_error(file: &Path, text: &str, e: &toml::de::Error, path: Option<String>) -> ManifestError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim_end_matches('\n').to_owned();
    ManifestError {
        file: file.to_owned(),
        line,
        message: match path {
            Some(path) if path != "." => format!("{path}: {message}"),
            _ => message,
        },
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1-64 characters of a-z, 0-9, - and _"
        ))
    }
}

/// A name a browser puts in `Host`: letters, digits, `-` and `.`, or an
/// IP address, optionally with `:port`.
fn check_host(host: &str) -> Result<(), String> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => {
            port.parse::<u16>()
                .map_err(|_| format!("`{host}`: `{port}` is not a port"))?;
            name
        }
        _ => host,
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && (name
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a host name such as \"invoices.example.com\" or \"invoices.example.com:8443\""
        ))
    }
}

/// A script a guest's pages may run: a file of the static directory, as
/// served (`/static/app.js`), in characters a Content-Security-Policy can
/// carry as they are.
fn check_script(script: &str, static_dir: Option<&Path>) -> Result<(), String> {
    let Some(file) = script.strip_prefix("/static/") else {
        return Err(format!(
            "`{script}` must be a file the host serves from /static/ (a guest's own routes may never serve scripts)"
        ));
    };
    let plain = !file.is_empty()
        && file
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if !plain {
        return Err(format!(
            "`{script}` must be a plain path of a-z, 0-9, -, _, . and /"
        ));
    }
    let Some(dir) = static_dir else {
        return Err("the app has no static directory: set `static` under [app]".to_owned());
    };
    if !dir.join(file).is_file() {
        return Err(format!(
            "`{script}` is not a file of the static directory {}",
            dir.display()
        ));
    }
    Ok(())
}

fn check_route(route: &str) -> Result<(), String> {
    let ok = route.starts_with('/')
        && (route == "/" || !route.ends_with('/'))
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{route}` must start with / and not end with one, using a-z, 0-9, -, _ and ."
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    app: RawApp,
    #[serde(default)]
    paths: BTreeMap<String, PathBuf>,
    #[serde(default)]
    guest: Vec<RawGuest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    /// Relative to the manifest: assets ship with the app, not its data.
    r#static: Option<PathBuf>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<Network>,
    backup: Option<RawBackup>,
    database: Option<String>,
    #[serde(default)]
    portable_sql: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    every: Every,
    keep: usize,
    /// Relative to the manifest.
    dir: PathBuf,
}

/// `[app.backup]`: `serve` writes a backup into `dir` every `every`,
/// keeping the newest `keep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    pub every: std::time::Duration,
    pub keep: usize,
    pub dir: PathBuf,
}

/// A duration written as a whole number and a unit: `90s`, `30m`, `6h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub std::time::Duration);

impl std::str::FromStr for Every {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("`{text}` is not a duration such as \"90s\", \"30m\", \"6h\" or \"1d\"");
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        match number.checked_mul(seconds) {
            Some(0) => Err(format!("`{text}`: the interval must be more than zero")),
            Some(secs) if secs <= 366 * 86_400 => Ok(Every(std::time::Duration::from_secs(secs))),
            _ => Err(format!("`{text}`: at most a year")),
        }
    }
}

impl<'de> Deserialize<'de> for Every {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    name: String,
    component: PathBuf,
    route: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    db: Option<DbGrant>,
    #[serde(default)]
    paths: PathsGrant,
    #[serde(default)]
    session: SessionGrant,
    #[serde(default)]
    browser: BrowserGrant,
}

/// `[guest.limits]`; anything left out keeps its default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Size>,
    timeout_ms: Option<u64>,
    response: Option<Size>,
    handles: Option<usize>,
    db_rows: Option<usize>,
    db_bytes: Option<Size>,
}

impl RawLimits {
    fn resolve(&self) -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Some(memory) = self.memory {
            if memory.0 == 0 || memory.0 > MAX_MEMORY {
                return Err(format!(
                    "memory must be between 1 byte and {}",
                    ByteSize(MAX_MEMORY)
                ));
            }
            limits.memory = memory.0;
            limits.db_bytes = Limits::default_db_bytes(memory.0);
        }
        if let Some(ms) = self.timeout_ms {
            if !(1..=600_000).contains(&ms) {
                return Err("timeout_ms must be between 1 and 600000".to_owned());
            }
            limits.timeout = Duration::from_millis(ms);
        }
        if let Some(response) = self.response {
            limits.response_bytes = response.0;
        }
        if let Some(handles) = self.handles {
            limits.handles = handles;
        }
        if let Some(rows) = self.db_rows {
            if rows == 0 {
                return Err("db_rows must be at least 1".to_owned());
            }
            limits.db_rows = rows;
        }
        if let Some(bytes) = self.db_bytes {
            // SQLite needs some memory for any statement at all, and a
            // result must fit in the guest.
            if bytes.0 < (1 << 20) || bytes.0 > limits.memory {
                return Err(format!(
                    "db_bytes must be between 1 MiB and the guest's memory ({})",
                    ByteSize(limits.memory)
                ));
            }
            limits.db_bytes = bytes.0;
        }
        Ok(limits)
    }
}

/// A size written as `"50 MiB"` (or a plain number of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"50 MiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse::<ByteSize>()
                    .map(|b| Size(b.0))
                    .map_err(|e| E::custom(format!("`{v}` is not a size such as \"50 MiB\": {e}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrays and tables nested as deep as a manifest of a few MiB could
    /// hold: an error that names the line, never a crash, on the stack of
    /// a guest's fiber.
    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let stack = if cfg!(debug_assertions) {
            16 << 20
        } else {
            2 << 20
        };
        for (open, close) in [("[", "]"), ("{a = ", "}"), ("[{a = ", "}]")] {
            let text = format!("x = {}1{}", open.repeat(200_000), close.repeat(200_000));
            let parsed = std::thread::Builder::new()
                .stack_size(stack)
                .spawn(move || Manifest::parse(Path::new("/m/rawalite.toml"), &text).map(|_| ()))
                .unwrap()
                .join()
                .unwrap();
            // toml stops at its own depth limit ("max recursion depth met").
            let e = parsed.unwrap_err();
            assert!(e.to_string().contains("rawalite.toml:1: "), "{e}");
        }
    }
    use proptest::prelude::*;

    /// One `[[guest]]` with the values a test will look for.
    #[derive(Debug, Clone)]
    struct Guest {
        name: String,
        route: String,
        memory_mib: u64,
        timeout_ms: u64,
        read: Vec<String>,
        quota_kib: u64,
        login: bool,
    }

    fn guest() -> impl Strategy<Value = Guest> {
        (
            "[a-z][a-z0-9_-]{0,10}",
            "/[a-z0-9]{1,8}",
            1u64..=4096,
            1u64..=600_000,
            prop::collection::vec("[a-z_]{1,10}", 0..4),
            1u64..1_000_000,
            any::<bool>(),
        )
            .prop_map(
                |(name, route, memory_mib, timeout_ms, read, quota_kib, login)| Guest {
                    name,
                    route,
                    memory_mib,
                    timeout_ms,
                    read,
                    quota_kib,
                    login,
                },
            )
    }

    fn text(guests: &[Guest]) -> String {
        let mut text = String::from("[app]\nname = \"t\"\n[paths]\nfiles = \"files\"\n");
        for g in guests {
            text += &format!(
                "[[guest]]\nname = \"{}\"\ncomponent = \"g.wasm\"\nroute = \"{}\"\n[guest.limits]\nmemory = \"{} MiB\"\ntimeout_ms = {}\n[guest.db]\nread = {:?}\n[guest.paths]\nfiles = {{ access = \"read-write\", quota = \"{} KiB\" }}\n[guest.session]\nlogin = {}\n",
                g.name, g.route, g.memory_mib, g.timeout_ms, g.read, g.quota_kib, g.login
            );
        }
        text
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A manifest made of valid parts reads back exactly what it says
        /// (or, for repeated names or routes, is refused naming the key).
        #[test]
        fn valid_manifests_read_back(guests in prop::collection::vec(guest(), 1..4)) {
            match parse(&text(&guests)) {
                Ok(m) => {
                    for (g, entry) in guests.iter().zip(&m.guests) {
                        prop_assert_eq!(&entry.name, &g.name);
                        prop_assert_eq!(entry.route.as_deref(), Some(g.route.as_str()));
                        prop_assert_eq!(entry.limits.memory, g.memory_mib << 20);
                        prop_assert_eq!(entry.limits.timeout, Duration::from_millis(g.timeout_ms));
                        prop_assert!(entry.limits.db_bytes <= entry.limits.memory);
                        let read: Vec<&str> = entry.db.as_ref().unwrap().readable().into_iter().collect();
                        let mut want: Vec<&str> = g.read.iter().map(String::as_str).collect();
                        want.sort();
                        want.dedup();
                        prop_assert_eq!(read, want);
                        prop_assert_eq!(entry.paths["files"].quota(), g.quota_kib << 10);
                        prop_assert_eq!(entry.session.login, g.login);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(
                        message.contains("another guest has this name")
                            || message.contains("already has the route")
                            || message.contains("belongs to the host"),
                        "{}", message
                    );
                }
            }
        }

        /// Anything at all is read without a panic; a refusal names the file.
        #[test]
        fn any_text_is_refused_cleanly(junk in ".{0,200}", keep in 0usize..400) {
            let base = text(&[Guest {
                name: "a".into(),
                route: "/a".into(),
                memory_mib: 64,
                timeout_ms: 1000,
                read: vec![],
                quota_kib: 1,
                login: false,
            }]);
            // A valid manifest with junk spliced in somewhere.
            let at = base.char_indices().map(|(i, _)| i).nth(keep % base.len()).unwrap_or(0);
            let spliced = format!("{}{junk}{}", &base[..at], &base[at..]);
            if let Err(e) = parse(&spliced) {
                prop_assert!(e.to_string().starts_with("/app/rawalite.toml"), "{}", e);
            }
        }
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("/app/rawalite.toml"), text)
    }

    const MINIMAL: &str = "[app]\nname = \"t\"\n";

    #[test]
    fn paths_are_relative_to_the_manifest() {
        let m = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"hello\"\ncomponent = \"guests/hello.wasm\"\nroute = \"/hello\"\n"
        ))
        .unwrap();
        assert_eq!(m.data_dir, Path::new("/app/data"));
        assert_eq!(m.guests[0].component, Path::new("/app/guests/hello.wasm"));
        assert_eq!(m.guests[0].limits, Limits::default());
    }

    #[test]
    fn browser_grants_name_static_files_and_other_guests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        std::fs::write(dir.path().join("static/app.js"), "").unwrap();
        let manifest = |browser: &str| {
            Manifest::parse(
                &dir.path().join("rawalite.toml"),
                &format!(
                    "[app]\nname = \"t\"\nstatic = \"static\"\n\
                     [[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.browser]\n{browser}\n\
                     [[guest]]\nname = \"b\"\ncomponent = \"b.wasm\"\n"
                ),
            )
        };
        let m = manifest("scripts = [\"/static/app.js\"]\naccept_from = [\"b\"]").unwrap();
        assert_eq!(m.guests[0].browser.scripts, ["/static/app.js"]);
        assert_eq!(m.guests[0].browser.accept_from, ["b"]);
        assert_eq!(
            m.guests[1].browser,
            BrowserGrant::default(),
            "nothing by default"
        );
        for (bad, why) in [
            (
                "scripts = [\"/a/app.js\"]",
                "a file the host serves from /static/",
            ),
            (
                "scripts = [\"/static/missing.js\"]",
                "is not a file of the static directory",
            ),
            ("scripts = [\"/static/../x.js\"]", "a plain path"),
            ("scripts = [\"/static/a.js; script-src *\"]", "a plain path"),
            ("accept_from = [\"c\"]", "`c` is not another guest"),
            ("accept_from = [\"a\"]", "`a` is not another guest"),
            ("frames = true", "unknown field"),
        ] {
            let e = manifest(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("browser"), "{bad}: {e}");
        }
    }

    #[test]
    fn limits_are_parsed_with_units() {
        let m = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\n[guest.limits]\nmemory = \"256 MiB\"\ntimeout_ms = 250\nresponse = \"1 MiB\"\n"
        ))
        .unwrap();
        let limits = m.guests[0].limits;
        assert_eq!(limits.memory, 256 << 20);
        assert_eq!(limits.timeout, Duration::from_millis(250));
        assert_eq!(limits.response_bytes, 1 << 20);
        assert_eq!(limits.db_bytes, 16 << 20);
    }

    #[test]
    fn db_limits_follow_memory_unless_given() {
        let guest = |limits: &str| {
            parse(&format!(
                "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\n[guest.limits]\n{limits}\n"
            ))
            .map(|m| m.guests[0].limits)
        };
        assert_eq!(guest("memory = \"8 MiB\"").unwrap().db_bytes, 4 << 20);
        let l = guest("db_rows = 50\ndb_bytes = \"2 MiB\"").unwrap();
        assert_eq!((l.db_rows, l.db_bytes), (50, 2 << 20));
        let e = guest("memory = \"8 MiB\"\ndb_bytes = \"32 MiB\"").unwrap_err();
        assert!(e.to_string().contains("db_bytes must be between"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\nrout = \"/p\"\n"
        ))
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("/app/rawalite.toml:6: "), "{text}");
        assert!(text.contains("rout"), "{text}");
    }

    #[test]
    fn bad_size_names_the_key() {
        let e = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"p\"\ncomponent = \"p.wasm\"\n[guest.limits]\nmemory = \"lots\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("guest[0].limits.memory"), "{e}");
    }

    #[test]
    fn duplicate_names_and_routes_are_refused() {
        let g = "[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroute = \"/a\"\n";
        let e = parse(&format!("{MINIMAL}{g}{g}")).unwrap_err();
        assert!(e.to_string().contains("another guest has this name"), "{e}");
        let e = parse(&format!(
            "{MINIMAL}{g}[[guest]]\nname = \"b\"\ncomponent = \"b.wasm\"\nroute = \"/a\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("already has the route"), "{e}");
    }

    #[test]
    fn bad_route_is_refused() {
        for route in ["customers", "/customers/", "/a b", "/x?y"] {
            let e = parse(&format!(
                "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroute = \"{route}\"\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains("route"), "{route}: {e}");
        }
    }

    #[test]
    fn db_grant_is_parsed_and_host_tables_refused() {
        let m = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.db]\nread = [\"Customers\"]\nwrite = [\"invoices\"]\n"
        ))
        .unwrap();
        let grant = m.guests[0].db.as_ref().unwrap();
        assert_eq!(
            grant.readable().into_iter().collect::<Vec<_>>(),
            ["customers", "invoices"]
        );
        let e = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.db]\nread = [\"users\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("guest[0] (a).db: `users` belongs to the host"),
            "{e}"
        );
        let e = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.db]\nreed = [\"x\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("guest[0].db.reed: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn paths_grants_name_known_roots_with_a_quota() {
        let roots = "[paths]\nexports = \"exports\"\narchive = \"/srv/archive\"\n";
        let m = parse(&format!(
            "{MINIMAL}{roots}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.paths]\nexports = {{ access = \"read-write\", quota = \"50 MiB\" }}\narchive = {{ access = \"read-only\" }}\n"
        ))
        .unwrap();
        assert_eq!(m.roots["archive"], Path::new("/srv/archive"));
        assert_eq!(m.guests[0].paths["exports"].quota(), 50 << 20);
        for (grant, needle) in [
            (
                "nope = { access = \"read-only\" }",
                "there is no root `nope` in [paths] (roots: archive, exports)",
            ),
            ("exports = { access = \"read-write\" }", "needs a quota"),
            (
                "exports = { access = \"read-only\", quota = \"1 MiB\" }",
                "takes no quota",
            ),
            ("exports = { access = \"write-only\" }", "unknown variant"),
        ] {
            let e = parse(&format!(
                "{MINIMAL}{roots}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[guest.paths]\n{grant}\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains(needle), "{grant}: {e}");
        }
    }

    #[test]
    fn hosts_and_trusted_proxies_are_checked() {
        let m = parse(
            "[app]\nname = \"t\"\nhosts = [\"app.example\", \"app.example:8443\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        assert_eq!(m.hosts, ["app.example", "app.example:8443"]);
        assert!(m.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
        assert!(m.trusted_proxies[1].contains("::1".parse().unwrap()));
        assert!(!m.trusted_proxies[0].contains("11.0.0.1".parse().unwrap()));
        for (app, needle) in [
            ("hosts = [\"evil example\"]", "app.hosts"),
            ("hosts = [\"a.example:99999\"]", "not a port"),
            ("trusted_proxies = [\"10.0.0.0/33\"]", "trusted_proxies"),
        ] {
            let e = parse(&format!("[app]\nname = \"t\"\n{app}\n")).unwrap_err();
            assert!(e.to_string().contains(needle), "{app}: {e}");
        }
    }

    #[test]
    fn missing_guest_lists_the_others() {
        let m = parse(&format!(
            "{MINIMAL}[[guest]]\nname = \"a\"\ncomponent = \"a.wasm\"\n"
        ))
        .unwrap();
        let e = m.guest("b").unwrap_err();
        assert!(
            e.to_string().contains("no guest named `b` (guests: a)"),
            "{e}"
        );
    }

    #[test]
    fn backup_intervals_read_with_their_unit() {
        use std::time::Duration;
        assert_eq!("90s".parse::<Every>(), Ok(Every(Duration::from_secs(90))));
        assert_eq!(
            "6h".parse::<Every>(),
            Ok(Every(Duration::from_secs(6 * 3600)))
        );
        assert_eq!(
            "1d".parse::<Every>(),
            Ok(Every(Duration::from_secs(86_400)))
        );
        for bad in [
            "",
            "h",
            "6",
            "6 hours",
            "-1h",
            "0s",
            "400d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<Every>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_interval_text_parses_or_says_why(text in ".{0,24}") {
            if let Ok(Every(d)) = text.parse::<Every>() {
                proptest::prop_assert!(d.as_secs() > 0 && d.as_secs() <= 366 * 86_400);
            }
        }

        #[test]
        fn written_intervals_read_back(n in 1u64..1000, unit in proptest::sample::select(vec![("s", 1u64), ("m", 60), ("h", 3600)])) {
            let every: Every = format!("{n}{}", unit.0).parse().unwrap();
            proptest::prop_assert_eq!(every.0.as_secs(), n * unit.1);
        }
    }
}
