//! The servers tests and benchmarks run beside the hosts: Debian's
//! `haproxy` (the load-balancer test, `bench serve`) and `pgbouncer` (the
//! pooler test in `tests/serve/hosts.rs`), installed when missing.

use anyhow::{Result, bail};
use std::path::Path;

pub const HAPROXY: &str = "/usr/sbin/haproxy";
pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

pub fn ensure() -> Result<()> {
    let missing: Vec<(&str, &str)> = [(HAPROXY, "haproxy"), (PGBOUNCER, "pgbouncer")]
        .into_iter()
        .filter(|(program, _)| !Path::new(program).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    super::apt::install(&packages)?;
    for (program, package) in missing {
        if !Path::new(program).is_file() {
            bail!("{program} is still missing after installing {package}");
        }
    }
    Ok(())
}
