//! `rawalite session list|revoke`: who is signed in, from where, since
//! when, and ending a session. The token never shows: a session is named
//! by a short id derived from a hash of the token's hash.

use super::{DataArgs, Exit, ListArgs};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use rawalite_host::utc;

/// See and end sign-in sessions (expired ones are swept first).
#[derive(Subcommand)]
pub enum SessionCommand {
    /// List the live sessions, newest first.
    List(ListArgs),
    Revoke(RevokeArgs),
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
            let sessions = args.data.auth()?.sessions()?;
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
                        utc::readable(s.created_at),
                        utc::readable(s.last_seen_at),
                        utc::readable(s.expires_at)
                    );
                }
            }
        }
        SessionCommand::Revoke(args) => {
            let auth = args.data.auth()?;
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
