use super::*;

fn addr(text: &str) -> Option<Address> {
    Some(Address::of(text.parse().unwrap()))
}

impl Limiter {
    /// A failure counted without an attempt, to set a scene.
    fn failed(&self, user: &str, client: Option<Address>) {
        self.update(user, client, keeping(), |_, slice| {
            for (_, count) in &mut slice.counts {
                count.failures.push_back(slice.now);
            }
        })
        .unwrap();
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        let Counts::Memory { table, .. } = &self.counts else {
            unreachable!("tests count in memory")
        };
        table.lock().unwrap()
    }
}

fn fail(limiter: &Limiter, user: &str, client: Option<Address>, times: usize) {
    for _ in 0..times {
        limiter.failed(user, client);
    }
}

#[test]
fn one_address_is_stopped_for_a_user_and_others_are_not() {
    let limiter = Limiter::new(Rules::default());
    let attacker = addr("192.0.2.7");
    for _ in 0..5 {
        // Each attempt counts as a failure until it succeeds.
        assert_eq!(limiter.admit("bob", attacker, keeping()), Ok(()));
    }
    match limiter.admit("bob", attacker, keeping()) {
        Err(Refusal(wait)) => assert!(wait > Duration::from_secs(890), "{wait:?}"),
        other => panic!("expected a wait, got {other:?}"),
    }
    // Bob from anywhere else, and the attacker for another user, may try.
    assert_eq!(
        limiter.admit("bob", addr("198.51.100.1"), keeping()),
        Ok(())
    );
    assert_eq!(limiter.admit("ada", attacker, keeping()), Ok(()));
}

#[test]
fn an_address_trying_many_users_is_stopped() {
    let limiter = Limiter::new(Rules::default());
    let attacker = addr("192.0.2.8");
    for i in 0..20 {
        limiter.failed(&format!("user{i}"), attacker);
    }
    assert!(limiter.admit("someone", attacker, keeping()).is_err());
    assert_eq!(
        limiter.admit("someone", addr("192.0.2.9"), keeping()),
        Ok(())
    );
}

#[test]
fn a_user_attacked_from_many_addresses_is_slowed_not_locked_out() {
    let limiter = Limiter::new(Rules::default());
    for i in 0..10 {
        fail(&limiter, "bob", addr(&format!("203.0.113.{i}")), 2);
    }
    // From an unfamiliar address: one try now, then wait the pace.
    let fresh = addr("198.51.100.2");
    assert_eq!(limiter.admit("bob", fresh, keeping()), Ok(()));
    match limiter.admit("bob", addr("198.51.100.3"), keeping()) {
        Err(Refusal(wait)) => assert!(wait <= Duration::from_secs(10), "{wait:?}"),
        other => panic!("expected a short wait, got {other:?}"),
    }
    // From where bob signed in before: no wait at all.
    let home = addr("198.51.100.50");
    limiter.succeeded("bob", home);
    assert_eq!(limiter.admit("bob", home, keeping()), Ok(()));
    assert_eq!(limiter.admit("bob", home, keeping()), Ok(()));
}

#[test]
fn a_success_forgives_the_pair_but_not_the_address() {
    let limiter = Limiter::new(Rules::default());
    let client = addr("192.0.2.10");
    fail(&limiter, "ada", client, 4);
    limiter.succeeded("ada", client);
    fail(&limiter, "ada", client, 4);
    assert_eq!(
        limiter.admit("ada", client, keeping()),
        Ok(()),
        "the pair was forgiven"
    );
    fail(&limiter, "ada", client, 12);
    assert!(
        limiter.admit("ada", client, keeping()).is_err(),
        "20 from one address"
    );
}

#[test]
fn ipv6_counts_per_64_and_v4_mapped_as_v4() {
    assert_eq!(
        Address::of("2001:db8::1".parse().unwrap()),
        Address::of("2001:db8::ffff:1".parse().unwrap())
    );
    assert_ne!(
        Address::of("2001:db8::1".parse().unwrap()),
        Address::of("2001:db8:0:1::1".parse().unwrap())
    );
    assert_eq!(
        Address::of("::ffff:192.0.2.1".parse().unwrap()),
        Address::of("192.0.2.1".parse().unwrap())
    );
}

#[test]
fn names_that_cannot_exist_share_one_key() {
    assert_eq!(user_key(&"x".repeat(10_000)), user_key("a b"));
    assert_eq!(user_key("Ada"), "ada");
}

#[test]
fn a_full_table_evicts_the_least_failed_and_lets_new_clients_in() {
    let limiter = Limiter::new(Rules {
        keys: 40,
        ..Rules::default()
    });
    // An attacker fills the table with one failure per key...
    for i in 0..30 {
        limiter.failed(&format!("user{i}"), None);
    }
    // ...while a guesser has four failures on bob from one address.
    let guesser = addr("192.0.2.66");
    fail(&limiter, "bob", guesser, 4);
    for i in 30..200 {
        limiter.failed(&format!("user{i}"), None);
    }
    assert!(limiter.table().counts.len() <= 40);
    // Carol, new, is let in; the guesser's counts were kept.
    assert_eq!(
        limiter.admit("carol", addr("198.51.100.9"), keeping()),
        Ok(())
    );
    assert_eq!(
        limiter.admit("bob", guesser, keeping()),
        Ok(()),
        "the fifth try"
    );
    assert!(
        limiter.admit("bob", guesser, keeping()).is_err(),
        "no sixth"
    );
}

#[test]
fn attempts_at_once_never_pass_a_limit_together() {
    let limiter = std::sync::Arc::new(Limiter::new(Rules::default()));
    let attacker = addr("192.0.2.12");
    let admitted: usize = (0..24)
        .map(|_| {
            let limiter = limiter.clone();
            std::thread::spawn(move || limiter.admit("bob", attacker, keeping()).is_ok())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().unwrap()))
        .sum();
    assert_eq!(admitted, 5, "the pair's limit, however many at once");
}

#[test]
fn a_success_or_an_unchecked_attempt_is_forgiven() {
    let limiter = Limiter::new(Rules::default());
    let client = addr("192.0.2.13");
    for _ in 0..30 {
        assert_eq!(limiter.admit("ada", client, keeping()), Ok(()));
        limiter.succeeded("ada", client);
        assert_eq!(limiter.admit("bob", client, keeping()), Ok(()));
        limiter.forgive("bob", client);
    }
    assert_eq!(
        limiter.admit("ada", client, keeping()),
        Ok(()),
        "nothing was held against the address"
    );
}

#[test]
fn failures_leave_the_window() {
    let limiter = Limiter::new(Rules {
        window: Duration::from_millis(50),
        ..Rules::default()
    });
    let client = addr("192.0.2.11");
    fail(&limiter, "bob", client, 5);
    assert!(limiter.admit("bob", client, keeping()).is_err());
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(limiter.admit("bob", client, keeping()), Ok(()));
}

#[test]
fn a_snapshot_restores_every_count_and_familiar_address() {
    let before = Limiter::new(Rules::default());
    let attacker = addr("2001:db8::7");
    fail(&before, "bob", attacker, 5);
    fail(&before, "carol", None, 10);
    before.succeeded("ada", addr("198.51.100.1"));
    let snapshot = before.snapshot().expect("changed");
    assert!(before.snapshot().is_none(), "nothing changed since");
    // Through text, as it is stored.
    let stored: Value = serde_json::from_str(&snapshot.to_string()).unwrap();

    let after = Limiter::new(Rules::default());
    after.restore(&stored);
    match after.admit("bob", addr("2001:db8::1"), keeping()) {
        Err(Refusal(wait)) => assert!(wait > Duration::from_secs(890), "{wait:?}"),
        other => panic!("the pair's failures were lost: {other:?}"),
    }
    // carol is slowed from an unfamiliar address: one try, then a wait.
    assert_eq!(after.admit("carol", addr("192.0.2.1"), keeping()), Ok(()));
    assert!(after.admit("carol", addr("192.0.2.2"), keeping()).is_err());
    // ada's address is still familiar: her count never applies there.
    fail(&after, "ada", None, 10);
    assert_eq!(after.admit("ada", addr("198.51.100.1"), keeping()), Ok(()));
}

#[test]
fn expired_counts_are_not_restored() {
    let old = json!({"counts": [{"kind": "address", "address": "192.0.2.1", "user": null,
        "failures": [1_000, 2_000], "next_try": null}], "familiar": []});
    let limiter = Limiter::new(Rules::default());
    limiter.restore(&old);
    assert!(limiter.table().counts.is_empty());
}

proptest::proptest! {
    /// Whatever is stored, restoring it neither panics nor exceeds the
    /// table's bound.
    #[test]
    fn any_snapshot_restores_without_harm(text in ".{0,400}", keys in 1usize..4) {
        let limiter = Limiter::new(Rules { keys, ..Rules::default() });
        for v in [
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            json!({"counts": [{"kind": "pair", "address": text, "user": text, "failures": [u64::MAX, 0], "next_try": u64::MAX}]}),
            json!({"counts": text, "familiar": [{"user": "x", "seen": [[text, 1]]}]}),
        ] {
            limiter.restore(&v);
        }
        let table = limiter.table();
        proptest::prop_assert!(table.counts.len() + table.familiar.len() <= keys);
    }
}
