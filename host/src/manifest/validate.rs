//! The checks of values serde cannot make: names, routes, host names,
//! scripts, limits.

use super::schema::RawLimits;
use crate::runtime::{Limits, MAX_MEMORY};
use bytesize::ByteSize;
use std::path::Path;
use std::time::Duration;

pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1-64 characters of a-z, 0-9, - and _"
        ))
    }
}

/// A name a browser puts in `Host`: letters, digits, `-` and `.`, or an
/// IP address, optionally with `:port`.
pub(super) fn check_host(host: &str) -> Result<(), String> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => {
            port.parse::<u16>()
                .map_err(|_| format!("`{host}`: `{port}` is not a port"))?;
            name
        }
        _ => host,
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && (name
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a host name such as \"invoices.example.com\" or \"invoices.example.com:8443\""
        ))
    }
}

/// A script a guest's pages may run: a file of the static directory, as
/// served (`/static/app.js`), in characters a Content-Security-Policy can
/// carry as they are.
pub(super) fn check_script(script: &str, static_dir: Option<&Path>) -> Result<(), String> {
    let Some(file) = script.strip_prefix("/static/") else {
        return Err(format!(
            "`{script}` must be a file the host serves from /static/ (a guest's own routes may never serve scripts)"
        ));
    };
    let plain = !file.is_empty()
        && file
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if !plain {
        return Err(format!(
            "`{script}` must be a plain path of a-z, 0-9, -, _, . and /"
        ));
    }
    let Some(dir) = static_dir else {
        return Err("the app has no static directory: set `static` under [app]".to_owned());
    };
    if !dir.join(file).is_file() {
        return Err(format!(
            "`{script}` is not a file of the static directory {}",
            dir.display()
        ));
    }
    Ok(())
}

pub(super) fn check_route(route: &str) -> Result<(), String> {
    let ok = route.starts_with('/')
        && (route == "/" || !route.ends_with('/'))
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{route}` must start with / and not end with one, using a-z, 0-9, -, _ and ."
        ))
    }
}

impl RawLimits {
    pub(super) fn resolve(&self) -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Some(memory) = self.memory {
            if memory.0 == 0 || memory.0 > MAX_MEMORY {
                return Err(format!(
                    "memory must be between 1 byte and {}",
                    ByteSize(MAX_MEMORY)
                ));
            }
            limits.memory = memory.0;
            limits.db_bytes = Limits::default_db_bytes(memory.0);
        }
        if let Some(ms) = self.timeout_ms {
            if !(1..=600_000).contains(&ms) {
                return Err("timeout_ms must be between 1 and 600000".to_owned());
            }
            limits.timeout = Duration::from_millis(ms);
        }
        if let Some(response) = self.response {
            limits.response_bytes = response.0;
        }
        if let Some(handles) = self.handles {
            limits.handles = handles;
        }
        if let Some(rows) = self.db_rows {
            if rows == 0 {
                return Err("db_rows must be at least 1".to_owned());
            }
            limits.db_rows = rows;
        }
        if let Some(bytes) = self.db_bytes {
            // SQLite needs some memory for any statement at all, and a
            // result must fit in the guest.
            if bytes.0 < (1 << 20) || bytes.0 > limits.memory {
                return Err(format!(
                    "db_bytes must be between 1 MiB and the guest's memory ({})",
                    ByteSize(limits.memory)
                ));
            }
            limits.db_bytes = bytes.0;
        }
        Ok(limits)
    }
}
