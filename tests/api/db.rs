//! The `db` capability against a real database file, driven through the
//! probe: grants hold for any SQL, hostile statements get their error code
//! and change nothing, transactions are all or nothing, migrations are
//! checked.
//!
//! Past 600 lines on purpose: one case per rule of the capability, each
//! on both backends, read one at a time.

use crate::common;

use rawalite_host::capabilities::session::Caller;

use common::{
    ProbeApp, assert_code, err, execute, get_with, json, manifest, query, rawalite, stderr, stdout,
    url,
};
use rawalite_host::app::App;
use rawalite_host::capabilities::ErrorCode;
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::Runtime;
use serde_json::json;
use std::path::Path;

/// Three guests on the same probe component: one that reads customers, one
/// that writes customers and invoices, one with no db grant at all.
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
timeout_ms = 500
[guest.db]
read = ["customers"]
write = ["customers", "invoices", "invoice_items"]

[[guest]]
name = "nogrant"
component = "{probe}"
"#;

/// The app of [`GUESTS`], with two customers in it.
fn fixture() -> ProbeApp {
    let f = ProbeApp::open(GUESTS);
    let writer = f.guest("writer");
    for (name, email) in [("Ada", "ada@example.org"), ("Grace", "grace@example.org")] {
        json(execute(
            &writer,
            "INSERT INTO customers (name, email) VALUES (?, ?)",
            &[&format!("t:{name}"), &format!("t:{email}")],
        ));
    }
    f
}

/// Row counts of every table, the schema, and the integrity check.
fn snapshot(f: &ProbeApp) -> (Vec<(String, i64)>, Vec<String>, String) {
    if common::on_postgres() {
        let tables = f.sql(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema IN ('app', 'host') ORDER BY 1",
        );
        let schema = f.sql(
            "SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns \
             WHERE table_schema IN ('app', 'host') ORDER BY 1",
        );
        let counts = tables
            .into_iter()
            .map(|t| {
                let n = f.number(&format!("SELECT count(*) FROM {t}"));
                (t, n)
            })
            .collect();
        return (counts, schema, "ok".into());
    }
    let conn = f.db();
    let mut schema: Vec<String> = conn
        .prepare("SELECT coalesce(sql, name) FROM sqlite_schema ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    schema.sort();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let counts = tables
        .into_iter()
        .map(|t| {
            let n = conn
                .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap();
            (t, n)
        })
        .collect();
    let integrity = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    (counts, schema, integrity)
}

#[test]
fn granted_reads_and_writes_work() {
    let f = fixture();
    let reader = f.guest("reader");
    let rows = json(query(
        &reader,
        "SELECT name FROM customers WHERE email = ? ORDER BY id",
        &["t:ada@example.org"],
    ));
    assert_eq!(rows, json!({"columns": ["name"], "rows": [["Ada"]]}));

    let writer = f.guest("writer");
    let out = json(execute(
        &writer,
        "UPDATE customers SET phone = ? WHERE name = ?",
        &["t:+49 30 1234", "t:Grace"],
    ));
    assert_eq!(out["changed"], 1);
    // Every value type crosses the boundary intact.
    let rows = json(query(
        &reader,
        "SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e",
        &[
            "n",
            "i:-9007199254740993",
            "r:1.5",
            "t:Grüße 'x'",
            "b:00ff10",
        ],
    ));
    assert_eq!(
        rows["rows"],
        json!([[null, -9007199254740993i64, 1.5, "Grüße 'x'", {"blob": "00ff10"}]])
    );
}

#[test]
fn read_only_grant_cannot_write() {
    let f = fixture();
    let before = snapshot(&f);
    let reader = f.guest("reader");
    for sql in [
        "INSERT INTO customers (name) VALUES ('Mallory')",
        "UPDATE customers SET name = 'Mallory'",
        "DELETE FROM customers",
    ] {
        assert_code(
            execute(&reader, sql, &[]),
            ErrorCode::Denied,
            "db.write grant",
        );
    }
    assert_eq!(snapshot(&f), before);
}

#[test]
fn guest_without_db_grant_can_do_nothing() {
    let f = fixture();
    let nogrant = f.guest("nogrant");
    assert_code(
        query(&nogrant, "SELECT 1", &[]),
        ErrorCode::Denied,
        "no db grant",
    );
    assert_code(
        execute(&nogrant, "DELETE FROM customers", &[]),
        ErrorCode::Denied,
        "no db grant",
    );
}

/// Every kind of value reads back exactly, through the packed query the SDK
/// uses and through `db.query` itself, which older guests call.
#[test]
fn every_kind_of_value_reads_back_the_same_both_ways() {
    let f = fixture();
    let reader = f.guest("reader");
    let params = [
        "n",
        "i:0",
        "i:-9223372036854775808",
        "i:9223372036854775807",
        "r:1.5",
        "r:-0.0",
        "r:1e308",
        "t:",
        "t:Köln 漢字 🦀 \"quoted\" \\ \n",
        "b:",
        "b:00ff7f80",
    ];
    // Text that is not UTF-8 is SQLite's own: PostgreSQL's never is.
    let invalid_utf8 = if common::on_postgres() {
        ""
    } else {
        ", CAST(x'c3ff' AS TEXT) AS invalid_utf8"
    };
    let sql = format!(
        "SELECT {}{invalid_utf8}",
        (1..=params.len())
            .map(|i| format!("?{i} AS v{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let read = |route: &str| {
        let mut pairs = vec![("sql", sql.as_str())];
        pairs.extend(params.iter().map(|p| ("p", *p)));
        json(
            reader
                .render(&get_with(route, &pairs), Caller::default())
                .outcome,
        )
    };
    let packed = read("/db/query");
    assert_eq!(packed, read("/db/query-rows"));
    let mut row = packed["rows"][0].clone();
    if common::on_postgres() {
        row.as_array_mut().unwrap().push(json!("\u{fffd}\u{fffd}"));
    }
    assert_eq!(
        row,
        json!([
            null,
            0,
            i64::MIN,
            i64::MAX,
            1.5,
            -0.0,
            1e308,
            "",
            "Köln 漢字 🦀 \"quoted\" \\ \n",
            {"blob": ""},
            {"blob": "00ff7f80"},
            "\u{fffd}\u{fffd}"
        ])
    );
    assert_eq!(packed["columns"][10], "v11");
}

#[test]
fn oversized_sql_and_wrong_parameter_counts_are_invalid_input() {
    let f = fixture();
    let reader = f.guest("reader");
    let long = format!("SELECT 1 -- {}", "x".repeat(70 * 1024));
    assert_code(
        query(&reader, &long, &[]),
        ErrorCode::InvalidInput,
        "longer than 65536 bytes",
    );
    assert_code(
        query(&reader, "SELECT ? AS a", &["i:1", "i:2"]),
        ErrorCode::InvalidInput,
        "takes 1 parameters, 2 were given",
    );
    assert_code(
        query(&reader, "SELECT ? AS a, ? AS b", &["i:1"]),
        ErrorCode::InvalidInput,
        "takes 2",
    );
}

#[test]
fn parameters_are_bound_never_spliced() {
    let f = fixture();
    let before = snapshot(&f);
    let reader = f.guest("reader");
    let rows = json(query(
        &reader,
        "SELECT count(*) AS n FROM customers WHERE name = ?",
        &["t:x' OR '1'='1"],
    ));
    assert_eq!(rows["rows"], json!([[0]]));
    assert_eq!(snapshot(&f), before);
}

#[test]
fn constraint_violation_is_conflict_without_the_sql() {
    let f = fixture();
    let writer = f.guest("writer");
    let e = err(execute(
        &writer,
        "INSERT INTO customers (name, email) VALUES ('Ada again', 'ADA@example.org')",
        &[],
    ));
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(
        e.message.contains("UNIQUE constraint failed"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("INSERT"), "{}", e.message);
    let e = err(execute(
        &writer,
        "INSERT INTO invoices (number, customer_id, issued_on) VALUES (1, 999, '2026-01-01')",
        &[],
    ));
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("FOREIGN KEY"), "{}", e.message);
}

#[test]
fn a_failing_third_statement_leaves_nothing_of_the_first_two() {
    let f = fixture();
    let before = snapshot(&f);
    let writer = f.guest("writer");
    let body = json!([
        {"sql": "INSERT INTO customers (name) VALUES (?)", "params": ["t:Linus"]},
        {"sql": "INSERT INTO invoices (number, customer_id, issued_on) VALUES (1, (SELECT max(id) FROM customers), '2026-11-26')"},
        {"sql": "INSERT INTO customers (name, email) VALUES ('dup', 'ada@example.org')"},
    ]);
    let mut req = get_with("/db/transaction", &[]);
    req.method = "POST".into();
    req.body = body.to_string().into_bytes();
    let e = err(writer.render(&req, Caller::default()).outcome);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.starts_with("statement 3: "), "{}", e.message);
    assert_eq!(snapshot(&f), before);

    // The same transaction without the bad statement commits both.
    let body = json!([
        {"sql": "INSERT INTO customers (name) VALUES (?)", "params": ["t:Linus"]},
        {"sql": "INSERT INTO invoices (number, customer_id, issued_on) VALUES (1, (SELECT max(id) FROM customers), '2026-11-26')"},
    ]);
    req.body = body.to_string().into_bytes();
    let outcomes = json(writer.render(&req, Caller::default()).outcome);
    assert_eq!(outcomes[0]["changed"], 1);
    assert_eq!(outcomes[1]["changed"], 1);
}

/// Found while bounding the host's work: the host's own ROLLBACK ran under
/// the guest's authorizer and was refused, leaving the rollback to the
/// connection's close.
#[test]
fn a_failed_transaction_is_rolled_back_by_the_host() {
    let f = fixture();
    let body = json!([
        {"sql": "INSERT INTO customers (name) VALUES ('x')"},
        {"sql": "INSERT INTO customers (name, email) VALUES ('dup', 'ada@example.org')"},
    ]);
    let body_file = f.dir.path().join("body.json");
    std::fs::write(&body_file, body.to_string()).unwrap();
    let out = common::render_post(&f, "writer", &body_file, "/db/transaction", "error");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("error: conflict: statement 2:"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("rollback failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_transaction_cannot_smuggle_a_denied_statement() {
    let f = fixture();
    let before = snapshot(&f);
    let writer = f.guest("writer");
    let mut req = get_with("/db/transaction", &[]);
    req.body = json!([
        {"sql": "DELETE FROM customers"},
        {"sql": "COMMIT"},
        {"sql": "DROP TABLE invoices"},
    ])
    .to_string()
    .into_bytes();
    let e = err(writer.render(&req, Caller::default()).outcome);
    // Denied by SQLite's authorizer; not even a statement of the portable
    // subset on PostgreSQL.
    assert!(
        matches!(e.code, ErrorCode::Denied | ErrorCode::InvalidInput),
        "{e:?}"
    );
    assert!(e.message.starts_with("statement 2: "), "{}", e.message);
    assert_eq!(snapshot(&f), before);
}

#[test]
fn grant_naming_a_missing_table_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let guests =
        "[[guest]]\nname = \"p\"\ncomponent = \"{probe}\"\n[guest.db]\nread = [\"payments\"]\n";
    if common::on_postgres() {
        // The deploy step refuses it, so no host ever starts with it.
        let file = dir.path().join("rawalite.toml");
        std::fs::write(
            &file,
            format!(
                "[app]\nname = \"t\"\n{}{}",
                common::database_line(),
                guests.replace("{probe}", &common::guest("probe").display().to_string())
            ),
        )
        .unwrap();
        let out = rawalite(
            &["migrate", "--manifest", file.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out)
                .contains("the db grant names `payments`, which the database does not have"),
            "{}",
            stderr(&out)
        );
        return;
    }
    let file = manifest(dir.path(), guests);
    let runtime = Runtime::new(None).unwrap();
    let app = App::open(Manifest::load(&file).unwrap(), None, runtime).unwrap();
    let e = app.load("p").err().unwrap().to_string();
    assert!(
        e.contains("the db grant names `payments`, which the database does not have"),
        "{e}"
    );
}

#[test]
fn render_with_manifest_enforces_grants_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = manifest(dir.path(), GUESTS);
    let m = file.to_str().unwrap();
    let cache = dir.path().join("cache");
    let run = |guest: &str, target: &str| {
        rawalite(
            &["render", "--manifest", m, "--guest", guest, target],
            &cache,
        )
    };
    let out = run(
        "writer",
        &url(
            "/db/execute",
            &[
                ("sql", "INSERT INTO customers (name) VALUES (?)"),
                ("p", "t:Ada"),
            ],
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), r#"{"changed":1,"last_insert_rowid":1}"#);

    let out = run(
        "reader",
        &url("/db/query", &[("sql", "SELECT name FROM customers")]),
    );
    assert_eq!(stdout(&out), r#"{"columns":["name"],"rows":[["Ada"]]}"#);

    let out = run(
        "reader",
        &url("/db/query", &[("sql", "SELECT * FROM users")]),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out).trim(),
        "error: denied: table `users` is not in this guest's db.read grant (`read = [...]` under [guest.db] in the manifest)"
    );

    // --data (SQLite) or --database (PostgreSQL) points the same manifest
    // at other data, which the command line's choice wins over the
    // manifest's.
    let count = url(
        "/db/query",
        &[("sql", "SELECT count(*) AS n FROM customers")],
    );
    let out = if common::on_postgres() {
        let other = common::pg_database();
        let migrated = rawalite(&["migrate", "--manifest", m, "--database", &other], &cache);
        assert_eq!(migrated.status.code(), Some(0), "{}", stderr(&migrated));
        rawalite(
            &[
                "render",
                "--manifest",
                m,
                "--guest",
                "reader",
                "--database",
                &other,
                &count,
            ],
            &cache,
        )
    } else {
        let other = dir.path().join("other");
        let out = rawalite(
            &[
                "render",
                "--manifest",
                m,
                "--guest",
                "reader",
                "--data",
                other.to_str().unwrap(),
                &count,
            ],
            &cache,
        );
        assert!(other.join("rawalite.db").is_file());
        out
    };
    assert_eq!(
        stdout(&out),
        r#"{"columns":["n"],"rows":[[0]]}"#,
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_call_writes_one_audit_event() {
    let dir = tempfile::tempdir().unwrap();
    let file = manifest(dir.path(), GUESTS);
    let out = std::process::Command::new(common::bin())
        .args([
            "render",
            "--manifest",
            file.to_str().unwrap(),
            "--guest",
            "reader",
            &url("/db/query", &[("sql", "SELECT name FROM customers")]),
        ])
        .env("RAWALITE_CACHE_DIR", dir.path().join("cache"))
        .env("RUST_LOG", "rawalite::audit=info")
        .output()
        .unwrap();
    let log = stderr(&out);
    let events: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rawalite::audit"))
        .collect();
    assert_eq!(events.len(), 1, "{log}");
    for field in [
        "guest=reader",
        "capability=\"db\"",
        "op=\"query\"",
        "tables=customers",
        "outcome=\"ok\"",
        "rows=0",
        "us=",
    ] {
        assert!(
            events[0].contains(field),
            "`{field}` missing in {}",
            events[0]
        );
    }
}

/// Tests about SQLite itself, which the PostgreSQL pass of `cargo xtask test`
/// skips (`--skip sqlite_only::`); each says which test covers the same
/// ground on PostgreSQL.
mod sqlite_only {
    use super::*;

    // SQLite's own attacks (PRAGMA, ATTACH, sqlite_schema); on PostgreSQL, `postgres::postgresql_attacks_get_their_code_and_change_nothing`.
    #[test]
    fn hostile_statements_get_their_code_and_change_nothing() {
        let f = fixture();
        let before = snapshot(&f);
        let writer = f.guest("writer");
        let cases: &[(&str, bool, ErrorCode, &str)] = &[
            (
                "SELECT * FROM users",
                true,
                ErrorCode::Denied,
                "table `users` is not in this guest's db.read grant",
            ),
            (
                "SELECT token_hash FROM sessions",
                true,
                ErrorCode::Denied,
                "`sessions`",
            ),
            (
                "SELECT * FROM no_such_table",
                true,
                ErrorCode::Denied,
                "table `no_such_table` is not in this guest's db.read grant",
            ),
            (
                "SELECT * FROM sqlite_master",
                true,
                ErrorCode::Denied,
                "sqlite_master",
            ),
            (
                "SELECT * FROM pragma_table_info('users')",
                true,
                ErrorCode::Denied,
                "pragma_table_info",
            ),
            (
                "DROP TABLE customers",
                false,
                ErrorCode::Denied,
                "schema changes through migrations",
            ),
            (
                "ALTER TABLE customers ADD COLUMN x",
                false,
                ErrorCode::Denied,
                "schema",
            ),
            ("CREATE TABLE evil (x)", false, ErrorCode::Denied, "schema"),
            (
                "PRAGMA writable_schema=1",
                false,
                ErrorCode::Denied,
                "PRAGMA writable_schema is not allowed",
            ),
            (
                "PRAGMA foreign_keys=OFF",
                false,
                ErrorCode::Denied,
                "PRAGMA foreign_keys",
            ),
            (
                "ATTACH DATABASE '/tmp/evil.db' AS x",
                false,
                ErrorCode::Denied,
                "ATTACH",
            ),
            (
                "VACUUM INTO '/tmp/copy.db'",
                false,
                ErrorCode::Denied,
                "VACUUM",
            ),
            ("VACUUM", false, ErrorCode::Denied, "VACUUM"),
            (
                "CREATE TRIGGER t AFTER INSERT ON customers BEGIN DELETE FROM customers; END",
                false,
                ErrorCode::Denied,
                "schema",
            ),
            (
                "CREATE TEMP TABLE x (a)",
                false,
                ErrorCode::Denied,
                "schema",
            ),
            (
                "SELECT load_extension('/tmp/evil.so')",
                true,
                ErrorCode::Denied,
                "function `load_extension` is not allowed",
            ),
            (
                "SELECT 1; DELETE FROM customers",
                true,
                ErrorCode::InvalidInput,
                "one statement per call",
            ),
            ("BEGIN", false, ErrorCode::Denied, "db.transaction"),
            ("SAVEPOINT s", false, ErrorCode::Denied, "db.transaction"),
            (
                "INSERT INTO users (username, display_name, password_hash) VALUES ('x','x','x')",
                false,
                ErrorCode::Denied,
                "`users`",
            ),
            ("SELEKT 1", true, ErrorCode::InvalidInput, "syntax error"),
            (
                "DELETE FROM customers",
                true,
                ErrorCode::InvalidInput,
                "use db.execute",
            ),
            ("SELECT 1", false, ErrorCode::InvalidInput, "use db.query"),
            (
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                true,
                ErrorCode::Timeout,
                "deadline",
            ),
            (
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000) SELECT x FROM c",
                true,
                ErrorCode::TooLarge,
                "more than 10000 rows",
            ),
            (
                "SELECT zeroblob(20 * 1024 * 1024)",
                true,
                ErrorCode::TooLarge,
                "larger than",
            ),
            (
                "INSERT INTO customers (name, notes) VALUES ('x', randomblob(20 * 1024 * 1024))",
                false,
                ErrorCode::TooLarge,
                "larger than",
            ),
        ];
        for (sql, is_query, code, needle) in cases {
            let outcome = if *is_query {
                query(&writer, sql, &[])
            } else {
                execute(&writer, sql, &[])
            };
            let e = err(outcome);
            assert_eq!(e.code, *code, "{sql}: {}", e.message);
            assert!(
                e.message.contains(needle),
                "{sql}: `{needle}` not in `{}`",
                e.message
            );
        }
        assert_eq!(snapshot(&f), before, "the database changed");
        assert_eq!(before.2, "ok");
    }

    // SQLite's write lock; on PostgreSQL, `postgres::concurrent_writers_are_serialized_and_retried`.
    #[test]
    fn a_busy_database_is_conflict() {
        let f = fixture();
        let writer = f.guest("writer");
        let lock = rusqlite::Connection::open(f.db_file()).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_code(
            execute(&writer, "INSERT INTO customers (name) VALUES ('x')", &[]),
            ErrorCode::Conflict,
            "busy",
        );
        lock.execute_batch("ROLLBACK").unwrap();
        json(execute(
            &writer,
            "INSERT INTO customers (name) VALUES ('x')",
            &[],
        ));
    }

    // SQLite's migrations at start; on PostgreSQL, `postgres::migrate_provisions_roles_idempotently_and_serve_refuses_drift`.
    #[test]
    fn migrate_applies_once_and_an_edited_migration_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_arg = data.to_str().unwrap();
        let cache = dir.path().join("cache");
        let out = rawalite(&["migrate", "--data", data_arg], &cache);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("applied 0001_init"),
            "{}",
            stdout(&out)
        );
        let out = rawalite(&["migrate", "--data", data_arg], &cache);
        assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));

        // What an edited 0001_init.sql looks like to the database: its recorded
        // checksum no longer matches the migration the binary carries.
        let conn = rusqlite::Connection::open(data.join("rawalite.db")).unwrap();
        conn.execute("UPDATE refinery_schema_history SET checksum = '42'", [])
            .unwrap();
        drop(conn);
        let out = rawalite(&["migrate", "--data", data_arg], &cache);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("migration 0001_init was changed after it was applied"),
            "{}",
            stderr(&out)
        );
        let hello = common::guest("hello");
        let file = manifest(
            dir.path(),
            &format!(
                "[[guest]]\nname = \"h\"\ncomponent = \"{}\"\n",
                hello.display()
            ),
        );
        let out = rawalite(
            &[
                "render",
                "--manifest",
                file.to_str().unwrap(),
                "--guest",
                "h",
                "/",
            ],
            &cache,
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("0001_init was changed"),
            "{}",
            stderr(&out)
        );
    }

    // the SQLite file of a data directory, which PostgreSQL has not.
    #[test]
    fn migrate_refuses_to_guess_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(common::bin())
            .arg("migrate")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("no --data DIR given"),
            "{}",
            stderr(&out)
        );
        assert!(!Path::new(&dir.path().join("data")).exists());
    }
}
