//! Passwords: argon2id with the OWASP parameters (m = 19 MiB, t = 2, p = 1),
//! a type that never shows what it holds, and the pool sign-ins check
//! them on ([`Checker`]).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use std::fmt;
use std::sync::OnceLock;

/// The shortest password `user add` and `user passwd` accept.
pub const MIN_LEN: usize = 12;
/// The longest: hashing cost grows with length, so a bound keeps a login
/// from being a denial of service.
pub const MAX_LEN: usize = 1024;

/// A password in memory. Its `Debug` and `Display` print a placeholder, so
/// no log line, error or panic message can carry it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(text: String) -> Self {
        Password(text)
    }

    /// Checks the rules for a new password.
    pub fn check_new(&self) -> Result<(), String> {
        let len = self.0.chars().count();
        if len < MIN_LEN {
            Err(format!("a password needs at least {MIN_LEN} characters"))
        } else if self.0.len() > MAX_LEN {
            Err(format!("a password may have at most {MAX_LEN} bytes"))
        } else {
            Ok(())
        }
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST,
        None,
    )
    .expect("the OWASP parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a fresh salt.
pub fn hash(password: &Password) -> anyhow::Result<String> {
    argon2()
        .hash_password(password.bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))
}

/// Whether `password` matches `phc`. A malformed stored hash is a mismatch.
pub fn verify(password: &Password, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(password.bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so an unknown
/// user costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash(&Password::new("not a password anyone has".to_owned()))
            .expect("hashing a constant works")
    })
}

/// Where sign-ins check passwords: threads of their own, half as many as
/// the cores, so that a burst of sign-ins (each ~50 ms of CPU) cannot take
/// every core from the threads that serve requests. At most as many checks
/// run at once as there are threads; the rest wait in a bounded queue,
/// each no later than its deadline. (Not at a lower priority: on a machine
/// busy with other work, sign-ins would then starve.)
pub struct Checker {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

struct Job {
    password: Password,
    /// `None`: the user does not exist; checked against a dummy hash.
    phc: Option<String>,
    deadline: std::time::Instant,
    answer: std::sync::mpsc::SyncSender<bool>,
}

/// Checks that may wait for a thread; past them a sign-in is `busy`.
const QUEUE: usize = 64;

impl Checker {
    /// A pool of half the cores (at least one thread).
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for i in 0..(cores / 2).max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = job else { return };
                        if std::time::Instant::now() >= job.deadline {
                            continue;
                        }
                        let matches = match &job.phc {
                            Some(phc) => verify(&job.password, phc),
                            None => {
                                // The same work as a real check, and always a failure.
                                std::hint::black_box(verify(&job.password, dummy_hash()));
                                false
                            }
                        };
                        let _ = job.answer.send(matches);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-checking thread");
            }
        }
        Checker { jobs }
    }

    /// Whether `password` matches `phc` (`None`: no such user, never a
    /// match, at the same cost). `None` when the check could not run
    /// before `deadline`. Blocks the calling thread while it waits.
    pub fn check(
        &self,
        password: &Password,
        phc: Option<String>,
        deadline: std::time::Instant,
    ) -> Option<bool> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .try_send(Job {
                password: password.clone(),
                phc,
                deadline,
                answer,
            })
            .ok()?;
        answered
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .ok()
    }
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_use_owasp_parameters() {
        let password = Password::new("correct horse battery staple".to_owned());
        let phc = hash(&password).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&password, &phc));
        assert!(!verify(
            &Password::new("wrong horse battery".to_owned()),
            &phc
        ));
        assert!(!verify(&password, "not a hash"));
    }

    #[test]
    fn the_checker_answers_until_the_deadline_and_not_after() {
        let checker = Checker::new();
        let password = Password::new("correct horse battery staple".to_owned());
        let phc = hash(&password).unwrap();
        let soon = || std::time::Instant::now() + std::time::Duration::from_secs(30);
        assert_eq!(
            checker.check(&password, Some(phc.clone()), soon()),
            Some(true)
        );
        let wrong = Password::new("wrong horse battery".to_owned());
        assert_eq!(
            checker.check(&wrong, Some(phc.clone()), soon()),
            Some(false)
        );
        assert_eq!(checker.check(&password, None, soon()), Some(false));
        let past = std::time::Instant::now();
        assert_eq!(checker.check(&password, Some(phc), past), None);
    }

    #[test]
    fn a_password_never_shows_itself() {
        let password = Password::new("hunter2hunter2".to_owned());
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
    }

    #[test]
    fn new_passwords_need_twelve_characters() {
        assert!(Password::new("short".into()).check_new().is_err());
        assert!(Password::new("twelve chars".into()).check_new().is_ok());
        assert!(Password::new("x".repeat(2000)).check_new().is_err());
    }
}
