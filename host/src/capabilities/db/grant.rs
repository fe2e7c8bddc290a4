//! `[guest.db]`: the tables a guest may read and write, parsed once. Each
//! backend enforces it on every statement: SQLite's authorizer
//! (`database/sqlite/guest/authorizer.rs`), and on PostgreSQL the host's check of the
//! statement and the guest's own role's privileges.

use serde::Deserialize;
use std::collections::BTreeSet;

/// The tables one guest may touch. Names are kept lower-case, as SQLite
/// compares them. `write` implies `read`: an UPDATE or DELETE reads the
/// rows it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbGrant {
    #[serde(default)]
    read: BTreeSet<String>,
    #[serde(default)]
    write: BTreeSet<String>,
}

impl DbGrant {
    pub fn new<'a>(
        read: impl IntoIterator<Item = &'a str>,
        write: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        DbGrant {
            read: read.into_iter().map(str::to_owned).collect(),
            write: write.into_iter().map(str::to_owned).collect(),
        }
        .normalized()
    }

    /// Lower-cases the names, so `Customers` and `customers` are one table.
    pub fn normalized(self) -> Self {
        let lower =
            |set: BTreeSet<String>| set.into_iter().map(|t| t.to_ascii_lowercase()).collect();
        DbGrant {
            read: lower(self.read),
            write: lower(self.write),
        }
    }

    /// Refuses names that are not plain identifiers and the host's tables.
    pub fn check(&self) -> Result<(), String> {
        for table in self.read.iter().chain(&self.write) {
            let plain = !table.is_empty()
                && table.len() <= 64
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !plain {
                return Err(format!("`{table}` is not a table name"));
            }
            if is_host_table(table) {
                return Err(format!(
                    "`{table}` belongs to the host and can never be granted"
                ));
            }
        }
        Ok(())
    }

    /// Every table the guest may read (its read and write grants).
    pub fn readable(&self) -> BTreeSet<&str> {
        self.read
            .iter()
            .chain(&self.write)
            .map(String::as_str)
            .collect()
    }

    /// Every table the guest may insert into, update and delete from.
    pub fn writable(&self) -> BTreeSet<&str> {
        self.write.iter().map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }

    pub(crate) fn may_read(&self, table: &str) -> bool {
        let table = table.to_ascii_lowercase();
        !is_host_table(&table) && (self.read.contains(&table) || self.write.contains(&table))
    }

    pub(crate) fn may_write(&self, table: &str) -> bool {
        let table = table.to_ascii_lowercase();
        !is_host_table(&table) && self.write.contains(&table)
    }
}

/// The message a guest gets for a table outside its grant, the same whether
/// the table exists or not.
pub(crate) fn not_granted(table: &str, write: bool) -> String {
    let (grant, key) = if write {
        ("db.write", "write")
    } else {
        ("db.read", "read")
    };
    format!(
        "table `{table}` is not in this guest's {grant} grant (`{key} = [...]` under [guest.db] in the manifest)"
    )
}

/// Tables that belong to the host. No grant may name them, whatever the
/// manifest says; names starting with `sqlite_` are SQLite's own.
const HOST_TABLES: &[&str] = &[
    "users",
    "sessions",
    "sign_in_limits",
    "refinery_schema_history",
];

/// Whether `table` belongs to the host (or to SQLite).
pub fn is_host_table(table: &str) -> bool {
    let table = table.to_ascii_lowercase();
    HOST_TABLES.contains(&table.as_str()) || table.starts_with("sqlite_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tables_include_sqlite_internals() {
        assert!(is_host_table("users"));
        assert!(is_host_table("SESSIONS"));
        assert!(is_host_table("sqlite_schema"));
        assert!(!is_host_table("customers"));
    }

    #[test]
    fn names_are_lower_cased_and_write_implies_read() {
        let g = DbGrant::new(["Customers"], ["invoices"]);
        assert!(g.may_read("CUSTOMERS"));
        assert!(g.may_read("invoices"));
        assert!(g.may_write("invoices"));
        assert!(!g.may_write("customers"));
    }

    #[test]
    fn host_tables_are_refused_even_when_listed() {
        let g = DbGrant::new(["users"], []);
        assert!(g.check().unwrap_err().contains("belongs to the host"));
        assert!(!g.may_read("users"));
        assert!(DbGrant::new(["sqlite_schema"], []).check().is_err());
        assert!(DbGrant::new(["a; drop"], []).check().is_err());
    }
}
