//! The `db` capability and the host's tables on PostgreSQL, in the throwaway
//! cluster `cargo xtask test` starts: the deploy step provisions one role
//! per guest and keeps it in step with the manifest; grants are enforced
//! twice (the host's check, then the role's own privileges, shown with the
//! host out of the way); PostgreSQL's own attacks get a typed error and
//! change nothing; calls stop at their deadline on the server too;
//! concurrent writers are serialized; one guest's pool is its own.
//!
//! Past 600 lines on purpose: one case per PostgreSQL-only rule, each
//! with its own setup; TLS has a file of its own (`postgres_tls.rs`).

use crate::common;

use common::{ProbeApp, err, execute, get_with, json, query, rawalite, stderr, stdout};
use rawalite_host::capabilities::ErrorCode;
use rawalite_host::capabilities::session::Caller;
use rawalite_host::database::postgres::{DatabaseUrl, Postgres};
use rawalite_host::runtime::{Guest, Outcome};
use serde_json::json;
use std::time::{Duration, Instant};

const GUESTS: &str = r#"
[[guest]]
name = "reader"
component = "{probe}"
[guest.db]
read = ["customers"]

[[guest]]
name = "writer"
component = "{probe}"
[guest.limits]
timeout_ms = 3000
[guest.db]
read = ["customers"]
write = ["customers", "invoices", "invoice_items"]

[[guest]]
name = "slow"
component = "{probe}"
[guest.limits]
timeout_ms = 300
[guest.db]
read = ["customers"]

[[guest]]
name = "hog"
component = "{probe}"
[guest.limits]
timeout_ms = 5000
[guest.db]
read = ["invoices"]

[[guest]]
name = "hungry"
component = "{probe}"
[guest.limits]
timeout_ms = 30000
[guest.db]
read = ["customers"]
"#;

/// An app of [`GUESTS`] on a fresh database of the test cluster.
fn app() -> ProbeApp {
    ProbeApp::open_on_postgres(GUESTS)
}

/// `psql` as `role` on the app's database: what a guest's role may do
/// with the host's check out of the way. `Err` carries PostgreSQL's words.
/// Its transactions read-write, as a guest's writes begin theirs: the
/// privileges are what is tried, not the role's read-only default.
fn as_role(f: &ProbeApp, role: &str, sql: &str) -> Result<String, String> {
    let url =
        f.app
            .manifest
            .database
            .clone()
            .unwrap()
            .replacen("postgres@", &format!("{role}@"), 1)
            + "&options=-c%20default_transaction_read_only%3Doff";
    let out = common::psql(&url, sql);
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(stderr(&out))
    }
}

/// The role of guest `guest`.
fn role(f: &ProbeApp, guest: &str) -> String {
    let url = f.app.manifest.database.clone().unwrap();
    let db = url
        .split('/')
        .nth(3)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    format!("{db}_g_{guest}")
}

/// Row counts of every table of both schemas.
fn counts(f: &ProbeApp) -> Vec<String> {
    f.sql(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema IN ('app', 'host') ORDER BY 1",
    )
    .into_iter()
    .map(|t| format!("{t}={}", f.number(&format!("SELECT count(*) FROM {t}"))))
    .collect()
}

#[test]
fn migrate_provisions_roles_idempotently_and_serve_refuses_drift() {
    let f = app();
    let m = f.manifest.to_str().unwrap();
    let cache = f.dir.path().join("cache");
    // Twice at once: the advisory lock makes them take turns.
    let twice: Vec<_> = (0..2)
        .map(|_| {
            let m = m.to_owned();
            let cache = cache.clone();
            std::thread::spawn(move || rawalite(&["migrate", "--manifest", &m], &cache))
        })
        .collect();
    for out in twice {
        let out = out.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));
    }
    let privileges = |table: &str, privilege: &str| {
        f.sql(&format!(
            "SELECT has_table_privilege('{}', 'app.{table}', '{privilege}')",
            role(&f, "writer")
        ))[0]
            .clone()
    };
    assert_eq!(privileges("customers", "INSERT"), "t");
    assert_eq!(privileges("settings", "SELECT"), "f");

    // The manifest takes writer's write grant away: every command refuses
    // until migrate revokes it.
    let narrowed = std::fs::read_to_string(&f.manifest).unwrap().replace(
        "write = [\"customers\", \"invoices\", \"invoice_items\"]\n",
        "",
    );
    std::fs::write(&f.manifest, narrowed).unwrap();
    let out = rawalite(
        &["render", "--manifest", m, "--guest", "writer", "/"],
        &cache,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("out of step") && stderr(&out).contains("rawalite migrate"),
        "{}",
        stderr(&out)
    );
    let out = rawalite(&["migrate", "--manifest", m], &cache);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(privileges("customers", "INSERT"), "f");
    assert_eq!(privileges("customers", "SELECT"), "t");

    // A guest the manifest no longer has keeps nothing and cannot log in.
    let without_slow = std::fs::read_to_string(&f.manifest).unwrap();
    let without_slow = &without_slow[..without_slow.find("[[guest]]\nname = \"slow\"").unwrap()];
    std::fs::write(&f.manifest, without_slow).unwrap();
    let out = rawalite(&["migrate", "--manifest", m], &cache);
    assert!(
        stdout(&out).contains("its privileges were revoked"),
        "{}",
        stdout(&out)
    );
    let login = f.sql(&format!(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}'",
        role(&f, "slow")
    ));
    assert_eq!(login, ["f"]);
    // doctor agrees.
    let out = rawalite(&["doctor", "--manifest", m], &cache);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("every guest's role has exactly its grant"));

    // It warns while the guests' roles may connect to another database
    // (PUBLIC may, by default), and names it.
    let reached = |out: &std::process::Output| -> Vec<String> {
        let text = stdout(out);
        let Some(line) = text
            .lines()
            .find(|l| l.contains("may connect to other databases"))
        else {
            return Vec::new();
        };
        assert!(line.starts_with("WARN"), "{line}");
        assert!(line.contains("pg_hba.conf"), "{line}");
        let list = line.split("of the cluster: ").nth(1).unwrap();
        list[..list.find(". Confine").unwrap()]
            .split(", ")
            .map(str::to_owned)
            .collect()
    };
    assert!(
        reached(&out).contains(&"postgres".to_owned()),
        "{}",
        stdout(&out)
    );
    let admin = format!(
        "postgres://postgres@/postgres?host={}",
        std::env::var("RAWALITE_TEST_POSTGRES").unwrap()
    );
    common::psql_value(&admin, "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC");
    let out = rawalite(&["doctor", "--manifest", m], &cache);
    common::psql_value(&admin, "GRANT CONNECT ON DATABASE postgres TO PUBLIC");
    assert!(
        !reached(&out).contains(&"postgres".to_owned()),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_second_wall_holds_with_the_first_out_of_the_way() {
    let f = app();
    let reader = role(&f, "reader");
    let writer = role(&f, "writer");
    assert!(as_role(&f, &reader, "SELECT count(*) FROM customers").is_ok());
    // A guest role's transactions are read-only unless they say otherwise.
    let url = f.app.manifest.database.clone().unwrap();
    let out = common::psql(
        &url.replacen("postgres@", &format!("{writer}@"), 1),
        "INSERT INTO customers (name) VALUES ('x')",
    );
    assert!(
        stderr(&out).contains("cannot execute INSERT in a read-only transaction"),
        "{}",
        stderr(&out)
    );
    for (role, sql, refusal) in [
        (
            &reader,
            "SELECT * FROM host.users",
            "permission denied for schema host",
        ),
        (
            &reader,
            "SELECT * FROM invoices",
            "permission denied for table invoices",
        ),
        (
            &reader,
            "INSERT INTO customers (name) VALUES ('x')",
            "permission denied for table customers",
        ),
        (
            &writer,
            "SELECT * FROM settings",
            "permission denied for table settings",
        ),
        (&writer, "TRUNCATE customers", "permission denied"),
        (
            &reader,
            "SET ROLE postgres",
            "permission denied to set role",
        ),
        (
            &reader,
            "SELECT set_config('role', 'postgres', true)",
            "permission denied for function set_config",
        ),
        (
            &reader,
            "CREATE TABLE t (x int)",
            "permission denied for schema app",
        ),
        (
            &reader,
            "CREATE TEMP TABLE t (x int)",
            "permission denied to create temporary tables",
        ),
        (
            &reader,
            "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
            "permission denied for schema app",
        ),
        (&reader, "CREATE EXTENSION dblink", "permission denied"),
        (
            &reader,
            "SELECT pg_read_file('/etc/passwd')",
            "permission denied for function pg_read_file",
        ),
        (
            &reader,
            "SELECT pg_ls_dir('.')",
            "permission denied for function pg_ls_dir",
        ),
        (
            &reader,
            "SELECT lo_from_bytea(0, 'x')",
            "permission denied for function lo_from_bytea",
        ),
        (
            &reader,
            "DO $$ BEGIN END $$",
            "permission denied for language plpgsql",
        ),
        (
            &reader,
            "COPY customers TO '/tmp/x'",
            "must be superuser or have privileges of the pg_write_server_files role",
        ),
        (
            &reader,
            "SELECT pg_sleep(0)",
            "permission denied for function pg_sleep",
        ),
        (
            &reader,
            "SELECT pg_advisory_lock(1)",
            "permission denied for function pg_advisory_lock",
        ),
        (
            &reader,
            "SELECT pg_notify('c', 'x')",
            "permission denied for function pg_notify",
        ),
        (
            &reader,
            "SELECT pg_terminate_backend(1)",
            "permission denied for function pg_terminate_backend",
        ),
        // The statistics views show live counters of the host's tables
        // and every session's role; migrate (as a superuser) revokes them
        // and the functions under them from PUBLIC.
        (
            &reader,
            "SELECT count(*) FROM pg_stat_user_tables",
            "permission denied for view pg_stat_user_tables",
        ),
        (
            &reader,
            "SELECT count(*) FROM pg_stat_activity",
            "permission denied for view pg_stat_activity",
        ),
        (
            &reader,
            "SELECT pg_stat_get_live_tuples(1259)",
            "permission denied for function pg_stat_get_live_tuples",
        ),
    ] {
        let refused = as_role(&f, role, sql).expect_err(sql);
        assert!(refused.contains(refusal), "{sql}: {refused}");
    }
    // A role of another database's app cannot even connect here.
    assert!(as_role(&f, "nobody_g_reader", "SELECT 1").is_err());
}

#[test]
fn postgresql_attacks_get_their_code_and_change_nothing() {
    let f = app();
    let writer = f.guest("writer");
    let before = counts(&f);
    for sql in [
        "SELECT relname AS r FROM pg_class",
        "SELECT attname AS a FROM pg_attribute",
        "SELECT rolname AS r, rolpassword AS p FROM pg_authid",
        "SELECT table_name AS t FROM information_schema.tables",
        "SELECT * FROM host.users",
        "SELECT password_hash FROM users",
        "SET statement_timeout = 0",
        "SET ROLE postgres",
        "RESET ALL",
        "SHOW search_path",
        "SELECT set_config('statement_timeout', '0', true) AS s",
        "COPY customers TO STDOUT",
        "COPY customers TO '/tmp/stolen'",
        "COPY customers FROM PROGRAM 'id'",
        "SELECT pg_read_file('/etc/passwd') AS f",
        "SELECT pg_ls_dir('.') AS d",
        "SELECT lo_from_bytea(0, 'x') AS l",
        "SELECT lo_import('/etc/passwd') AS l",
        "DO $$ BEGIN PERFORM 1; END $$",
        "LISTEN channel",
        "NOTIFY channel",
        "SELECT pg_notify('channel', 'x') AS n",
        "SELECT pg_advisory_lock(1) AS l",
        "SELECT pg_try_advisory_lock(1) AS l",
        "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "EXPLAIN ANALYZE SELECT * FROM customers",
        "CALL p()",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "START TRANSACTION",
        "SELECT 1 AS a; DELETE FROM customers",
        "SELECT pg_sleep(10) AS s",
        "SELECT pg_terminate_backend(pg_backend_pid()) AS t",
        "SELECT $a$ ' $a$ AS x, 1 AS smuggled --'",
        "SELECT E'\\'' AS x, pg_sleep(1) AS y --'",
        "SELECT repeat('x', 200000000) AS r",
        "SELECT lpad('x', 200000000) AS r",
        "SELECT string_agg(name, ',') AS s FROM customers, customers c2, customers c3",
        "SELECT count(*) AS n FROM generate_series(1, 1000000000)",
        "WITH d AS (DELETE FROM customers RETURNING id) SELECT id FROM d",
        "CREATE TABLE t (x bigint)",
        "DROP TABLE customers",
        "TRUNCATE customers",
        "VACUUM customers",
        "INSERT INTO customers (name) VALUES ('x') RETURNING id",
    ] {
        for outcome in [query(&writer, sql, &[]), execute(&writer, sql, &[])] {
            let e = err(outcome);
            assert!(
                matches!(e.code, ErrorCode::InvalidInput | ErrorCode::Denied),
                "{sql}: {e:?}"
            );
            assert!(!e.message.contains("password_hash"), "{sql}: {}", e.message);
        }
    }
    // A parameter bound for generate_series is not a literal bound either.
    let e = err(query(
        &writer,
        "SELECT count(*) AS n FROM generate_series(1, ?)",
        &["i:1000000000"],
    ));
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    assert_eq!(counts(&f), before, "something changed");
    // And the guest's connections still work.
    json(query(&writer, "SELECT count(*) AS n FROM customers", &[]));
}

#[test]
fn values_and_errors_cross_as_on_sqlite() {
    let f = app();
    let writer = f.guest("writer");
    let ada = json(execute(
        &writer,
        "INSERT INTO customers (name, email) VALUES (?, ?)",
        &["t:Ada", "t:ada@example.org"],
    ));
    assert_eq!(ada["changed"], 1);
    assert!(ada["last_insert_rowid"].as_i64().unwrap() > 0, "{ada}");
    let id = ada["last_insert_rowid"].to_string();
    let invoice = format!(
        "INSERT INTO invoices (number, customer_id, issued_on, total_cents) VALUES ((SELECT coalesce(max(number), 0) + 1 FROM invoices), {id}, date('now'), ?)"
    );
    json(execute(&writer, &invoice, &["i:1000"]));
    json(execute(&writer, &invoice, &["i:2001"]));
    let rows = json(query(
        &writer,
        "SELECT sum(total_cents) AS total, avg(total_cents) AS mean, count(*) AS n, max(number) AS last, \
         max(issued_on) AS day, min(total_cents) > 1500 AS big FROM invoices",
        &[],
    ));
    assert_eq!(rows["rows"][0][0], 3001, "numeric sums read as integers");
    assert_eq!(rows["rows"][0][1], 1500.5, "and averages as reals");
    assert_eq!(rows["rows"][0][2], 2);
    assert_eq!(rows["rows"][0][3], 2);
    assert_eq!(
        rows["rows"][0][4].as_str().unwrap().len(),
        10,
        "date('now') as YYYY-MM-DD"
    );
    assert_eq!(rows["rows"][0][5], 0, "booleans as 0/1");
    // Constraint violations in SQLite's words.
    for (sql, words) in [
        (
            "INSERT INTO customers (name, email) VALUES ('Ada again', 'ADA@example.org')",
            "UNIQUE constraint failed: customers_email",
        ),
        (
            "INSERT INTO invoices (number, customer_id, issued_on) VALUES (99, 999, '2026-01-01')",
            "FOREIGN KEY constraint failed",
        ),
        (
            "INSERT INTO customers (name) VALUES ('')",
            "CHECK constraint failed",
        ),
        (
            "INSERT INTO customers (email) VALUES ('x@example.org')",
            "NOT NULL constraint failed",
        ),
    ] {
        let e = err(execute(&writer, sql, &[]));
        assert_eq!(e.code, ErrorCode::Conflict, "{sql}: {e:?}");
        assert!(e.message.contains(words), "{sql}: {}", e.message);
    }
    // A transaction is all or nothing.
    let mut req = get_with("/db/transaction", &[]);
    req.method = "POST".into();
    req.body = json!([
        {"sql": "INSERT INTO customers (name) VALUES (?)", "params": ["t:Linus"]},
        {"sql": "INSERT INTO customers (name, email) VALUES ('dup', 'ada@example.org')"},
    ])
    .to_string()
    .into_bytes();
    let e = err(writer.render(&req, Caller::default()).outcome);
    assert!(
        e.message.starts_with("statement 2: UNIQUE"),
        "{}",
        e.message
    );
    assert_eq!(
        f.number("SELECT count(*) FROM customers WHERE name = 'Linus'"),
        0
    );
}

#[test]
fn concurrent_writers_are_serialized_and_retried() {
    let f = app();
    let writer = std::sync::Arc::new(f.guest("writer"));
    let id = json(execute(
        &writer,
        "INSERT INTO customers (name) VALUES ('Ada')",
        &[],
    ))["last_insert_rowid"]
        .to_string();
    // Invoice numbers come from max(number) + 1 in the inserting statement:
    // under SERIALIZABLE with retries, eight writers at once still get a
    // gapless sequence.
    let sql = format!(
        "INSERT INTO invoices (number, customer_id, issued_on) VALUES ((SELECT coalesce(max(number), 0) + 1 FROM invoices), {id}, '2026-11-28')"
    );
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (writer, sql) = (writer.clone(), sql.clone());
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| match execute(&writer, &sql, &[]) {
                        Outcome::Response(_) => true,
                        Outcome::Error(e) if e.code == ErrorCode::Conflict => false,
                        other => panic!("{other:?}"),
                    })
                    .filter(|ok| *ok)
                    .count()
            })
        })
        .collect();
    let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written >= 30, "only {written} of 40 got through");
    let numbers = f.sql("SELECT number FROM invoices ORDER BY number");
    let expected: Vec<String> = (1..=written).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected, "gapless and unique");
}

#[test]
fn a_query_past_its_deadline_is_cancelled_on_the_server() {
    let f = app();
    let slow = f.guest("slow");
    let role = role(&f, "slow");
    let started = Instant::now();
    let outcome = query(
        &slow,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c",
        &[],
    );
    let took = started.elapsed();
    let stopped = match &outcome {
        Outcome::Error(e) => e.code == ErrorCode::Timeout,
        Outcome::Stopped(_) => true,
        _ => false,
    };
    assert!(stopped, "{outcome:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    nothing_runs_as(&f, &role, "the query ran on after its deadline");
    // The next call is served, on a fresh connection.
    json(query(&slow, "SELECT count(*) AS n FROM customers", &[]));
}

#[test]
fn calls_from_inside_a_runtime_task_are_not_starved() {
    // Regression: a guest renders inside a task of its thread's runtime, and
    // each database call once spent that task's cooperative budget; past
    // it, a call waited out its deadline instead of its answer (the bench
    // hung on it). Here a thousand calls run within one poll of one task.
    let url = common::pg_database();
    let postgres = Postgres::connect(&DatabaseUrl::parse(&url).unwrap()).unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..1000 {
                postgres.size().unwrap();
            }
        });
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("a thousand calls from one task finish");
}

#[test]
fn a_connection_serves_only_the_runtime_that_watches_it() {
    // A guest rendered outside `serve` (`rawalite render`, the tests) runs
    // on a runtime of its thread's own, which waits on its connection's
    // socket itself and reads it only while it runs. Twelve threads each
    // leave such a connection idle in the pool and stay alive: a call on
    // another thread must take none of them (it would wait out its
    // deadline for an answer nobody reads), and the pool still holds no
    // more connections than its size.
    let f = app();
    let reader = std::sync::Arc::new(f.guest("reader"));
    let (queried, all_queried) = std::sync::mpsc::channel();
    let release = std::sync::Arc::new(std::sync::Barrier::new(13));
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (reader, queried, release) = (reader.clone(), queried.clone(), release.clone());
            std::thread::spawn(move || {
                json(query(&reader, "SELECT count(*) AS n FROM customers", &[]));
                queried.send(()).unwrap();
                release.wait();
            })
        })
        .collect();
    for _ in 0..12 {
        all_queried
            .recv_timeout(Duration::from_secs(30))
            .expect("each thread's query is answered");
    }
    for _ in 0..3 {
        json(query(&reader, "SELECT count(*) AS n FROM customers", &[]));
    }
    let pool = rawalite_host::database::postgres::GUEST_CONNECTIONS as i64;
    wait_for(
        &f,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{}'",
            role(&f, "reader")
        ),
        |open| open <= pool,
        "one guest has more connections open than its pool's size",
    );
    release.wait();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// Waits until no statement of `role` runs on the server, for at most 5 s.
fn nothing_runs_as(f: &ProbeApp, role: &str, why: &str) {
    wait_for(f, &active(role), |running| running == 0, why);
}

/// How many statements of `role` run on the server.
fn active(role: &str) -> String {
    format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND state = 'active'")
}

/// Waits until the number `sql` returns is `done`, for at most 5 s.
fn wait_for(f: &ProbeApp, sql: &str, done: impl Fn(i64) -> bool, why: &str) {
    let waited = Instant::now();
    while !done(f.number(sql)) {
        assert!(waited.elapsed() < Duration::from_secs(5), "{why}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_result_past_the_limits_stops_on_the_server() {
    let f = app();
    let hungry = f.guest("hungry");
    // Endless rows: the guest's row limit ends the call long before its
    // 30 s deadline would.
    let started = Instant::now();
    let outcome = query(
        &hungry,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
        &[],
    );
    assert_eq!(err(outcome).code, ErrorCode::TooLarge);
    assert!(started.elapsed() < Duration::from_secs(15));
    nothing_runs_as(
        &f,
        &role(&f, "hungry"),
        "the query ran on after its call stopped",
    );
    json(query(&hungry, "SELECT count(*) AS n FROM customers", &[]));
}

#[test]
fn one_guest_exhausting_its_pool_does_not_stall_another() {
    let f = app();
    let hog = std::sync::Arc::new(f.guest("hog"));
    let reader = f.guest("reader");
    // `hog`'s reads wait on a lock held for 6 s: each holds one of its
    // connections until its 5 s deadline, idle on the server.
    let url = f.app.manifest.database.clone().unwrap();
    let mut lock = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &url, "-c"])
        .arg("BEGIN; LOCK TABLE app.invoices IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT;")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs");
    wait_for(
        &f,
        "SELECT count(*) FROM pg_locks WHERE relation = 'app.invoices'::regclass AND mode = 'AccessExclusiveLock' AND granted",
        |held| held == 1,
        "the lock was never taken",
    );
    // Sixteen requests of `hog` at once: twice its pool.
    let hogs: Vec<_> = (0..16)
        .map(|_| {
            let hog = hog.clone();
            std::thread::spawn(move || query(&hog, "SELECT count(*) AS n FROM invoices", &[]))
        })
        .collect();
    let pool = rawalite_host::database::postgres::GUEST_CONNECTIONS as i64;
    wait_for(
        &f,
        &active(&role(&f, "hog")),
        |running| running == pool,
        "the hogs never held the whole pool",
    );
    for _ in 0..5 {
        json(query(&reader, "SELECT count(*) AS n FROM customers", &[]));
    }
    assert!(
        hogs.iter().all(|hog| !hog.is_finished()),
        "the other guest was served only once the hogs had let their connections go"
    );
    for hog in hogs {
        let outcome = hog.join().unwrap();
        assert!(
            matches!(&outcome, Outcome::Error(e) if e.code == ErrorCode::Timeout)
                || matches!(outcome, Outcome::Stopped(_)),
            "{outcome:?}"
        );
    }
    assert!(lock.wait().unwrap().success());
}

#[test]
fn a_postgresql_password_is_never_shown() {
    let f = app();
    let url = f.app.manifest.database.clone().unwrap();
    let secret = url.replacen("postgres@", "postgres:hunter2-secret@", 1);
    let m = f.manifest.to_str().unwrap();
    let cache = f.dir.path().join("cache");
    for args in [
        vec!["migrate", "--manifest", m, "--database", &secret],
        vec!["doctor", "--manifest", m, "--database", &secret],
        vec!["user", "list", "--manifest", m, "--database", &secret],
        vec!["backup", "x.tar.gz", "--manifest", m, "--database", &secret],
        vec![
            "render",
            "--manifest",
            m,
            "--guest",
            "reader",
            "--database",
            &secret,
            "/db/query?sql=SELECT%201%20AS%20a",
        ],
    ] {
        let out = rawalite(&args, &cache);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.contains("hunter2"), "{args:?}: {text}");
    }
    let broken = secret.replace("/t", "/no_such_database_t");
    let out = rawalite(&["doctor", "--manifest", m, "--database", &broken], &cache);
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("hunter2"));
}

#[test]
fn a_job_runs_on_one_host_per_interval() {
    // Two hosts' connections to one database: each interval is claimed by
    // exactly one of them.
    let url = DatabaseUrl::parse(&common::pg_database()).unwrap();
    let (a, b) = (
        Postgres::connect(&url).unwrap(),
        Postgres::connect(&url).unwrap(),
    );
    a.migrate(Vec::new()).unwrap();
    let every = Duration::from_millis(500);
    assert!(a.claim("sweep", every).unwrap(), "the first claim");
    assert!(!b.claim("sweep", every).unwrap(), "claimed already");
    assert!(
        !a.claim("sweep", every).unwrap(),
        "claimed already, by itself too"
    );
    std::thread::sleep(every);
    assert!(b.claim("sweep", every).unwrap(), "the next interval");
    assert!(!a.claim("sweep", every).unwrap());
    assert!(a.claim("other", every).unwrap(), "jobs are claimed apart");
}

/// The review's reads of PostgreSQL's catalogs through the host (a common
/// table expression named like a catalog, `UNION TABLE`, words and
/// attribute notation that call functions), as a guest granted one table:
/// the host refuses each itself, before PostgreSQL sees it.
#[test]
fn no_statement_reads_the_catalogs_past_the_host() {
    let f = app();
    let reader = f.guest("reader");
    for sql in [
        "WITH pg_roles AS (SELECT rolname FROM pg_roles) SELECT CAST(rolname AS TEXT) AS r FROM pg_roles",
        "WITH pg_stat_all_tables AS (SELECT relname, n_live_tup FROM pg_stat_all_tables WHERE schemaname = 'host') SELECT CAST(relname AS TEXT) AS t FROM pg_stat_all_tables",
        "WITH pg_database AS (SELECT datname FROM pg_database) SELECT CAST(datname AS TEXT) AS d FROM pg_database",
        "WITH pg_attribute AS (SELECT attname FROM pg_attribute) SELECT CAST(attname AS TEXT) AS a FROM pg_attribute",
        "WITH b AS (SELECT rolname FROM a), a AS (SELECT name FROM customers) SELECT rolname FROM b",
        "SELECT id FROM customers UNION TABLE host.users",
        "SELECT id FROM customers UNION TABLE pg_authid",
        "SELECT CAST(name AS TEXT) AS a, CAST(name AS TEXT) AS b, CAST(name AS TEXT) AS c FROM customers UNION TABLE information_schema.applicable_roles",
        "SELECT id FROM customers WHERE id IN (SELECT id FROM customers UNION TABLE pg_roles)",
        "SELECT current_schema AS a",
        "SELECT current_role AS a",
        "SELECT current_user AS a",
        "SELECT session_user AS a FROM customers",
        "SELECT group_concat(name, current_user) AS a FROM customers",
        "SELECT c.row_to_json AS j FROM customers c",
        "SELECT c.pg_typeof AS j FROM customers c",
        "SELECT name.md5 AS j FROM customers",
        "SELECT relname FROM pg_class",
        "SELECT count(*) AS n FROM pg_stat_activity",
    ] {
        let e = err(query(&reader, sql, &[]));
        assert!(
            matches!(e.code, ErrorCode::Denied | ErrorCode::InvalidInput),
            "{sql}: {e:?}"
        );
        assert!(
            !e.message.contains("the database refused"),
            "{sql}: refused by PostgreSQL, not by the host: {}",
            e.message
        );
    }
}

/// A database's or a role's setting that changes how PostgreSQL reads a
/// string (`standard_conforming_strings = off` reads `'a\'` as the start of
/// a longer string) does not reach a guest's connections: the statement
/// runs as the host's check read it.
#[test]
fn a_setting_cannot_make_postgresql_read_a_statement_otherwise() {
    let f = app();
    let database = f.sql("SELECT current_database()").remove(0);
    f.sql(&format!(
        "ALTER DATABASE {database} SET standard_conforming_strings = off"
    ));
    f.sql(&format!(
        "ALTER ROLE {} SET standard_conforming_strings = off",
        role(&f, "reader")
    ));
    f.sql(&format!(
        "ALTER ROLE {} SET transform_null_equals = on",
        role(&f, "reader")
    ));
    json(execute(
        &f.guest("writer"),
        "INSERT INTO customers (name) VALUES ('Ada')",
        &[],
    ));
    let reader = f.guest("reader");
    let smuggled = r"SELECT 'a\' AS x, ' AS y, version() AS z, (SELECT count(*) FROM pg_roles) AS roles --' AS w";
    let answer = json(query(&reader, smuggled, &[]));
    assert_eq!(
        answer,
        json!({"columns": ["x", "w"], "rows": [["a\\", " AS y, version() AS z, (SELECT count(*) FROM pg_roles) AS roles --"]]}),
    );
    // `= NULL` stays unknown, as on SQLite, whatever the role's setting.
    let answer = json(query(
        &reader,
        "SELECT count(*) AS n FROM customers WHERE NULL = NULL",
        &[],
    ));
    assert_eq!(answer["rows"], json!([[0]]));
}

/// The private memory of the backends of `role` (what they hold that no
/// other process shares), in bytes.
fn private_memory(f: &ProbeApp, role: &str) -> u64 {
    f.sql(&format!(
        "SELECT pid FROM pg_stat_activity WHERE usename = '{role}'"
    ))
    .iter()
    .map(|pid| {
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .unwrap_or_else(|e| panic!("the backend {pid}'s memory: {e}"));
        rollup
            .lines()
            .filter(|l| l.starts_with("Private_"))
            .map(|l| {
                let kib: u64 = l.split_whitespace().nth(1).unwrap().parse().unwrap();
                kib << 10
            })
            .sum::<u64>()
    })
    .sum()
}

/// What one guest can make the server hold is bounded: eight clients
/// sending 320 distinct statements of ~45 KiB (each a plan of megabytes,
/// were it kept) through one guest leave its backends small, and the
/// host's own cache of checked statements too.
#[test]
fn distinct_large_statements_leave_the_server_small() {
    let f = app();
    let role = role(&f, "hungry");
    let ids: Vec<String> = (100_000..106_400).map(|n: u32| n.to_string()).collect();
    let in_list = ids.join(",");
    let statement = |i: usize| {
        format!("SELECT count(*) AS n FROM customers WHERE id IN ({in_list}) AND {i} = {i}")
    };
    assert!(
        (44_000..47_000).contains(&statement(0).len()),
        "{}",
        statement(0).len()
    );
    let guests: Vec<Guest> = (0..8).map(|_| f.guest("hungry")).collect();
    std::thread::scope(|s| {
        for (t, guest) in guests.iter().enumerate() {
            let statement = &statement;
            s.spawn(move || {
                for i in (t..320).step_by(8) {
                    assert_eq!(json(query(guest, &statement(i), &[]))["rows"], json!([[0]]));
                }
            });
        }
    });
    let connections = f.number(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"
    ));
    assert!(connections >= 1, "the guest's connections are gone");
    let held = private_memory(&f, &role);
    eprintln!(
        "{connections} backends of the guest hold {} MiB of private memory",
        held >> 20
    );
    assert!(
        held < 160 << 20,
        "{connections} backends of the guest hold {} MiB",
        held >> 20
    );
}
