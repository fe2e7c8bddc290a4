//! The access log: a line per request, on by default. It is formatted here,
//! into a buffer of the thread's, and put straight onto `serve`'s log queue
//! instead of going through tracing's formatter: that took some 3 µs of a
//! busy server's time per request (9% of hello's throughput), this takes a
//! fraction of it. The line reads like every other event of the log, text
//! or JSON, and `RUST_LOG` still decides whether it is written
//! (`RUST_LOG=info,rawalite::access=off` turns it off). Without a queue
//! (the library outside `serve`) it is an ordinary tracing event.

use crate::log_queue;
use std::cell::RefCell;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One answered request.
pub(super) struct Access<'a> {
    pub id: super::page::RequestId,
    pub method: &'a axum::http::Method,
    pub path: &'a str,
    pub status: u16,
    pub guest: &'a str,
    pub us: u64,
}

thread_local! {
    /// The line being written, and the second its timestamp is in with
    /// that second written out (`2026-11-28T10:18:05`).
    static LINE: RefCell<(Vec<u8>, i64, String)> = const {
        RefCell::new((Vec::new(), i64::MIN, String::new()))
    };
}

/// Whether requests are logged: when not, nothing is kept for the line.
pub(super) fn on() -> bool {
    tracing::enabled!(target: "rawalite::access", tracing::Level::INFO)
}

impl Access<'_> {
    /// Writes the line (the caller asked [`on`] first).
    pub(super) fn record(&self) {
        let Some(log) = log_queue::installed() else {
            tracing::info!(
                target: "rawalite::access",
                request = %self.id,
                method = %self.method,
                path = ?self.path,
                status = self.status,
                guest = self.guest,
                us = self.us,
            );
            return;
        };
        LINE.with_borrow_mut(|(line, second, prefix)| {
            line.clear();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let secs = now.as_secs() as i64;
            if secs != *second {
                *second = secs;
                *prefix = crate::utc::iso(secs * 1_000_000);
                prefix.pop(); // the `Z`
            }
            let micros = now.subsec_micros();
            let _ = if log.json {
                self.json(line, prefix, micros)
            } else {
                self.text(line, prefix, micros)
            };
            let _ = (&log.queue).write(line);
        });
    }

    /// As tracing's text formatter writes an event without colours.
    fn text(&self, line: &mut Vec<u8>, prefix: &str, micros: u32) -> std::io::Result<()> {
        writeln!(
            line,
            "{prefix}.{micros:06}Z  INFO rawalite::access: request={} method={} path={:?} status={} guest={:?} us={}",
            self.id, self.method, self.path, self.status, self.guest, self.us
        )
    }

    /// As tracing's JSON formatter writes an event, except that the path is
    /// a JSON string of its own rather than its quoted Rust form.
    fn json(&self, line: &mut Vec<u8>, prefix: &str, micros: u32) -> std::io::Result<()> {
        write!(
            line,
            "{{\"timestamp\":\"{prefix}.{micros:06}Z\",\"level\":\"INFO\",\"fields\":{{\"request\":\"{}\",\"method\":",
            self.id
        )?;
        serde_json::to_writer(&mut *line, self.method.as_str())?;
        line.extend_from_slice(b",\"path\":");
        serde_json::to_writer(&mut *line, self.path)?;
        write!(line, ",\"status\":{},\"guest\":", self.status)?;
        serde_json::to_writer(&mut *line, self.guest)?;
        writeln!(
            line,
            ",\"us\":{}}},\"target\":\"rawalite::access\"}}",
            self.us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn access<'a>(method: &'a axum::http::Method, path: &'a str) -> Access<'a> {
        Access {
            id: super::super::page::RequestId(0x0123_4567_89ab_cdef),
            method,
            path,
            status: 200,
            guest: "hello",
            us: 15,
        }
    }

    #[test]
    fn text_lines_read_like_the_rest_of_the_log() {
        let mut line = Vec::new();
        access(&axum::http::Method::GET, "/hello/a \"b\"\n")
            .text(&mut line, "2026-11-28T10:18:05", 42)
            .unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "2026-11-28T10:18:05.000042Z  INFO rawalite::access: request=0123456789abcdef method=GET path=\"/hello/a \\\"b\\\"\\n\" status=200 guest=\"hello\" us=15\n"
        );
    }

    proptest! {
        /// Whatever the path, a JSON line is one object on one line, and
        /// it holds the path as it was.
        #[test]
        fn json_lines_are_one_object_holding_the_path(path in ".{0,40}", method in "[A-Z]{1,8}") {
            let method = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
            let mut line = Vec::new();
            access(&method, &path).json(&mut line, "2026-11-28T10:18:05", 7).unwrap();
            let line = String::from_utf8(line).unwrap();
            prop_assert_eq!(line.matches('\n').count(), 1);
            prop_assert!(line.ends_with('\n'));
            let object: serde_json::Value = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(object["fields"]["path"].as_str(), Some(path.as_str()));
            prop_assert_eq!(object["fields"]["method"].as_str(), Some(method.as_str()));
            prop_assert_eq!(object["timestamp"].as_str(), Some("2026-11-28T10:18:05.000007Z"));
            prop_assert_eq!(&object["target"], "rawalite::access");
        }
    }
}
