//! The load-balancer test (`tests/balancer.rs`) runs Debian's `haproxy`,
//! installed when missing.

use anyhow::{Result, bail};
use std::path::Path;

pub const HAPROXY: &str = "/usr/sbin/haproxy";

pub fn ensure() -> Result<()> {
    if Path::new(HAPROXY).is_file() {
        return Ok(());
    }
    super::apt::install(&["haproxy"])?;
    if !Path::new(HAPROXY).is_file() {
        bail!("{HAPROXY} is still missing after installing haproxy");
    }
    Ok(())
}
