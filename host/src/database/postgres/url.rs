//! A PostgreSQL URL (`postgres://user:password@host:port/db`, or with
//! `?host=/socket/dir`), shown and logged only without its password. Its
//! TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) are
//! libpq's and read here (`tls.rs`); tokio-postgres knows only some.
//! `pgbouncer=true` says a pooler in transaction mode is in front (as
//! Prisma's URLs say it): nothing that outlives a transaction is left on
//! a connection (no named statement, no startup option).

use super::tls::{Params, Tls};
use anyhow::{Context, Result, anyhow, bail};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::Config;

/// How long a connection may take to open, unless the URL says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
    tls: Tls,
    pooled: bool,
    /// The URL as given, its password replaced.
    shown: String,
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self> {
        super::check_scheme(text)?;
        let (rest, params, pooled, given) = split_ours(text);
        let pooled = match pooled.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(anyhow!(
                    "`{}`: pgbouncer={other} is not true or false",
                    redact(text)
                ));
            }
        };
        let mut config = Config::from_str(&rest)
            .map_err(|e| anyhow!("`{}` is not a PostgreSQL URL: {e}", redact(text)))?;
        if config.get_dbname().is_none() {
            return Err(anyhow!(
                "`{}` names no database: add /DBNAME to it",
                redact(text)
            ));
        }
        let tls = Tls::new(&params, config.get_hosts()).with_context(|| redact(text))?;
        config.ssl_mode(tls.mode.ssl_mode());
        if !given.contains(&"connect_timeout") {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A host gone without a word (a cut cable, a paused VM) is noticed
        // in a minute, not in the kernel's two hours.
        if !given.contains(&"keepalives_idle") {
            config.keepalives_idle(Duration::from_secs(30));
        }
        if !given.contains(&"keepalives_interval") {
            config.keepalives_interval(Duration::from_secs(10));
        }
        if !given.contains(&"keepalives_retries") {
            config.keepalives_retries(3);
        }
        Ok(DatabaseUrl {
            config,
            tls,
            pooled,
            shown: redact(text),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How its connections do TLS.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Whether a pooler in transaction mode is in front (`pgbouncer=true`).
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// This URL, unless it goes through a pooler: for what holds a session
    /// lock (`migrate`), which a pooler in transaction mode does not keep.
    pub fn direct(&self) -> Result<&Self> {
        if self.pooled {
            bail!(
                "migrate needs a direct connection to PostgreSQL: its lock is held for the whole session, \
                 which a pooler in transaction mode does not keep. Run it with the server's own address \
                 (a URL without pgbouncer=true)"
            );
        }
        Ok(self)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// This URL with database `name` instead (its role, server and TLS).
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.clone();
        url.config.dbname(name);
        url.shown = match self.shown.split_once('?') {
            Some((head, query)) => format!(
                "{}/{name}?{query}",
                head.rsplit_once('/').map_or(head, |(h, _)| h)
            ),
            None => format!(
                "{}/{name}",
                self.shown
                    .rsplit_once('/')
                    .map_or(self.shown.as_str(), |(h, _)| h)
            ),
        };
        url
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.shown)
    }
}

/// `text` without the parameters this module reads, the TLS ones, the
/// pooler's, and the names of every parameter it has.
fn split_ours(text: &str) -> (String, Params, Option<String>, Vec<&str>) {
    let Some((base, query)) = text.split_once('?') else {
        return (text.to_owned(), Params::default(), None, Vec::new());
    };
    let mut params = Params::default();
    let mut pooled = None;
    let mut kept = Vec::new();
    let mut given = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        given.push(key);
        let slot = match key {
            "sslmode" => &mut params.mode,
            "sslrootcert" => &mut params.root,
            "sslcert" => &mut params.cert,
            "sslkey" => &mut params.key,
            "pgbouncer" => &mut pooled,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        *slot = Some(percent_decoded(value));
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, params, pooled, given)
}

/// `%XX` decoded, as libpq reads a URL's values (`+` is itself).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = value.get(i + 1..i + 3).filter(|_| bytes[i] == b'%');
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with the password of its user info (`user:password@`) and of a
/// `password=` parameter replaced by `***`.
pub(super) fn redact(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let (authority_end, _) = rest
        .char_indices()
        .find(|(_, c)| matches!(c, '/' | '?'))
        .unwrap_or((rest.len(), ' '));
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail: Vec<String> = tail
        .split('&')
        .map(|part| match part.split_once("password=") {
            Some((head, _)) => format!("{head}password=***"),
            None => part.to_owned(),
        })
        .collect();
    let prefix = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{prefix}{authority}{}", tail.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn passwords_are_never_shown() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db.example:5432/rawalite",
                "postgres://app:***@db.example:5432/rawalite",
            ),
            (
                "postgres://app@db.example/rawalite",
                "postgres://app@db.example/rawalite",
            ),
            (
                "postgresql://u:p%40ss@h/d?sslmode=disable&password=x",
                "postgresql://u:***@h/d?sslmode=disable&password=***",
            ),
            (
                "postgres://postgres@/t?host=/tmp/pg",
                "postgres://postgres@/t?host=/tmp/pg",
            ),
        ] {
            assert_eq!(redact(url), shown);
        }
        let url = DatabaseUrl::parse("postgres://app:s3cret@localhost/rawalite").unwrap();
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert_eq!(url.database(), "rawalite");
        let e = DatabaseUrl::parse("postgres://app:s3cret@localhost:notaport/x").unwrap_err();
        assert!(!format!("{e:#}").contains("s3cret"), "{e:#}");
        assert!(DatabaseUrl::parse("mysql://a@b/c").is_err());
        assert!(
            DatabaseUrl::parse("postgres://a@b")
                .unwrap_err()
                .to_string()
                .contains("names no database")
        );
    }

    #[test]
    fn tls_parameters_are_taken_out_and_decoded() {
        let (rest, params, pooled, given) = split_ours(
            "postgres://u@db/app?sslmode=verify-full&host=/x&sslrootcert=%2Fetc%2Fca+1.pem&options=-c%20a%3Db&pgbouncer=true",
        );
        assert_eq!(pooled.as_deref(), Some("true"));
        assert_eq!(rest, "postgres://u@db/app?host=/x&options=-c%20a%3Db");
        assert_eq!(params.mode.as_deref(), Some("verify-full"));
        assert_eq!(params.root.as_deref(), Some("/etc/ca+1.pem"));
        assert_eq!(
            given,
            ["sslmode", "host", "sslrootcert", "options", "pgbouncer"]
        );
        assert!(
            DatabaseUrl::parse("postgres://u@localhost/app?pgbouncer=true")
                .unwrap()
                .pooled()
        );
        assert!(DatabaseUrl::parse("postgres://u@localhost/app?pgbouncer=yes").is_err());
        let url = DatabaseUrl::parse("postgres://u@localhost/app?sslmode=disable").unwrap();
        assert_eq!(url.tls().mode, super::super::tls::Mode::Disable);
        let e = DatabaseUrl::parse("postgres://u:secret@db/app?sslmode=sometimes").unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("sslmode=sometimes") && !e.contains("secret"),
            "{e}"
        );
    }

    proptest! {
        /// Whatever else the query holds stays as it was, in its order.
        #[test]
        fn other_parameters_pass_through(
            keys in prop::collection::vec("[a-z_]{1,12}", 0..6),
            values in prop::collection::vec("[a-zA-Z0-9%/.+-]{0,12}", 6),
            mode in prop::sample::select(vec!["disable", "prefer", "require"]),
        ) {
            let others: Vec<String> = keys
                .iter()
                .filter(|k| !k.starts_with("ssl") && k.as_str() != "pgbouncer")
                .zip(&values)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let mut all = others.clone();
            all.insert(all.len() / 2, format!("sslmode={mode}"));
            let (rest, params, _, _) = split_ours(&format!("postgres://u@h/d?{}", all.join("&")));
            let expected = if others.is_empty() {
                "postgres://u@h/d".to_owned()
            } else {
                format!("postgres://u@h/d?{}", others.join("&"))
            };
            prop_assert_eq!(rest, expected);
            prop_assert_eq!(params.mode.as_deref(), Some(mode));
        }

        /// Percent-decoding never panics, and reverses percent-encoding.
        #[test]
        fn percent_decoding_reverses_encoding(text in "\\PC{0,24}") {
            let encoded: String = text
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect();
            prop_assert_eq!(percent_decoded(&encoded), text.clone());
            let _ = percent_decoded(&text);
        }

        /// Whatever the password holds, it never appears in what is shown.
        #[test]
        fn no_password_survives_redaction(password in "[a-zA-Z0-9!$%^*()_+=.~-]{8,20}", user in "[a-z]{1,8}") {
            let url = format!("postgres://{user}:{password}@host/db");
            prop_assert!(!redact(&url).contains(&password));
            let url = format!("postgres://{user}@host/db?password={password}");
            prop_assert!(!redact(&url).contains(&password));
        }
    }
}
