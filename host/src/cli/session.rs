//! `rawalite session list|revoke`: who is signed in, from where, since
//! when, and ending a session. The token never shows: a session is named
//! by a short id derived from a hash of the token's hash.

use super::user::auth;
use super::{DataArgs, Exit};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};

/// See and end sign-in sessions (expired ones are swept first).
#[derive(Subcommand)]
pub enum SessionCommand {
    List(ListArgs),
    Revoke(RevokeArgs),
}

/// List the live sessions, newest first.
#[derive(Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataArgs,
}

/// End a session by the id `list` shows, or every session of a user.
#[derive(Args)]
pub struct RevokeArgs {
    /// The session's id, from `rawalite session list`.
    #[arg(
        value_name = "ID",
        required_unless_present = "user",
        conflicts_with = "user"
    )]
    id: Option<String>,
    /// End every session of this user instead.
    #[arg(long, value_name = "USERNAME")]
    user: Option<String>,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(command: SessionCommand) -> Result<Exit> {
    match command {
        SessionCommand::List(args) => {
            let sessions = auth(&args.data)?.sessions()?;
            if args.json {
                let list: Vec<_> = sessions
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "id": s.id, "username": s.username, "client": s.client,
                            "created_at": s.created_at, "last_seen_at": s.last_seen_at,
                            "expires_at": s.expires_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if sessions.is_empty() {
                println!("nobody is signed in");
            } else {
                println!(
                    "{:<13} {:<20} {:<40} {:<21} {:<21} EXPIRES",
                    "ID", "USER", "FROM", "SINCE", "LAST SEEN"
                );
                for s in sessions {
                    println!(
                        "{:<13} {:<20} {:<40} {:<21} {:<21} {}",
                        s.id,
                        s.username,
                        s.client.as_deref().unwrap_or("-"),
                        time(s.created_at),
                        time(s.last_seen_at),
                        time(s.expires_at)
                    );
                }
            }
        }
        SessionCommand::Revoke(args) => {
            let auth = auth(&args.data)?;
            match (&args.id, &args.user) {
                (_, Some(user)) => {
                    let ended = auth.revoke_sessions_of(user)?;
                    println!("ended {ended} session(s) of {user}");
                }
                (Some(id), None) => {
                    if !auth.revoke_session(id)? {
                        bail!("there is no session `{id}`; `rawalite session list` shows them");
                    }
                    println!("ended session {id}");
                }
                (None, None) => unreachable!("clap requires an ID or --user"),
            }
        }
    }
    Ok(Exit::Ok)
}

/// Unix seconds as `2026-11-26 18:30:00Z`.
fn time(secs: i64) -> String {
    let secs = secs.max(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_calendar_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(time(1_795_717_800), "2026-11-26 18:30:00Z");
    }
}
