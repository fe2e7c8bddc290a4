//! The browser tests need Chromium and ChromeDriver. On Debian they come
//! from the packages `chromium` and `chromium-driver`; install them when
//! missing so a fresh machine needs nothing done by hand.

use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub fn ensure() -> Result<()> {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        return Ok(());
    }
    super::step("installing Chromium and ChromeDriver for the browser tests (apt-get)");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let sudo: &[&str] = if root { &[] } else { &["sudo", "-n"] };
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        cmd.args(sudo.iter().skip(1));
        if !sudo.is_empty() {
            cmd.arg("apt-get");
        }
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            bail!(
                "`apt-get {}` failed; install the Debian packages chromium and chromium-driver, then run the tests again",
                args.join(" ")
            );
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "chromium", "chromium-driver"])?;
    if !Path::new(CHROMEDRIVER).is_file() {
        bail!("{CHROMEDRIVER} is still missing after installing chromium-driver");
    }
    Ok(())
}
