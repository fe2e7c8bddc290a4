//! Users, sign-in and sessions: the CLI, the `session` capability through
//! the probe, the limiter, expiry and revocation, `[guest.session]`, and a
//! scan of everything logged for passwords and tokens.
//!
//! Past 600 lines on purpose: one case per rule of sessions, read one at
//! a time.

use crate::common;

use common::{
    ProbeApp, err, get_with, json, manifest, rawalite, rawalite_with_stdin, stderr, stdout,
};
use rawalite_host::auth::Token;
use rawalite_host::auth::password::Password;
use rawalite_host::capabilities::ErrorCode;
use rawalite_host::capabilities::session::{Caller, SessionChange};
use rawalite_host::runtime::{Guest, Outcome, Rendered, Stopped};
use serde_json::Value as Json;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

const GUESTS: &str = r#"
[[guest]]
name = "open"
component = "{probe}"
# Each sign-in is ~50 ms of Argon2 on a free core; beside other work on a
# two-core machine a test's few sign-ins may take longer than the default
# second.
[guest.limits]
timeout_ms = 20000
[guest.db]
read = ["customers"]
[guest.session]
login = true

[[guest]]
name = "members"
component = "{probe}"
[guest.session]
require_login = true

[[guest]]
name = "admins"
component = "{probe}"
[guest.session]
roles = ["admin"]
"#;

const ADA_PASSWORD: &str = "correct horse battery staple";
const BOB_PASSWORD: &str = "tr0ub4dor & three";

/// Everything this test binary logs, at every level.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .init();
        log
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The app of [`GUESTS`], with two users: ada (admin) and bob (staff).
fn fixture() -> ProbeApp {
    captured_log();
    let f = ProbeApp::open(GUESTS);
    f.app
        .auth
        .add_user(
            "ada",
            Some("Ada Lovelace"),
            &["admin".into()],
            &Password::new(ADA_PASSWORD.into()),
        )
        .unwrap();
    f.app
        .auth
        .add_user(
            "bob",
            None,
            &["staff".into()],
            &Password::new(BOB_PASSWORD.into()),
        )
        .unwrap();
    f
}

fn login(guest: &Guest, username: &str, password: &str, client: Option<IpAddr>) -> Rendered {
    let mut req = get_with("/session/login", &[]);
    req.method = "POST".into();
    req.body = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", username)
        .append_pair("password", password)
        .finish()
        .into_bytes();
    guest.render(
        &req,
        Caller {
            client,
            ..Caller::default()
        },
    )
}

fn as_caller(guest: &Guest, route: &str, caller: Caller) -> Outcome {
    guest.render(&get_with(route, &[]), caller).outcome
}

fn token(rendered: &Rendered) -> Token {
    match &rendered.session {
        SessionChange::SignedIn(token) => token.clone(),
        other => panic!("expected a new session, got {other:?}"),
    }
}

fn signed_in(f: &ProbeApp, token: &Token) -> Caller {
    let signed = f.app.auth.resolve(token).expect("the session is live");
    Caller {
        user: Some(signed.user),
        token: Some(signed.token),
        client: None,
    }
}

#[test]
fn a_correct_login_opens_a_session_the_guest_never_sees() {
    let f = fixture();
    let open = f.guest("open");
    let rendered = login(&open, "ADA", ADA_PASSWORD, None);
    let token = token(&rendered);
    let user = json(rendered.outcome);
    assert_eq!(user["username"], "ada");
    assert_eq!(user["display_name"], "Ada Lovelace");
    assert_eq!(user["roles"], serde_json::json!(["admin"]));
    assert!(!user.to_string().contains(token.expose()));

    let caller = signed_in(&f, &token);
    assert_eq!(
        json(as_caller(&open, "/session/current", caller.clone()))["username"],
        "ada"
    );
    let req = get_with("/session/has-role", &[("role", "admin")]);
    assert_eq!(json(open.render(&req, caller.clone()).outcome), true);
    let req = get_with("/session/has-role", &[("role", "staff")]);
    assert_eq!(json(open.render(&req, caller).outcome), false);
    assert_eq!(
        json(as_caller(&open, "/session/current", Caller::default())),
        Json::Null
    );

    // Only a hash of the token is stored: 32 bytes, where the token the
    // cookie carries is 64 characters.
    assert_eq!(token.expose().len(), 64);
    assert_eq!(f.number("SELECT length(token_hash) FROM sessions"), 32);
}

#[test]
fn wrong_password_and_unknown_user_answer_the_same() {
    let f = fixture();
    let open = f.guest("open");
    let checks = f.app.auth.hash_checks();
    let wrong = err(login(&open, "ada", "not the password at all", None).outcome);
    let unknown = err(login(&open, "nobody-here", "not the password at all", None).outcome);
    assert_eq!(wrong.code, ErrorCode::Unauthenticated);
    assert_eq!(
        (wrong.code, &wrong.message),
        (unknown.code, &unknown.message)
    );
    // Both checked a hash: the unknown user against a dummy one.
    assert_eq!(f.app.auth.hash_checks(), checks + 2);
    assert_eq!(f.number("SELECT count(*) FROM sessions"), 0);
}

#[test]
fn the_sixth_failure_from_one_address_is_refused_without_a_hash_check() {
    let f = fixture();
    let open = f.guest("open");
    let client: IpAddr = "192.0.2.7".parse().unwrap();
    for _ in 0..5 {
        let e = err(login(&open, "bob", "guess guess guess", Some(client)).outcome);
        assert_eq!(e.code, ErrorCode::Unauthenticated);
    }
    let checks = f.app.auth.hash_checks();
    // Even the right password is not checked now, from that address.
    let e = err(login(&open, "bob", BOB_PASSWORD, Some(client)).outcome);
    assert_eq!(e.code, ErrorCode::Denied);
    assert!(
        e.message
            .contains("too many failed sign-ins; try again in 15 minutes"),
        "{}",
        e.message
    );
    assert_eq!(
        f.app.auth.hash_checks(),
        checks,
        "the sixth attempt checked a hash"
    );
    // Failures from one address never stop the right password from another
    // (bob at home), nor another user from that address.
    let elsewhere: IpAddr = "198.51.100.1".parse().unwrap();
    token(&login(&open, "bob", BOB_PASSWORD, Some(elsewhere)));
    token(&login(&open, "ada", ADA_PASSWORD, Some(client)));
}

#[test]
fn a_user_attacked_from_many_addresses_is_slowed_and_still_signs_in() {
    let f = fixture();
    let open = f.guest("open");
    // Bob signed in from home once.
    let home: IpAddr = "198.51.100.7".parse().unwrap();
    token(&login(&open, "bob", BOB_PASSWORD, Some(home)));
    // Twelve addresses try two passwords each.
    for i in 0..12 {
        let attacker: IpAddr = format!("203.0.113.{i}").parse().unwrap();
        for _ in 0..2 {
            let _ = login(&open, "bob", "guess guess guess", Some(attacker));
        }
    }
    // Another new address gets one try, then is told to wait seconds (not
    // minutes), without a hash being checked.
    let first: IpAddr = "192.0.2.200".parse().unwrap();
    let _ = login(&open, "bob", "guess guess guess", Some(first));
    let checks = f.app.auth.hash_checks();
    let next: IpAddr = "192.0.2.201".parse().unwrap();
    let e = err(login(&open, "bob", BOB_PASSWORD, Some(next)).outcome);
    assert_eq!(e.code, ErrorCode::Denied);
    assert!(e.message.contains("seconds"), "{}", e.message);
    assert_eq!(f.app.auth.hash_checks(), checks);
    // From home, bob signs in at once.
    token(&login(&open, "bob", BOB_PASSWORD, Some(home)));
}

#[test]
fn a_guest_without_the_login_grant_can_neither_sign_in_nor_out() {
    let f = fixture();
    let members = f.guest("members");
    let ada = token(&login(&f.guest("open"), "ada", ADA_PASSWORD, None));
    let checks = f.app.auth.hash_checks();
    let mut req = get_with("/session/login", &[]);
    req.method = "POST".into();
    req.body = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", "bob")
        .append_pair("password", BOB_PASSWORD)
        .finish()
        .into_bytes();
    let e = err(members.render(&req, signed_in(&f, &ada)).outcome);
    assert_eq!(e.code, ErrorCode::Denied);
    assert!(
        e.message.contains("`login = true`") && e.message.contains("[guest.session]"),
        "{}",
        e.message
    );
    assert_eq!(f.app.auth.hash_checks(), checks, "no password was checked");
    let rendered = members.render(&get_with("/session/logout", &[]), signed_in(&f, &ada));
    match rendered.outcome {
        Outcome::Stopped(Stopped::Refused { message }) => {
            assert!(message.contains("`login = true`"), "{message}")
        }
        other => panic!("expected the guest to be stopped, got {other:?}"),
    }
    assert_eq!(rendered.session, SessionChange::Unchanged);
    assert!(f.app.auth.resolve(&ada).is_some(), "ada is still signed in");
}

#[test]
fn logout_and_password_changes_end_sessions() {
    let f = fixture();
    let open = f.guest("open");
    let first = token(&login(&open, "ada", ADA_PASSWORD, None));
    let second = token(&login(&open, "ada", ADA_PASSWORD, None));
    assert_ne!(first, second);

    let rendered = open.render(&get_with("/session/logout", &[]), signed_in(&f, &first));
    assert_eq!(rendered.session, SessionChange::SignedOut);
    assert!(
        f.app.auth.resolve(&first).is_none(),
        "a revoked session still resolves"
    );
    assert!(f.app.auth.resolve(&second).is_some());

    f.app
        .auth
        .set_password("ada", &Password::new("a brand new passphrase".into()))
        .unwrap();
    assert!(
        f.app.auth.resolve(&second).is_none(),
        "a password change left a session"
    );
    assert_eq!(
        err(login(&open, "ada", ADA_PASSWORD, None).outcome).code,
        ErrorCode::Unauthenticated
    );
    token(&login(&open, "ada", "a brand new passphrase", None));
}

#[test]
fn signing_in_again_replaces_the_old_session() {
    let f = fixture();
    let open = f.guest("open");
    let old = token(&login(&open, "bob", BOB_PASSWORD, None));
    let mut req = get_with("/session/login", &[]);
    req.body = format!(
        "username=bob&password={}",
        BOB_PASSWORD.replace(' ', "+").replace('&', "%26")
    )
    .into_bytes();
    let rendered = open.render(&req, signed_in(&f, &old));
    let new = token(&rendered);
    assert_ne!(old, new);
    assert!(f.app.auth.resolve(&old).is_none());
}

#[test]
fn idle_and_absolute_expiry_end_sessions() {
    let f = fixture();
    let open = f.guest("open");
    let idle = token(&login(&open, "ada", ADA_PASSWORD, None));
    let old = token(&login(&open, "bob", BOB_PASSWORD, None));
    let ada_id = f.number("SELECT id FROM users WHERE username = 'ada'");
    f.sql(&format!(
        "UPDATE sessions SET last_seen_at = last_seen_at - 31 * 60 WHERE user_id = {ada_id}"
    ));
    f.sql(&format!(
        "UPDATE sessions SET expires_at = created_at - 1 WHERE user_id != {ada_id}"
    ));
    assert!(
        f.app.auth.resolve(&idle).is_none(),
        "an idle session lived on"
    );
    assert!(
        f.app.auth.resolve(&old).is_none(),
        "a session past its absolute expiry lived on"
    );
    assert_eq!(
        f.number("SELECT count(*) FROM sessions"),
        0,
        "expired sessions are deleted"
    );
    assert!(
        f.app
            .auth
            .resolve(&Token::from_cookie("not-a-token"))
            .is_none()
    );
}

#[test]
fn expired_sessions_are_swept_without_being_used() {
    let f = fixture();
    let open = f.guest("open");
    let live = token(&login(&open, "ada", ADA_PASSWORD, None));
    token(&login(&open, "bob", BOB_PASSWORD, None));
    token(&login(&open, "bob", BOB_PASSWORD, None));
    f.sql(
        "UPDATE sessions SET last_seen_at = last_seen_at - 31 * 60 WHERE user_id = (SELECT id FROM users WHERE username = 'bob')",
    );
    // Nobody comes back with bob's sessions; the sweep ends them anyway.
    assert_eq!(f.app.auth.sweep_expired().unwrap(), 2);
    assert_eq!(f.number("SELECT count(*) FROM sessions"), 1);
    assert!(f.app.auth.resolve(&live).is_some());
}

#[test]
fn require_login_and_roles_are_enforced_before_the_guest_runs() {
    let f = fixture();
    let open = f.guest("open");
    let members = f.guest("members");
    let admins = f.guest("admins");
    let e = err(as_caller(&members, "/session/current", Caller::default()));
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::Unauthenticated, "sign in to see this page")
    );
    let e = err(as_caller(&admins, "/session/current", Caller::default()));
    assert_eq!(e.code, ErrorCode::Unauthenticated);

    let bob = signed_in(&f, &token(&login(&open, "bob", BOB_PASSWORD, None)));
    assert_eq!(
        json(as_caller(&members, "/session/current", bob.clone()))["username"],
        "bob"
    );
    let e = err(as_caller(&admins, "/session/current", bob));
    assert_eq!(e.code, ErrorCode::Denied);
    assert!(e.message.contains("admin"), "{}", e.message);

    let ada = signed_in(&f, &token(&login(&open, "ada", ADA_PASSWORD, None)));
    assert_eq!(
        json(as_caller(&admins, "/session/current", ada))["username"],
        "ada"
    );
}

#[test]
fn a_db_grant_never_reaches_users_or_sessions() {
    let f = fixture();
    let open = f.guest("open");
    token(&login(&open, "ada", ADA_PASSWORD, None));
    for sql in [
        "SELECT password_hash FROM users",
        "SELECT token_hash FROM sessions",
        "SELECT * FROM customers JOIN users ON users.id = customers.id",
        "SELECT (SELECT count(*) FROM sessions)",
    ] {
        let req = get_with("/db/query", &[("sql", sql)]);
        let e = err(open.render(&req, Caller::default()).outcome);
        assert_eq!(e.code, ErrorCode::Denied, "{sql}: {}", e.message);
    }
}

#[test]
fn the_user_commands_add_list_change_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let cache = dir.path().join("cache");
    let secret = "a password of some length";

    let out = rawalite_with_stdin(
        &[
            "user",
            "add",
            "carol",
            "--display-name",
            "Carol C",
            "--role",
            "staff",
            "--data",
            d,
        ],
        &cache,
        &format!("{secret}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "added user carol (id 1)");

    let out = rawalite_with_stdin(&["user", "add", "dave", "--data", d], &cache, "too short\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("at least 12 characters"),
        "{}",
        stderr(&out)
    );
    let out = rawalite_with_stdin(
        &["user", "add", "CAROL", "--data", d],
        &cache,
        &format!("{secret}\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = rawalite_with_stdin(
        &["user", "add", "no spaces", "--data", d],
        &cache,
        &format!("{secret}\n"),
    );
    assert!(
        stderr(&out).contains("not a valid username"),
        "{}",
        stderr(&out)
    );

    let out = rawalite(&["user", "list", "--json", "--data", d], &cache);
    let users: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["username"], "carol");
    assert_eq!(users[0]["display_name"], "Carol C");
    assert_eq!(users[0]["roles"], serde_json::json!(["staff"]));
    let table = stdout(&rawalite(&["user", "list", "--data", d], &cache));
    assert!(
        table.contains("carol") && table.contains("Carol C"),
        "{table}"
    );

    let out = rawalite_with_stdin(
        &["user", "passwd", "carol", "--data", d],
        &cache,
        "the next long password\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("their sessions have ended"));
    let out = rawalite_with_stdin(
        &["user", "passwd", "nobody", "--data", d],
        &cache,
        "the next long password\n",
    );
    assert_eq!(out.status.code(), Some(2));

    let out = rawalite(&["user", "remove", "carol", "--data", d], &cache);
    assert_eq!(stdout(&out).trim(), "removed user carol");
    let out = rawalite(&["user", "remove", "carol", "--data", d], &cache);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("there is no user named `carol`"));
    let users: Json =
        serde_json::from_slice(&rawalite(&["user", "list", "--json", "--data", d], &cache).stdout)
            .unwrap();
    assert_eq!(users, serde_json::json!([]));

    for out in [stdout(&out), stderr(&out)] {
        assert!(!out.contains(secret));
    }
}

#[test]
fn render_as_a_user_and_login_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = manifest(dir.path(), GUESTS);
    let m = file.to_str().unwrap();
    let cache = dir.path().join("cache");
    let out = rawalite_with_stdin(
        &["user", "add", "erin", "--role", "admin", "--manifest", m],
        &cache,
        "erin's long password\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = rawalite(
        &[
            "render",
            "--manifest",
            m,
            "--guest",
            "admins",
            "/session/current",
        ],
        &cache,
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out).trim(),
        "error: unauthenticated: sign in to see this page"
    );
    let out = rawalite(
        &[
            "render",
            "--manifest",
            m,
            "--guest",
            "admins",
            "--as",
            "erin",
            "/session/current",
        ],
        &cache,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"username\":\"erin\""));
    let out = rawalite(
        &[
            "render",
            "--manifest",
            m,
            "--guest",
            "admins",
            "--as",
            "nobody",
            "/",
        ],
        &cache,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("there is no user named `nobody`"));
}

/// Every sensitive flow, with everything logged at TRACE (in process and
/// from the binary): no password and no token may appear anywhere.
#[test]
fn no_password_or_token_is_ever_logged() {
    let f = fixture();
    let open = f.guest("open");
    let mut secrets = vec![
        ADA_PASSWORD.to_owned(),
        BOB_PASSWORD.to_owned(),
        "guess guess guess".to_owned(),
    ];
    let good = login(&open, "ada", ADA_PASSWORD, None);
    let token = token(&good);
    secrets.push(token.expose().to_owned());
    for _ in 0..6 {
        login(&open, "bob", "guess guess guess", None);
    }
    open.render(&get_with("/session/logout", &[]), signed_in(&f, &token));

    let cache = f.dir.path().join("cache");
    let data = f.dir.path().join("data");
    let cli_password = "cli password that stays secret";
    secrets.push(cli_password.to_owned());
    let mut outputs = vec![];
    for args in [
        vec!["user", "add", "frank", "--data", data.to_str().unwrap()],
        vec!["user", "passwd", "frank", "--data", data.to_str().unwrap()],
    ] {
        let out = rawalite_with_stdin(&args, &cache, &format!("{cli_password}\n"));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        outputs.push(stdout(&out) + &stderr(&out));
    }

    let log = String::from_utf8_lossy(&captured_log().lock().unwrap()).into_owned();
    assert!(
        log.contains("capability=\"session\""),
        "nothing was captured: {log}"
    );
    assert!(log.contains("op=\"login\""));
    for text in outputs.iter().chain([&log]) {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret was logged");
        }
    }
}
