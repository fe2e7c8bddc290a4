use super::*;

#[test]
fn random_passwords_are_long_and_differ() {
    let a = random_password().unwrap();
    assert_eq!(a.len(), 20);
    assert_ne!(a, random_password().unwrap());
}

fn auth() -> (tempfile::TempDir, Arc<Auth>) {
    let dir = tempfile::tempdir().unwrap();
    let (database, _) = crate::database::open(None, dir.path(), None).unwrap();
    let auth = Auth::new(database.store().unwrap(), Policy::default()).unwrap();
    let password = Password::new("correct horse battery staple".into());
    auth.add_user("bob", None, &[], &password).unwrap();
    (dir, auth)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn sessions_of(auth: &Auth, username: &str) -> usize {
    auth.sessions()
        .unwrap()
        .iter()
        .filter(|s| s.username == username)
        .count()
}

#[test]
fn a_password_change_or_disable_during_a_sign_in_ends_that_sign_in_too() {
    let (_dir, auth) = auth();
    let old = Password::new("correct horse battery staple".into());
    let new = Password::new("a brand new password".into());
    // The race, forced: the password changes after the old one was
    // checked and before the session is opened.
    let signed = auth.login_with("bob", &old, None, soon(), || {
        auth.set_password("bob", &new).unwrap()
    });
    assert_eq!(signed.err(), Some(LoginError::BadCredentials));
    assert_eq!(sessions_of(&auth, "bob"), 0);
    let signed = auth.login_with("bob", &new, None, soon(), || {
        auth.set_disabled("bob", true).unwrap()
    });
    assert_eq!(signed.err(), Some(LoginError::BadCredentials));
    assert_eq!(sessions_of(&auth, "bob"), 0);
    auth.set_disabled("bob", false).unwrap();
    assert!(auth.login("bob", &new, None, soon()).is_ok());
    assert_eq!(sessions_of(&auth, "bob"), 1);
}

#[test]
fn a_user_has_at_most_sixteen_sessions_and_the_oldest_go() {
    let (_dir, auth) = auth();
    let password = Password::new("correct horse battery staple".into());
    let tokens: Vec<Token> = (0..SESSIONS_PER_USER + 4)
        .map(|_| auth.login("bob", &password, None, soon()).unwrap().token)
        .collect();
    assert_eq!(sessions_of(&auth, "bob"), SESSIONS_PER_USER);
    assert!(
        auth.resolve(tokens.last().unwrap()).is_some(),
        "the newest stays"
    );
    let live = tokens.iter().filter(|t| auth.resolve(t).is_some()).count();
    assert_eq!(live, SESSIONS_PER_USER);
}

#[test]
fn usernames_follow_the_documented_set() {
    for ok in ["ada", "Ada.Lovelace", "a_b-c", "x1y"] {
        assert!(check_username(ok).is_ok(), "{ok}");
    }
    for bad in [
        "ab",
        "-ada",
        "ada lovelace",
        "ädä",
        &"a".repeat(65),
        "a;drop",
    ] {
        assert!(check_username(bad).is_err(), "{bad}");
    }
}

#[test]
fn tokens_are_256_bit_hex_and_redacted() {
    let t = Token::generate().unwrap();
    assert_eq!(t.expose().len(), 64);
    assert_ne!(t, Token::generate().unwrap());
    assert_eq!(format!("{t:?}"), "Token(<redacted>)");
}
