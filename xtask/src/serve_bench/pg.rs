//! The bench's PostgreSQL part: the app on a throwaway cluster, through
//! PgBouncer, and several hosts behind HAProxy.

use super::*;

/// The database pages again with the app on PostgreSQL (a throwaway
/// cluster, `rawalite migrate` as the deploy step, the same seed), against
/// the native baseline on tokio-postgres.
pub(super) fn on_postgres(root: &Path, rawalite: &Path, work: &Path) -> Result<Vec<Run>> {
    std::fs::create_dir_all(work)?;
    let cluster = crate::postgres::Cluster::start(root)?;
    let url = cluster.create_database("bench")?;
    let manifest = bench_manifest(root, work, Some(&url))?;
    crate::step("rawalite migrate (PostgreSQL)");
    Command::new(rawalite)
        .args(["migrate", "--manifest"])
        .arg(&manifest)
        .stdout(Stdio::null())
        .status_ok()?;
    seed(rawalite, &manifest, work)?;
    add_user(rawalite, &manifest)?;
    let port = free_port()?;
    let raw = Server::start(
        "RawaLite",
        &mut rawalite_serve(rawalite, &manifest, port, &work.join("cache")),
        port,
        work,
    )?;
    let native = native(root, &url, work)?;
    same_customers(&raw, &native)?;
    // A connection per request at a time, as a pool lends them (and as
    // RawaLite's calls hold theirs), beside the shared, pipelined clients.
    let port = free_port()?;
    let pooled = Server::start(
        "native (pool)",
        Command::new(root.join("target/release/native-baseline"))
            .arg(format!("127.0.0.1:{port}"))
            .arg(&url)
            .arg("--pool"),
        port,
        work,
    )?;
    same_customers(&raw, &pooled)?;
    let cookie = sign_in(raw.port)?;
    let mut plan: Vec<Measure> = [&raw, &native, &pooled]
        .into_iter()
        .map(|server| Measure::new(server, "db 10 rows (PostgreSQL)", "/customers-page"))
        .collect();
    plan.push(Measure {
        cookie: Some(&cookie),
        ..Measure::new(&raw, "dashboard (signed in, PostgreSQL)", "/dashboard/")
    });
    let mut runs = measure(&plan, ROUNDS)?;
    drop(plan);
    drop((raw, native, pooled));
    runs.extend(through_pgbouncer(
        root, rawalite, &manifest, &cluster, work,
    )?);
    runs.extend(through_haproxy(root, rawalite, &manifest, work)?);
    Ok(runs)
}

/// The database page with the host's connections through PgBouncer in
/// transaction mode (`deploy/pgbouncer.ini`, its addresses rewritten, no
/// TLS on either side as none is on the direct path, `trust` as the
/// cluster has), against the same host straight to the server, in turns.
pub(super) fn through_pgbouncer(
    root: &Path,
    rawalite: &Path,
    manifest: &Path,
    cluster: &crate::postgres::Cluster,
    work: &Path,
) -> Result<Vec<Run>> {
    crate::servers::ensure()?;
    let dir = work.join("pgbouncer");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let users = cluster.psql(
        "bench",
        "SELECT format('\"%s\" \"\"', rolname) FROM pg_roles \
         WHERE rolname = 'postgres' OR starts_with(rolname, 'bench_g_')",
    )?;
    std::fs::write(dir.join("userlist.txt"), users)?;
    let mut config = std::fs::read_to_string(root.join("deploy/pgbouncer.ini"))?;
    for (shipped, here) in [
        (
            "rawalite = host=/var/run/postgresql port=5432 dbname=rawalite".to_owned(),
            format!(
                "bench = host={} port=5432 dbname=bench",
                cluster.socket_dir().display()
            ),
        ),
        (
            "listen_port = 6432".to_owned(),
            format!("listen_port = {port}"),
        ),
        (
            "auth_type = scram-sha-256".to_owned(),
            "auth_type = trust".to_owned(),
        ),
        ("client_tls_sslmode = require".to_owned(), String::new()),
        (
            "client_tls_cert_file = /etc/pgbouncer/server.crt".to_owned(),
            String::new(),
        ),
        (
            "client_tls_key_file = /etc/pgbouncer/server.key".to_owned(),
            String::new(),
        ),
        ("/etc/pgbouncer".to_owned(), dir.display().to_string()),
        ("/var/log/postgresql".to_owned(), dir.display().to_string()),
        (
            "/var/run/postgresql/".to_owned(),
            format!("{}/", dir.display()),
        ),
    ] {
        if !config.contains(&shipped) {
            bail!("deploy/pgbouncer.ini has no `{shipped}`");
        }
        config = config.replace(&shipped, &here);
    }
    let file = dir.join("pgbouncer.ini");
    std::fs::write(&file, config)?;
    if cluster.as_root() {
        // PgBouncer refuses to run as root; it runs as the cluster does.
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status_ok()?;
    }
    let mut bouncer = Command::new(crate::servers::PGBOUNCER);
    if cluster.as_root() {
        bouncer.args(["-u", "postgres"]);
    }
    // Not HTTP: ready when it takes connections.
    let _bouncer = Server {
        name: "PgBouncer",
        child: bouncer.arg(&file).spawn().context("starting PgBouncer")?,
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "PgBouncer did not listen on port {port}; see {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(manifest)?;
    let pooled_manifest = work.join("rawalite-pgbouncer.toml");
    let direct = text
        .lines()
        .find(|l| l.starts_with("database = "))
        .context("the bench manifest names no database")?;
    std::fs::write(
        &pooled_manifest,
        text.replace(
            direct,
            &format!(
                "database = \"postgres://postgres@127.0.0.1:{port}/bench?pgbouncer=true&sslmode=disable\""
            ),
        ),
    )?;
    let start = |system, manifest: &Path| -> Result<Server> {
        let port = free_port()?;
        Server::start(
            system,
            &mut rawalite_serve(rawalite, manifest, port, &work.join("cache")),
            port,
            work,
        )
    };
    let direct = start("RawaLite (direct)", manifest)?;
    let pooled = start("RawaLite via PgBouncer", &pooled_manifest)?;
    same_customers(&direct, &pooled)?;
    measure(
        &[
            Measure::new(&direct, "db 10 rows (PostgreSQL)", "/customers-page"),
            Measure::new(&pooled, "db 10 rows (PostgreSQL)", "/customers-page"),
        ],
        ROUNDS,
    )
}

/// The database page through HAProxy with the shipped configuration
/// (`deploy/haproxy.cfg`, its ports rewritten) in front of 1, 2 and 3
/// hosts on the same database. On one machine the hosts share its cores,
/// so this shows the balancer's cost and the hosts' sharing, not scaling.
pub(super) fn through_haproxy(
    root: &Path,
    rawalite: &Path,
    manifest: &Path,
    work: &Path,
) -> Result<Vec<Run>> {
    crate::servers::ensure()?;
    let shipped = std::fs::read_to_string(root.join("deploy/haproxy.cfg"))?;
    let mut runs = Vec::new();
    for (n, system) in [
        (1, "HAProxy + 1 host"),
        (2, "HAProxy + 2 hosts"),
        (3, "HAProxy + 3 hosts"),
    ] {
        let mut hosts = Vec::new();
        let mut config = shipped.clone();
        for i in 0..3 {
            let shipped_server = format!("server host{} 127.0.0.1:{}", i + 1, 8081 + i);
            if !config.contains(&shipped_server) {
                bail!("deploy/haproxy.cfg has no `{shipped_server}`");
            }
            if i < n {
                let port = free_port()?;
                hosts.push(Server::start(
                    "RawaLite host",
                    &mut rawalite_serve(rawalite, manifest, port, &work.join("cache")),
                    port,
                    work,
                )?);
                config = config.replace(
                    &shipped_server,
                    &format!("server host{} 127.0.0.1:{port}", i + 1),
                );
            } else {
                config = config.replace(&format!("    {shipped_server}\n"), "");
            }
        }
        let (front, stats) = (free_port()?, free_port()?);
        config = config
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
            .replace("127.0.0.1:8404", &format!("127.0.0.1:{stats}"));
        let file = work.join(format!("haproxy-{n}.cfg"));
        std::fs::write(&file, config)?;
        let balancer = Server::start(
            system,
            Command::new(crate::servers::HAPROXY)
                .arg("-db")
                .arg("-f")
                .arg(&file),
            front,
            work,
        )?;
        // Every host in the rotation before measuring.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let csv = http_get(stats, "/stats;csv").unwrap_or_default();
            let up = String::from_utf8_lossy(&csv)
                .lines()
                .filter(|l| l.starts_with("hosts,host") && l.contains(",UP,"))
                .count();
            if up == n {
                break;
            }
            if Instant::now() > deadline {
                bail!("HAProxy saw {up} of {n} hosts up after 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its rounds one after another: the hosts differ from one system
        // to the next.
        runs.extend(measure(
            &[Measure::new(
                &balancer,
                "db 10 rows (PostgreSQL, via HAProxy)",
                "/customers-page",
            )],
            ROUNDS,
        )?);
        drop(balancer);
        drop(hosts);
    }
    Ok(runs)
}
