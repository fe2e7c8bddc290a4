//! `rawalite user add|list|passwd|disable|enable|remove`: the host's users. Passwords are
//! read from a prompt without echo, or from stdin when it is not a terminal,
//! and never printed.

use super::{DataArgs, Exit, ListArgs};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rawalite_host::auth::password::Password;
use std::io::{BufRead, IsTerminal};

/// Manage the users who can sign in.
#[derive(Subcommand)]
pub enum UserCommand {
    Add(AddArgs),
    /// List the users.
    List(ListArgs),
    Passwd(NameArgs),
    /// Stop a user from signing in, and end their sessions at once; their
    /// data and password stay. `enable` lets them in again.
    Disable(NameArgs),
    /// Let a disabled user sign in again.
    Enable(NameArgs),
    Remove(NameArgs),
}

/// Add a user. The password is asked for (twice) on a terminal, or read as
/// one line from stdin; it needs at least 12 characters.
#[derive(Args)]
pub struct AddArgs {
    /// 3 to 64 of a-z, A-Z, 0-9, `.`, `_`, `-`; unique ignoring case.
    username: String,
    /// The name pages show (default: the username).
    #[arg(long, value_name = "N")]
    display_name: Option<String>,
    /// A role (a-z, 0-9, `_`, `-`), e.g. `admin` or `staff`; repeatable.
    #[arg(long = "role", value_name = "R")]
    roles: Vec<String>,
    #[command(flatten)]
    data: DataArgs,
}

/// `passwd`: set a new password (asked as for `add`) and sign the user out
/// everywhere. `remove`: remove the user and every session of theirs.
#[derive(Args)]
pub struct NameArgs {
    username: String,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(command: UserCommand) -> Result<Exit> {
    match command {
        UserCommand::Add(args) => {
            let auth = args.data.auth()?;
            rawalite_host::auth::check_username(&args.username)?;
            let password = read_password(&args.username)?;
            let user = auth.add_user(
                &args.username,
                args.display_name.as_deref(),
                &args.roles,
                &password,
            )?;
            println!("added user {} (id {})", user.username, user.id);
        }
        UserCommand::List(args) => {
            let users = args.data.auth()?.users()?;
            if args.json {
                let list: Vec<_> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "id": u.id, "username": u.username, "display_name": u.display_name,
                            "roles": u.roles, "disabled": u.disabled, "created_at": u.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if users.is_empty() {
                println!("no users yet: add one with `rawalite user add USERNAME`");
            } else {
                println!(
                    "{:<5} {:<20} {:<24} {:<16} CREATED",
                    "ID", "USERNAME", "NAME", "ROLES"
                );
                for u in users {
                    let name = if u.disabled {
                        format!("{} (disabled)", u.display_name)
                    } else {
                        u.display_name
                    };
                    println!(
                        "{:<5} {:<20} {:<24} {:<16} {}",
                        u.id,
                        u.username,
                        name,
                        u.roles.join(","),
                        u.created_at
                    );
                }
            }
        }
        UserCommand::Passwd(args) => {
            let auth = args.data.auth()?;
            if auth.user(&args.username)?.is_none() {
                bail!("there is no user named `{}`", args.username);
            }
            let password = read_password(&args.username)?;
            auth.set_password(&args.username, &password)?;
            println!(
                "password changed for {}; their sessions have ended",
                args.username
            );
        }
        UserCommand::Disable(args) => {
            args.data.auth()?.set_disabled(&args.username, true)?;
            println!(
                "disabled {}: they cannot sign in and their sessions have ended",
                args.username
            );
        }
        UserCommand::Enable(args) => {
            args.data.auth()?.set_disabled(&args.username, false)?;
            println!("enabled {}: they can sign in again", args.username);
        }
        UserCommand::Remove(args) => {
            args.data.auth()?.remove_user(&args.username)?;
            println!("removed user {}", args.username);
        }
    }
    Ok(Exit::Ok)
}

/// A new password: prompted twice without echo on a terminal, else the
/// first line of stdin.
fn read_password(username: &str) -> Result<Password> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {username}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        Password::new(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Password::new(line.trim_end_matches(['\n', '\r']).to_owned())
    };
    password.check_new().map_err(anyhow::Error::msg)?;
    Ok(password)
}
