//! Debian packages the project's commands need (Chromium for the browser
//! tests, wrk for `bench serve`), installed with apt-get when missing so a
//! fresh machine needs nothing done by hand.

use anyhow::{Result, bail};
use std::process::Command;

/// `apt-get update` then `apt-get install` of `packages`, through `sudo -n`
/// when not root.
pub fn install(packages: &[&str]) -> Result<()> {
    super::step(&format!("installing {} (apt-get)", packages.join(", ")));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            bail!(
                "`apt-get {}` failed; install the Debian packages {} by hand, then run the command again",
                args.join(" "),
                packages.join(" ")
            );
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq"];
    install.extend_from_slice(packages);
    apt(&install)
}
