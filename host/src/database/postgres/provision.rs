//! The roles and privileges of an app's database: PUBLIC's defaults
//! revoked, and one LOGIN role per guest, `<database>_g_<guest>`, whose
//! privileges on schema `app` are exactly its `[guest.db]` grant. A role
//! of a guest the manifest no longer has loses every privilege and may no
//! longer log in.
//!
//! Credentials: with `RAWALITE_DATABASE_SECRET` set (the same on every
//! host), each guest role's password is HMAC-SHA256(secret, role name),
//! set by `migrate` and used by `serve`; without it, roles have no
//! password and the cluster must trust the host's connections (a local
//! socket in a throwaway cluster).

use super::DatabaseUrl;
use super::value::typed;
use crate::capabilities::db::DbGrant;
use crate::database::quoted;
use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use tokio_postgres::Client;

/// Functions PUBLIC may no longer execute in the app's database: ways to
/// change settings, wait, signal, lock outside a call, or keep data
/// outside every table. Revoking needs a superuser (or the functions'
/// owner); the host's own check refuses them in any case.
const REVOKED_FUNCTIONS: &[&str] = &[
    "set_config",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_notify",
    "pg_listening_channels",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_open",
    "lo_close",
    "loread",
    "lowrite",
    "lo_lseek",
    "lo_lseek64",
    "lo_tell",
    "lo_tell64",
    "lo_truncate",
    "lo_truncate64",
    "lo_creat",
    "lo_create",
    "lo_unlink",
    "lo_import",
    "lo_export",
    "lo_from_bytea",
    "lo_get",
    "lo_put",
];

/// The role of guest `guest` in the database of `url`.
pub(super) fn guest_role(url: &DatabaseUrl, guest: &str) -> String {
    format!("{}_g_{guest}", url.database())
}

/// The group every guest role belongs to (for `pg_hba.conf`: `+<group>`).
pub(super) fn group_role(url: &DatabaseUrl) -> String {
    format!("{}_guests", url.database())
}

/// The password of `role`, derived from `RAWALITE_DATABASE_SECRET`.
pub(super) fn role_password(role: &str) -> Option<String> {
    let secret = std::env::var("RAWALITE_DATABASE_SECRET").ok()?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(role.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

/// Brings roles and privileges in step with `guests`; returns notes on
/// what could not be done with this role's rights (and why it matters
/// little).
pub(super) async fn provision(
    client: &Client,
    url: &DatabaseUrl,
    guests: &[(String, DbGrant)],
) -> Result<Vec<String>> {
    let db = quoted(url.database());
    let mut notes = Vec::new();
    client
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
             REVOKE ALL ON SCHEMA public FROM PUBLIC; \
             REVOKE ALL ON SCHEMA app, host FROM PUBLIC;"
        ))
        .await
        .context("revoking PUBLIC's privileges on the database and its schemas")?;
    // Privileged revokes: each may fail without a superuser.
    let mut privileged = vec!["REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC".to_owned()];
    for row in client
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'pg_catalog' AND (p.proname = ANY($1) OR p.proname LIKE 'pg\\_advisory%' OR p.proname LIKE 'pg\\_try\\_advisory%')",
            &[&REVOKED_FUNCTIONS],
        )
        .await?
    {
        let function: String = row.get(0);
        privileged.push(format!("REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC"));
    }
    // The statistics views (and the functions under them) show live
    // counters of every table, the host's own included, and every
    // session's role and address. The first wall already refuses them to
    // guests; this is the second. Monitoring keeps them through
    // pg_read_all_stats, which pg_monitor has.
    for row in client
        .query(
            "SELECT c.oid::regclass::text, 'SELECT' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'pg_catalog' AND c.relkind = 'v' AND (c.relname LIKE 'pg\\_stat\\_%' OR c.relname LIKE 'pg\\_statio\\_%') \
             UNION ALL \
             SELECT 'FUNCTION ' || p.oid::regprocedure::text, 'EXECUTE' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'pg_catalog' AND p.proname LIKE 'pg\\_stat\\_get\\_%'",
            &[],
        )
        .await?
    {
        let (object, privilege): (String, String) = (row.get(0), row.get(1));
        privileged.push(format!(
            "REVOKE {privilege} ON {object} FROM PUBLIC; GRANT {privilege} ON {object} TO pg_read_all_stats"
        ));
    }
    let mut refused = 0;
    for statement in &privileged {
        if client.batch_execute(statement).await.is_err() {
            refused += 1;
        }
    }
    if refused > 0 {
        notes.push(format!(
            "{refused} of PUBLIC's privileges on functions and statistics views could not be revoked with this role (a superuser can); the host refuses them to guests itself"
        ));
    }
    let group = group_role(url);
    ensure_role(client, &group, false).await?;
    let tables = app_tables(client).await?;
    let mut current = Vec::new();
    for (guest, grant) in guests {
        let role = guest_role(url, guest);
        if role.len() > 63 {
            bail!(
                "the role name `{role}` is longer than PostgreSQL's 63 bytes: use a shorter database or guest name"
            );
        }
        for table in grant.readable() {
            if !tables.contains(&table.to_owned()) {
                bail!(
                    "guest `{guest}`: the db grant names `{table}`, which the database does not have"
                );
            }
        }
        ensure_role(client, &role, true).await?;
        let r = quoted(&role);
        if let Some(password) = role_password(&role) {
            client
                .batch_execute(&format!("ALTER ROLE {r} PASSWORD '{password}'"))
                .await?;
        }
        let mut sql = format!(
            "GRANT {} TO {r}; GRANT CONNECT ON DATABASE {db} TO {r}; GRANT USAGE ON SCHEMA app TO {r}; \
             REVOKE ALL ON ALL TABLES IN SCHEMA app FROM {r}; REVOKE ALL ON SCHEMA host FROM {r};",
            quoted(&group)
        );
        for table in grant.readable() {
            sql += &format!(" GRANT SELECT ON app.{} TO {r};", quoted(table));
        }
        for table in grant.writable() {
            sql += &format!(
                " GRANT INSERT, UPDATE, DELETE ON app.{} TO {r};",
                quoted(table)
            );
        }
        // What the host's connections also pin in their options; behind a
        // pooler (which sends no options) these are what holds. Set for the
        // role in this database, which outranks the database's and the
        // role's own settings.
        for setting in [
            "search_path = app",
            "\"TimeZone\" = 'UTC'",
            "\"DateStyle\" = 'ISO, YMD'",
            "work_mem = '4MB'",
            "statement_timeout = '10s'",
            "lock_timeout = '5s'",
            "idle_in_transaction_session_timeout = '10s'",
            "default_transaction_isolation = 'read committed'",
            "default_transaction_read_only = on",
            "standard_conforming_strings = on",
            "backslash_quote = safe_encoding",
            "transform_null_equals = off",
            "tcp_keepalives_idle = 30",
            "tcp_keepalives_interval = 10",
            "tcp_keepalives_count = 3",
            "client_connection_check_interval = '10s'",
        ] {
            sql += &format!(" ALTER ROLE {r} IN DATABASE {db} SET {setting};");
        }
        client
            .batch_execute(&sql)
            .await
            .with_context(|| format!("granting guest `{guest}` its privileges"))?;
        if client
            .batch_execute(&format!(
                "ALTER ROLE {r} IN DATABASE {db} SET temp_file_limit = '16MB'"
            ))
            .await
            .is_err()
            && !notes.iter().any(|n| n.contains("temp_file_limit"))
        {
            notes.push(
                "temp_file_limit could not be set for the guest roles with this role (a superuser can)".to_owned(),
            );
        }
        current.push(role);
    }
    // Roles of guests the manifest no longer has: nothing left, no login.
    let prefix = format!("{}_g_", url.database());
    for row in client
        .query(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await?
    {
        let role: String = row.get(0);
        if current.contains(&role) {
            continue;
        }
        let r = quoted(&role);
        client
            .batch_execute(&format!(
                "REVOKE ALL ON ALL TABLES IN SCHEMA app FROM {r}; REVOKE ALL ON SCHEMA app FROM {r}; \
                 REVOKE CONNECT ON DATABASE {db} FROM {r}; ALTER ROLE {r} NOLOGIN;"
            ))
            .await?;
        notes.push(format!(
            "role `{role}` belongs to no guest of the manifest: its privileges were revoked"
        ));
    }
    Ok(notes)
}

/// Creates `role` if it does not exist, and makes sure it has no power
/// beyond what is granted (and may log in when `login`).
async fn ensure_role(client: &Client, role: &str, login: bool) -> Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some();
    let r = quoted(role);
    let login = if login { "LOGIN" } else { "NOLOGIN" };
    let attributes =
        format!("{login} NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS");
    let sql = if exists {
        format!("ALTER ROLE {r} {attributes}")
    } else {
        format!("CREATE ROLE {r} {attributes}")
    };
    client.batch_execute(&sql).await.with_context(|| {
        format!("creating the role `{role}` (migrate needs a role that may create roles)")
    })?;
    Ok(())
}

/// The tables of schema `app`.
async fn app_tables(client: &Client) -> Result<Vec<String>> {
    Ok(client
        .query_typed(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'app' AND c.relkind IN ('r', 'v', 'p') ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// What differs between the database's roles and `guests`' grants. Runs
/// on `serve`'s connections, which may pass a pooler: unnamed statements.
pub(super) async fn drift(
    client: &Client,
    url: &DatabaseUrl,
    guests: &[(String, DbGrant)],
) -> Result<Vec<String>> {
    let tables = app_tables(client).await?;
    let mut drift = Vec::new();
    for (guest, grant) in guests {
        let role = guest_role(url, guest);
        let login = client
            .query_typed_opt(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1::name",
                &typed(&[&role]),
            )
            .await?
            .map(|r| r.get::<_, bool>(0));
        if login != Some(true) {
            drift.push(format!(
                "guest `{guest}` has no role `{role}` that may log in"
            ));
            continue;
        }
        for table in &tables {
            let qualified = format!("app.{}", quoted(table));
            for (privilege, want) in [
                ("SELECT", grant.readable().contains(table.as_str())),
                ("INSERT", grant.writable().contains(table.as_str())),
                ("UPDATE", grant.writable().contains(table.as_str())),
                ("DELETE", grant.writable().contains(table.as_str())),
            ] {
                let has: bool = client
                    .query_typed_one(
                        "SELECT has_table_privilege($1::name, $2, $3)",
                        &typed(&[&role, &qualified, &privilege]),
                    )
                    .await?
                    .get(0);
                if has != want {
                    drift.push(format!(
                        "guest `{guest}`: {privilege} on `{table}` is {} in the database but {} in the manifest",
                        if has { "granted" } else { "not granted" },
                        if want { "granted" } else { "not granted" },
                    ));
                }
            }
        }
    }
    Ok(drift)
}
