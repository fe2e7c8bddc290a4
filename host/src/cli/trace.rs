//! `render --trace`: each capability call the guest made and what it
//! printed, shown after the response. Collected from the events the host
//! writes anyway (`rawalite::audit`, `rawalite::guest`), so the trace is
//! exactly what the audit log of `serve` would say.

use std::fmt::{self, Write as _};
use std::sync::{Mutex, PoisonError};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One event: its target and its fields, in order.
struct Record {
    target: &'static str,
    fields: Vec<(&'static str, String)>,
}

impl Record {
    /// A field's text, escaped, without the quotes Debug put around it.
    fn get(&self, name: &str) -> Option<&str> {
        let (_, value) = self.fields.iter().find(|(n, _)| *n == name)?;
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    }
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// The layer that collects; added to the subscriber only for `--trace`.
pub struct Collect;

impl<S: Subscriber> Layer<S> for Collect {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        let target = match target {
            "rawalite::audit" => "rawalite::audit",
            "rawalite::guest" => "rawalite::guest",
            _ => return,
        };
        let mut record = Record {
            target,
            fields: Vec::new(),
        };
        event.record(&mut record);
        RECORDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }
}

impl Visit for Record {
    // Text may come from the guest: escaped (`\n`, `\u{1b}`), so it cannot
    // move the terminal's cursor or pass for a line of the trace.
    fn record_str(&mut self, field: &Field, value: &str) {
        let escaped = value
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        self.fields.push((field.name(), escaped));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields.push((field.name(), format!("{value:?}")));
    }
}

/// The trace, for stderr: the calls in order, then the guest's output.
pub fn report() -> String {
    let records = std::mem::take(&mut *RECORDS.lock().unwrap_or_else(PoisonError::into_inner));
    let calls: Vec<&Record> = records
        .iter()
        .filter(|r| r.target == "rawalite::audit" && r.get("capability").is_some())
        .collect();
    let mut out = format!("\ntrace: {} capability call(s)\n", calls.len());
    for call in calls {
        let what = call
            .get("tables")
            .map(|t| {
                if t.is_empty() {
                    "-".to_owned()
                } else {
                    t.to_owned()
                }
            })
            .or_else(|| {
                let root = call.get("root")?;
                Some(format!("{root} {}", call.get("path").unwrap_or("")))
            })
            .or_else(|| call.get("username").map(str::to_owned))
            .filter(|what| !what.is_empty())
            .unwrap_or_else(|| "-".to_owned());
        let mut outcome = call.get("outcome").unwrap_or("?").to_owned();
        for (name, unit) in [("rows", "row(s)"), ("bytes", "byte(s)")] {
            if let Some(n) = call.get(name).filter(|n| *n != "0") {
                let _ = write!(outcome, ", {n} {unit}");
            }
        }
        if let Some(error) = call.get("error") {
            let _ = write!(outcome, ": {error}");
        }
        let _ = writeln!(
            out,
            "  {:<8} {:<12} {:<28} {:>6} µs  {outcome}",
            call.get("capability").unwrap_or("?"),
            call.get("op").unwrap_or("?"),
            what,
            call.get("us").unwrap_or("?"),
        );
    }
    for dropped in records
        .iter()
        .filter(|r| r.target == "rawalite::audit" && r.get("dropped").is_some())
    {
        let _ = writeln!(
            out,
            "  … and {} more call(s), past the audit cap",
            dropped.get("dropped").unwrap_or("?")
        );
    }
    let output: Vec<&Record> = records
        .iter()
        .filter(|r| r.target == "rawalite::guest")
        .collect();
    if !output.is_empty() {
        out.push_str("trace: the guest's output\n");
        for line in output {
            match (line.get("stream"), line.get("line")) {
                (Some(stream), Some(text)) => {
                    let _ = writeln!(out, "  {stream}: {text}");
                }
                _ => {
                    let _ = writeln!(out, "  ({})", line.get("message").unwrap_or("output cut"));
                }
            }
        }
    }
    out
}
