//! The browser tests need Chromium and ChromeDriver (Debian's packages
//! `chromium` and `chromium-driver`) and pdftotext (`poppler-utils`), to
//! read back a downloaded PDF; installed when missing.

use anyhow::{Result, bail};
use std::path::Path;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const PDFTOTEXT: &str = "/usr/bin/pdftotext";

pub fn ensure() -> Result<()> {
    if [CHROMIUM, CHROMEDRIVER, PDFTOTEXT]
        .iter()
        .all(|p| Path::new(p).is_file())
    {
        return Ok(());
    }
    super::apt::install(&["chromium", "chromium-driver", "poppler-utils"])?;
    if !Path::new(CHROMEDRIVER).is_file() {
        bail!("{CHROMEDRIVER} is still missing after installing chromium-driver");
    }
    Ok(())
}
