//! What the two backends' migrations share: where a database stands
//! against the migrations this binary knows, and refinery's names and
//! errors in the words people read.

use anyhow::{Context, Result, bail};

/// How a database's migrations compare with the ones this binary knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Exactly the migrations this binary knows.
    Current,
    /// This many are not applied yet; `migrate` or the next start applies them.
    Pending(usize),
    /// It has this one applied, which this binary does not know: a newer
    /// rawalite wrote the database.
    Unknown(String),
}

/// Where `applied` migrations stand against the `known` ones.
pub(super) fn compare<'a>(
    applied: &[String],
    known: impl Iterator<Item = &'a str>,
) -> MigrationState {
    let known: Vec<&str> = known.collect();
    match applied.iter().find(|m| !known.contains(&m.as_str())) {
        Some(newer) => MigrationState::Unknown(newer.clone()),
        None if applied.len() == known.len() => MigrationState::Current,
        None => MigrationState::Pending(known.len() - applied.len()),
    }
}

/// A migration that `open` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
}

/// What a failed migration means, with what to do.
pub(super) fn migration_error(e: refinery::Error) -> anyhow::Error {
    match e.kind() {
        refinery::error::Kind::DivergentVersion(applied, _) => anyhow::anyhow!(
            "migration {} was changed after it was applied to this database; restore migrations/{}.sql and add a new migration instead",
            file_name(applied),
            file_name(applied)
        ),
        refinery::error::Kind::MissingVersion(applied) => anyhow::anyhow!(
            "this database has migration {} applied, which this rawalite does not know; use a newer rawalite",
            file_name(applied)
        ),
        _ => anyhow::anyhow!("migrating the database failed: {e}"),
    }
}

/// `0001_init` → `V1__init`, the form refinery parses.
pub(super) fn refinery_name(file: &str) -> Result<String> {
    let Some((number, name)) = file.split_once('_') else {
        bail!("migration `{file}` must be named NNNN_name");
    };
    let version: u32 = number
        .parse()
        .with_context(|| format!("migration `{file}` must start with a number"))?;
    Ok(format!("V{version}__{name}"))
}

/// `V1__init` → `0001_init`, the file name people see.
pub(super) fn file_name(m: &refinery::Migration) -> String {
    format!("{:04}_{}", m.version(), m.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_refinery() {
        let m = refinery::Migration::unapplied(&refinery_name("0001_init").unwrap(), "").unwrap();
        assert_eq!(file_name(&m), "0001_init");
    }
}
