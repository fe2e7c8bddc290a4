//! Throwaway databases for `rawalite test --database`: one per case, made
//! on the server of a URL, migrated with the manifest's guests and grants
//! as `rawalite migrate` does, and dropped with its roles when done, so
//! cases on PostgreSQL start as empty as on SQLite and run side by side.

use super::provision::{group_role, guest_role};
use super::{DatabaseUrl, Postgres};
use crate::capabilities::db::DbGrant;
use crate::database::quoted;
use anyhow::{Context, Result};
use std::sync::Arc;

/// A database that is dropped, with its guests' roles, when this is.
pub struct Scratch {
    server: Arc<Postgres>,
    url: DatabaseUrl,
    guests: Vec<String>,
}

impl Scratch {
    /// Database `<server's database>_t<pid>_<n>` on `server`, migrated for
    /// `guests`.
    pub fn create(
        server: &Arc<Postgres>,
        n: usize,
        guests: Vec<(String, DbGrant)>,
    ) -> Result<Self> {
        let name = format!("{}_t{}_{n}", server.url().database(), std::process::id());
        server
            .batch(&format!("CREATE DATABASE {}", quoted(&name)))
            .with_context(|| {
                format!(
                    "cannot create database `{name}` on {} (the URL's role needs CREATEDB)",
                    server.url()
                )
            })?;
        let scratch = Scratch {
            server: server.clone(),
            url: server.url().with_database(&name),
            guests: guests.iter().map(|(guest, _)| guest.clone()).collect(),
        };
        Postgres::connect(&scratch.url)?.migrate(guests)?;
        Ok(scratch)
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Each on its own: DROP DATABASE runs outside a transaction.
        let mut statements = vec![format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(self.url.database())
        )];
        for guest in &self.guests {
            statements.push(format!(
                "DROP ROLE IF EXISTS {}",
                quoted(&guest_role(&self.url, guest))
            ));
        }
        statements.push(format!(
            "DROP ROLE IF EXISTS {}",
            quoted(&group_role(&self.url))
        ));
        for statement in statements {
            if let Err(e) = self.server.batch(&statement) {
                tracing::warn!("{statement}: {e:#}");
            }
        }
    }
}
