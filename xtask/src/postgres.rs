//! A throwaway PostgreSQL cluster for the tests: Debian's `postgresql`
//! (installed when missing), a data directory and a Unix socket under
//! `target/`, no TCP. PostgreSQL refuses to run as root, so as root the
//! server runs as the `postgres` user. Stopped, by its own data directory
//! (never by name), and removed when dropped.
//!
//! [`Cluster::start_tls`] starts a second one that takes TCP on a free
//! port of 127.0.0.1 and nothing but TLS there, with a CA and a server
//! certificate (for `localhost` only) made for the run in its `tls/`;
//! `hostssl` for every role but `certuser`, who must present a client
//! certificate of that CA.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
}

/// The TLS cluster's `pg_hba.conf`: the socket for the tests' superuser,
/// TCP only with TLS, and `certuser` only with a client certificate.
const TLS_HBA: &str = "local all all trust
hostssl all certuser 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 trust
host all all all reject
";

impl Cluster {
    pub fn start(root: &Path) -> Result<Cluster> {
        Self::start_with(root, "pg", None)
    }

    /// A cluster that takes TLS on TCP only (see the module's comment).
    pub fn start_tls(root: &Path) -> Result<Cluster> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_with(root, "pg-tls", Some(port))
    }

    fn start_with(root: &Path, name: &str, tls_port: Option<u16>) -> Result<Cluster> {
        let bin = match bindir() {
            Some(bin) => bin,
            None => {
                super::apt::install(&["postgresql"])?;
                bindir().context(
                    "pg_config --bindir still finds no initdb after installing postgresql",
                )?
            }
        };
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let dir = root
            .join("target")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let cluster = Cluster {
            dir,
            bin,
            root: is_root,
        };
        if is_root {
            to_postgres(&cluster.dir)?;
        }
        super::step(&format!(
            "starting a throwaway PostgreSQL in {}",
            cluster.dir.display()
        ));
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-N",
            ],
        )?;
        let mut options = format!(
            "-k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            cluster.dir.display()
        );
        match tls_port {
            None => options += " -c listen_addresses=''",
            Some(port) => {
                let tls = cluster.certificates()?;
                std::fs::write(data.join("pg_hba.conf"), TLS_HBA)?;
                std::fs::write(cluster.dir.join("port"), port.to_string())?;
                options += &format!(
                    " -c listen_addresses=127.0.0.1 -c port={port} -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key -c ssl_ca_file={0}/ca.crt",
                    tls.display()
                );
                if is_root {
                    to_postgres(&cluster.dir)?;
                }
            }
        }
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &cluster.dir.join("server.log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )?;
        Ok(cluster)
    }

    /// A CA and a server certificate for `localhost` (PEM, in `tls/`).
    fn certificates(&self) -> Result<PathBuf> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = self.dir.join("tls");
        std::fs::create_dir_all(&dir)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "RawaLite test CA");
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate()?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let server_cert = server.signed_by(&server_key, &issuer)?;
        let write = |name: &str, text: &str| -> Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join(name))?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            Ok(())
        };
        write("ca.crt", &ca_cert.pem())?;
        write("ca.key", &issuer.key().serialize_pem())?;
        write("server.crt", &server_cert.pem())?;
        write("server.key", &server_key.serialize_pem())?;
        Ok(dir)
    }

    /// Where the socket is: tests connect with `?host=` this.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the database `name`; its URL for the cluster's superuser.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(format!(
            "postgres://postgres@/{name}?host={}",
            self.dir.display()
        ))
    }

    /// What `sql` prints (unaligned, no headers) on database `database`,
    /// as the cluster's superuser.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X", "-q", "-A", "-t", "-U", "postgres", "-d", database, "-h",
            ])
            .arg(&self.dir)
            .args(["-c", sql])
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!("{sql} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether the server runs as the `postgres` user (this is root).
    pub fn as_root(&self) -> bool {
        self.root
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let program = self.bin.join(tool);
        let mut cmd = if self.root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Gives `dir` and what it holds to the postgres user (the server runs as
/// it, and reads its key only when it owns the file).
fn to_postgres(dir: &Path) -> Result<()> {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()?;
    if !status.success() {
        bail!("cannot give {} to the postgres user", dir.display());
    }
    Ok(())
}

/// Where initdb and pg_ctl are, if PostgreSQL is installed.
fn bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("initdb").is_file().then_some(dir)
}
