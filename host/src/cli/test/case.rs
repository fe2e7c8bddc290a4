//! The case files of `rawalite test`: `tests/*.toml` (but `Cargo.toml`), each a list of
//! `[[case]]` tables (the format is in docs/TESTING.md). Read strictly: an
//! unknown key is an error with its line, so a typo never passes silently
//! as an expectation that checks nothing.

use anyhow::{Context, Result, bail};
use rawalite_host::capabilities::db::Value;
use rawalite_host::manifest::{GuestEntry, Manifest, route_matches};
use rawalite_host::runtime::Pinned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default, rename = "case")]
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    guest: Option<String>,
    method: Option<String>,
    #[serde(default = "root")]
    path: String,
    #[serde(default)]
    query: BTreeMap<String, String>,
    form: Option<BTreeMap<String, String>>,
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    user: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    users: Vec<UserFixture>,
    clock: Option<toml::value::Datetime>,
    seed: Option<u64>,
    #[serde(default)]
    rows: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    expect: Expect,
}

/// A user in the case's database who is not signed in (for a sign-in
/// page's cases): with a password, roles and a display name.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct UserFixture {
    pub(super) name: String,
    pub(super) password: Option<String>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    pub(super) display_name: Option<String>,
}

fn root() -> String {
    "/".to_owned()
}

/// What a case expects; every key is optional, and each one given is checked.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Expect {
    pub(super) status: Option<u16>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) contains: Vec<String>,
    #[serde(default)]
    pub(super) not_contains: Vec<String>,
    /// JSON Pointer (`/items/0/name`) → the value there.
    #[serde(default)]
    pub(super) json: BTreeMap<String, toml::Value>,
    /// A file under `tests/snapshots/` the body must equal.
    pub(super) snapshot: Option<String>,
    /// `CAPABILITY.OP [TARGET]`: calls that must have been made and
    /// succeeded.
    #[serde(default)]
    pub(super) calls: Vec<CallPattern>,
    /// Calls that must have been made and denied. A denial not listed
    /// here fails the case.
    #[serde(default)]
    pub(super) denied: Vec<CallPattern>,
    /// The guest answers with `types.error` of this code.
    pub(super) error: Option<String>,
    /// The host stops the guest for this cause (`deadline`, `memory`,
    /// `panic`, `trap`, `refused`, `response_size`).
    pub(super) stopped: Option<String>,
}

/// `db.query customers`, `paths.write files`, `session.login ada`: a
/// capability, an operation, and optionally what it touched (a table, a
/// root or `root/path`, a username).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CallPattern {
    pub(super) capability: String,
    pub(super) op: String,
    pub(super) target: Option<String>,
}

impl<'de> Deserialize<'de> for CallPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CallPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl CallPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let call = words.next().unwrap_or("");
        let target = words.next().map(str::to_owned);
        let shape = || {
            format!(
                "`{text}` is not a call: write `CAPABILITY.OP [TARGET]`, e.g. `db.query customers`"
            )
        };
        if words.next().is_some() {
            return Err(shape());
        }
        let (capability, op) = call.split_once('.').ok_or_else(shape)?;
        if !matches!(capability, "db" | "paths" | "session") {
            return Err(format!(
                "`{text}`: there is no capability `{capability}` (db, paths, session)"
            ));
        }
        if op.is_empty() {
            return Err(shape());
        }
        Ok(CallPattern {
            capability: capability.to_owned(),
            op: op.to_owned(),
            target,
        })
    }
}

impl std::fmt::Display for CallPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.capability, self.op)?;
        match &self.target {
            Some(target) => write!(f, " {target}"),
            None => Ok(()),
        }
    }
}

/// A fixture row: each column given and its value.
pub(super) type Row = Vec<(String, Value)>;

/// One case, checked against the manifest and ready to run.
pub(super) struct Case {
    /// `greeter.toml: greets a visitor`.
    pub(super) id: String,
    pub(super) guest: GuestEntry,
    pub(super) method: String,
    /// The path as a browser asks for it, and its route removed (what the
    /// guest sees).
    pub(super) base: String,
    pub(super) path: String,
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) user: Option<String>,
    pub(super) roles: Vec<String>,
    pub(super) users: Vec<UserFixture>,
    pub(super) pinned: Option<Pinned>,
    /// Table → rows.
    pub(super) rows: Vec<(String, Vec<Row>)>,
    /// Root name, path in it, contents.
    pub(super) files: Vec<(String, PathBuf, String)>,
    pub(super) expect: Expect,
}

/// A case that could not be made ready: its id and why, reported as a
/// failed case so the others still run.
pub(super) struct Broken {
    pub(super) id: String,
    pub(super) why: String,
}

/// The cases of every `*.toml` in `dir` but `Cargo.toml` (a Rust crate of
/// tests may live there too), in file then case order; a case
/// whose guest, route or file is wrong comes back [`Broken`]. A file that
/// is not valid TOML, or not in the format, is an error.
pub(super) fn load(dir: &Path, manifest: &Manifest) -> Result<Vec<Result<Case, Broken>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml") && path.is_file())
        .filter(|path| path.file_name().is_some_and(|name| name != "Cargo.toml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed: CaseFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let stem = file.file_name().unwrap_or_default().to_string_lossy();
        let mut names = std::collections::HashSet::new();
        for raw in parsed.cases {
            let id = format!("{stem}: {}", raw.name);
            if !names.insert(raw.name.clone()) {
                bail!("{}: two cases are named `{}`", file.display(), raw.name);
            }
            cases.push(ready(raw, manifest).map_err(|e| Broken {
                id: id.clone(),
                why: format!("{e:#}"),
            }));
            if let Some(Ok(case)) = cases.last_mut() {
                case.id = id;
            }
        }
    }
    Ok(cases)
}

/// The guest that answers `path` (the one named, which must hold it), and
/// the path with that guest's route removed.
fn route<'m>(
    manifest: &'m Manifest,
    guest: Option<&str>,
    path: &str,
) -> Result<(&'m GuestEntry, String, String)> {
    let entry = match guest {
        Some(name) => manifest.guest(name)?,
        None => manifest.guest_for_path(path).with_context(|| {
            let routes: Vec<String> = manifest
                .guests
                .iter()
                .filter_map(|g| Some(format!("{} → {}", g.route.as_deref()?, g.name)))
                .collect();
            format!(
                "no guest's route holds `{path}` (routes: {}); give a path under one, or `guest = \"NAME\"`",
                if routes.is_empty() { "none".to_owned() } else { routes.join(", ") }
            )
        })?,
    };
    let Some(route) = entry.route.as_deref() else {
        return Ok((entry, String::new(), path.to_owned()));
    };
    if !route_matches(route, path) {
        bail!(
            "`{path}` is not under guest `{}`'s route `{route}`: the path is the whole path a browser asks for",
            entry.name
        );
    }
    if route == "/" {
        return Ok((entry, String::new(), path.to_owned()));
    }
    let rest = &path[route.len()..];
    let rest = if rest.is_empty() { "/" } else { rest };
    Ok((entry, route.to_owned(), rest.to_owned()))
}

fn ready(raw: RawCase, manifest: &Manifest) -> Result<Case> {
    let (path, inline_query) = raw.path.split_once('?').unwrap_or((&raw.path, ""));
    if !path.starts_with('/') {
        bail!("path `{path}` must start with `/`");
    }
    let (entry, base, rest) = route(manifest, raw.guest.as_deref(), path)?;
    let mut query: Vec<(String, String)> = form_urlencoded::parse(inline_query.as_bytes())
        .into_owned()
        .collect();
    query.extend(raw.query);
    let mut headers: Vec<(String, String)> = raw
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    let body = match (raw.form, raw.body) {
        (Some(_), Some(_)) => bail!("give `form` or `body`, not both"),
        (Some(form), None) => {
            if !headers.iter().any(|(name, _)| name == "content-type") {
                headers.push((
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
            }
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish()
                .into_bytes()
        }
        (None, Some(body)) => body.into_bytes(),
        (None, None) => Vec::new(),
    };
    let method = raw
        .method
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.into())
        .to_ascii_uppercase();
    if raw.user.is_none() && !raw.roles.is_empty() {
        bail!("`roles` needs `user`: the roles are the signed-in user's");
    }
    let pinned = (raw.clock.is_some() || raw.seed.is_some()).then_some(Pinned {
        now_micros: raw.clock.map(micros).transpose()?,
        seed: raw.seed,
    });
    let rows = raw
        .rows
        .into_iter()
        .map(|(table, rows)| {
            let rows = rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|(column, value)| {
                            let value = value_of(value)
                                .with_context(|| format!("rows of `{table}`, column `{column}`"))?;
                            Ok((column, value))
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((table, rows))
        })
        .collect::<Result<Vec<_>>>()?;
    let files = raw
        .files
        .into_iter()
        .map(|(place, text)| {
            let (root, file) = place.split_once('/').with_context(|| {
                format!("files: `{place}` must be ROOT/PATH, a root of [paths] and a path in it")
            })?;
            if !manifest.roots.contains_key(root) {
                bail!(
                    "files: `{place}`: there is no root `{root}` in [paths] (roots: {})",
                    manifest
                        .roots
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let file = PathBuf::from(file);
            if !file
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                bail!(
                    "files: `{place}`: the path must stay inside its root (no `..`, not absolute)"
                );
            }
            Ok((root.to_owned(), file, text))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Case {
        id: String::new(),
        guest: entry.clone(),
        method,
        base,
        path: rest,
        query,
        headers,
        body,
        user: raw.user,
        roles: raw.roles,
        users: raw.users,
        pinned,
        rows,
        files,
        expect: raw.expect,
    })
}

/// A TOML value as a column's: text, integer, real, a boolean as 0 or 1,
/// a date or time as its RFC 3339 text.
fn value_of(value: toml::Value) -> Result<Value> {
    Ok(match value {
        toml::Value::String(s) => Value::Text(s),
        toml::Value::Integer(i) => Value::Integer(i),
        toml::Value::Float(f) => Value::Real(f),
        toml::Value::Boolean(b) => Value::Integer(i64::from(b)),
        toml::Value::Datetime(d) => Value::Text(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            bail!("a column holds text, a number or a boolean; put JSON in a string")
        }
    })
}

/// `clock = 2026-01-02T03:04:05Z` as microseconds since the Unix epoch.
fn micros(clock: toml::value::Datetime) -> Result<u64> {
    use toml::value::Offset;
    let (Some(date), Some(time), Some(offset)) = (clock.date, clock.time, clock.offset) else {
        bail!("clock = {clock}: give a date, a time and an offset, e.g. 2026-01-02T03:04:05Z");
    };
    let days = rawalite_host::utc::days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let offset_minutes = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    let secs = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let micros = secs * 1_000_000 + i64::from(time.nanosecond / 1000);
    u64::try_from(micros).map_err(|_| anyhow::anyhow!("clock = {clock}: before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_patterns_parse_and_refuse_what_is_not_one() {
        let p = CallPattern::parse("db.query customers").unwrap();
        assert_eq!((p.capability.as_str(), p.op.as_str()), ("db", "query"));
        assert_eq!(p.target.as_deref(), Some("customers"));
        assert_eq!(CallPattern::parse("session.current").unwrap().target, None);
        for bad in ["db", "net.get x", "db. x", "db.query a b", ""] {
            assert!(CallPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(p.to_string(), "db.query customers");
    }

    proptest::proptest! {
        /// Any text parses or is refused, never panics; what parses prints
        /// back as itself (spaces aside).
        #[test]
        fn call_patterns_never_panic_and_print_back(text in "\\PC{0,40}") {
            if let Ok(pattern) = CallPattern::parse(&text) {
                let again = CallPattern::parse(&pattern.to_string()).unwrap();
                proptest::prop_assert_eq!(again, pattern);
            }
        }

        /// A well-formed pattern keeps its three parts.
        #[test]
        fn well_formed_patterns_keep_their_parts(
            capability in "db|paths|session",
            op in "[a-z-]{1,12}",
            target in proptest::option::of("[a-z_/.]{1,20}"),
        ) {
            let text = match &target {
                Some(t) => format!("{capability}.{op} {t}"),
                None => format!("{capability}.{op}"),
            };
            let pattern = CallPattern::parse(&text).unwrap();
            proptest::prop_assert_eq!(
                (pattern.capability, pattern.op, pattern.target),
                (capability, op, target)
            );
        }

        /// Every valid instant since 1970 reads back through the calendar.
        #[test]
        fn clocks_read_back_through_the_calendar(secs in 0i64..8_000_000_000, offset in -1439i16..1440) {
            let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let date = rawalite_host::utc::date(days);
            let text = format!(
                "{date}T{:02}:{:02}:{:02}{}",
                rest / 3600, rest % 3600 / 60, rest % 60,
                if offset == 0 { "Z".to_owned() } else {
                    format!("{}{:02}:{:02}", if offset < 0 { '-' } else { '+' }, offset.abs() / 60, offset.abs() % 60)
                }
            );
            let read = micros(text.parse().unwrap());
            let want = secs - i64::from(offset) * 60;
            if want >= 0 {
                proptest::prop_assert_eq!(read.unwrap(), want as u64 * 1_000_000);
            } else {
                proptest::prop_assert!(read.is_err());
            }
        }
    }

    #[test]
    fn a_clock_is_read_in_utc() {
        let at = |text: &str| micros(text.parse().unwrap());
        assert_eq!(at("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(at("2026-01-02T03:04:05.5Z").unwrap(), 1_767_323_045_500_000);
        assert_eq!(
            at("2026-01-02T05:04:05+02:00").unwrap(),
            1_767_323_045_000_000
        );
        assert!(at("2026-01-02").is_err());
        assert!(at("1969-12-31T23:59:59Z").is_err());
    }
}
