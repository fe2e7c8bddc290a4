//! The connections to PostgreSQL over TLS, verified as `sslmode` says,
//! against the second throwaway cluster `cargo xtask test` starts (TLS
//! only, a per-run CA).

use crate::common;

use common::{stderr, stdout};
use std::time::{Duration, Instant};

/// The TLS cluster `cargo xtask test` starts (`RAWALITE_TEST_POSTGRES_TLS`):
/// TCP on 127.0.0.1 with TLS only, a certificate for `localhost` signed by
/// `tls/ca.crt`, `certuser` only with a client certificate. Its socket
/// directory and its port.
fn tls_cluster() -> (std::path::PathBuf, u16) {
    let dir = std::path::PathBuf::from(
        std::env::var("RAWALITE_TEST_POSTGRES_TLS")
            .expect("RAWALITE_TEST_POSTGRES_TLS is not set: run the tests with `cargo xtask test`"),
    );
    let port = std::fs::read_to_string(dir.join("port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (dir, port)
}

/// `rawalite migrate --database URL` of a probe app: what a connection
/// over `url` makes of it.
fn migrate_over(url: &str, dir: &std::path::Path) -> (bool, String) {
    let file = common::manifest_on(
        dir,
        "[[guest]]\nname = \"probe\"\ncomponent = \"{probe}\"\n[guest.db]\nread = [\"customers\"]\n",
        false,
    );
    let out = std::process::Command::new(common::bin())
        .args(["migrate", "--manifest"])
        .arg(&file)
        .args(["--database", url])
        .env("HOME", dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// TLS to PostgreSQL as libpq's parameters say, against a server that
/// takes nothing else: verified against the CA and the host's name, a
/// client certificate where the server asks for one, and each failure
/// (wrong CA, wrong name, no CA, no TLS, no client certificate) an error
/// that names its cause, never a hang. `serve`'s connections (its own and
/// the guest's role's) all use it.
#[test]
fn tls_to_postgresql_is_verified_as_sslmode_says() {
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
    let (cluster, port) = tls_cluster();
    let tls = cluster.join("tls");
    let ca = tls.join("ca.crt").display().to_string();
    let admin = format!(
        "postgres://postgres@/postgres?host={}&port={port}",
        cluster.display()
    );
    let name = format!("tls{}", std::process::id());
    for sql in [
        format!("CREATE DATABASE {name}"),
        "DO $$ BEGIN CREATE ROLE certuser LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object THEN NULL; END $$".to_owned(),
    ] {
        let out = common::psql(&admin, &sql);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
    }
    let dir = tempfile::tempdir().unwrap();
    let url = |user: &str, host: &str, params: &str| {
        format!("postgres://{user}@{host}:{port}/{name}?{params}")
    };

    // Verified, end to end: migrate, then serve over it.
    let good = url(
        "postgres",
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let (ok, out) = migrate_over(&good, dir.path());
    assert!(ok, "{out}");
    // Checked against the CA only, whatever the name.
    let (ok, out) = migrate_over(
        &url(
            "postgres",
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
        dir.path(),
    );
    assert!(ok, "{out}");
    let (ok, out) = migrate_over(&url("postgres", "localhost", "sslmode=require"), dir.path());
    assert!(ok, "require (nothing checked): {out}");

    // Each failure names its cause.
    let other = {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let file = dir.path().join("other-ca.crt");
        std::fs::write(&file, cert.pem()).unwrap();
        file.display().to_string()
    };
    for (what, url, cause) in [
        (
            "a CA that did not sign it",
            url(
                "postgres",
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
            "not signed by a CA of sslrootcert",
        ),
        (
            "a name the certificate does not have",
            url(
                "postgres",
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            "not for the host the URL names",
        ),
        (
            "no CA to check against",
            url("postgres", "localhost", "sslmode=verify-full"),
            "sslrootcert",
        ),
        (
            "no TLS, which the server refuses",
            url("postgres", "localhost", "sslmode=disable"),
            "no encryption",
        ),
        (
            "a role the server asks a certificate of, without one",
            url(
                "certuser",
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            "certificate",
        ),
    ] {
        let started = Instant::now();
        let (ok, out) = migrate_over(&url, dir.path());
        assert!(!ok, "{what}: connected");
        assert!(out.contains(cause), "{what}: {out}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} took {:?}",
            started.elapsed()
        );
    }

    // A client certificate of the CA lets `certuser` in.
    // The cluster's CA, by its name and key (as xtask made it).
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "RawaLite test CA");
    let issuer = Issuer::new(
        ca_params,
        KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key")).unwrap()).unwrap(),
    );
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "certuser");
    let key = KeyPair::generate().unwrap();
    let cert = client.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let (ok, out) = migrate_over(
        &url(
            "certuser",
            "localhost",
            &format!(
                "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
                cert_file.display(),
                key_file.display()
            ),
        ),
        dir.path(),
    );
    assert!(ok, "{out}");

    // serve over TLS: every connection of its database is encrypted.
    let file = common::manifest_on(
        dir.path(),
        &format!(
            "database = \"{good}\"\n[[guest]]\nname = \"probe\"\ncomponent = \"{{probe}}\"\nroute = \"/probe\"\n[guest.db]\nread = [\"customers\"]\n"
        ),
        false,
    );
    let mut served =
        common::Served::start(&file, &dir.path().join("data"), &common::shared_cache());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let answer = agent
        .get(served.url("/probe/db/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20customers"))
        .call()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let seen = common::psql(
        &admin,
        &format!(
            "SELECT usename || ':' || ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = '{name}' AND client_port IS NOT NULL ORDER BY 1"
        ),
    );
    let seen = stdout(&seen);
    assert!(seen.contains("postgres:t"), "{seen}");
    assert!(seen.contains(&format!("{name}_g_probe:t")), "{seen}");
    assert!(!seen.contains(":f"), "a connection in the clear: {seen}");
    served.stop();
}
