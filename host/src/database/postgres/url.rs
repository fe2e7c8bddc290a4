//! A PostgreSQL URL (`postgres://user:password@host:port/db`, or with
//! `?host=/socket/dir`), shown and logged only without its password.

use anyhow::{Result, anyhow};
use std::fmt;
use std::str::FromStr;
use tokio_postgres::Config;

#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
    /// The URL as given, its password replaced.
    shown: String,
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self> {
        super::check_scheme(text)?;
        let config = Config::from_str(text)
            .map_err(|e| anyhow!("`{}` is not a PostgreSQL URL: {e}", redact(text)))?;
        if config.get_dbname().is_none() {
            return Err(anyhow!(
                "`{}` names no database: add /DBNAME to it",
                redact(text)
            ));
        }
        Ok(DatabaseUrl {
            config,
            shown: redact(text),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
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

/// `text` with the password of its user info (`user:password@`) and of a
/// `password=` parameter replaced by `***`.
pub fn redact(text: &str) -> String {
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

    proptest! {
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
