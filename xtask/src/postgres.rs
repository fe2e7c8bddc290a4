//! A throwaway PostgreSQL cluster for the tests: Debian's `postgresql`
//! (installed when missing), a data directory and a Unix socket under
//! `target/`, no TCP. PostgreSQL refuses to run as root, so as root the
//! server runs as the `postgres` user. Stopped, by its own data directory
//! (never by name), and removed when dropped.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
}

impl Cluster {
    pub fn start(root: &Path) -> Result<Cluster> {
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
            .join(format!("pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let cluster = Cluster {
            dir,
            bin,
            root: is_root,
        };
        if is_root {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cluster.dir)
                .status()?;
            if !status.success() {
                bail!("cannot give {} to the postgres user", cluster.dir.display());
            }
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
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            cluster.dir.display()
        );
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

    /// Where the socket is: tests connect with `?host=` this.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the database `name`; its URL for the cluster's superuser.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let socket = self.dir.to_string_lossy();
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X", "-q", "-h", &socket, "-U", "postgres", "-d", "postgres", "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!(
                "CREATE DATABASE {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(format!("postgres://postgres@/{name}?host={socket}"))
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

/// Where initdb and pg_ctl are, if PostgreSQL is installed.
fn bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("initdb").is_file().then_some(dir)
}
