//! The browser tests need Chromium and ChromeDriver: Debian's packages
//! `chromium` and `chromium-driver`, installed when missing.

use anyhow::{Result, bail};
use std::path::Path;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub fn ensure() -> Result<()> {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        return Ok(());
    }
    super::apt::install(&["chromium", "chromium-driver"])?;
    if !Path::new(CHROMEDRIVER).is_file() {
        bail!("{CHROMEDRIVER} is still missing after installing chromium-driver");
    }
    Ok(())
}
