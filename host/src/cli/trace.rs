//! The capability calls a guest made and what it printed, collected from
//! the events the host writes anyway (`rawalite::audit`, `rawalite::guest`),
//! so they are exactly what the audit log of `serve` would say:
//! `render --trace` prints them after the response, `rawalite test` checks
//! a case's expected calls against them.

use std::fmt::{self, Write as _};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
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

/// Where a [`Collect`] layer puts the events it sees.
#[derive(Clone, Default)]
pub struct Records(Arc<Mutex<Vec<Record>>>);

/// `render --trace`'s records: the process renders one request.
static TRACED: LazyLock<Records> = LazyLock::new(Records::default);

/// The layer that collects: for `render --trace` into the process's
/// records, for a test case into its own.
pub struct Collect(Records);

impl Collect {
    /// For `render --trace`, whose [`report`] reads them.
    pub fn traced() -> Self {
        Collect(TRACED.clone())
    }

    /// Into `records`.
    pub fn new(records: &Records) -> Self {
        Collect(records.clone())
    }
}

impl<S: Subscriber> Layer<S> for Collect {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let target = match event.metadata().target() {
            "rawalite::audit" => "rawalite::audit",
            "rawalite::guest" => "rawalite::guest",
            _ => return,
        };
        let mut record = Record {
            target,
            fields: Vec::new(),
        };
        event.record(&mut record);
        self.0
            .0
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

/// One capability call, as its audit event tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `db`, `paths` or `session`.
    pub capability: String,
    /// `query`, `execute`, `transaction`; `open`, `read`, `write`, …;
    /// `current`, `login`, `logout`.
    pub op: String,
    /// The tables a db call touched (none for a refused one).
    pub tables: Vec<String>,
    /// The root of a paths call, and the path in it.
    pub root: String,
    pub path: String,
    /// The username a session call named.
    pub username: String,
    /// `ok`, or the error's code (`denied`, `not-found`, …).
    pub outcome: String,
    pub error: Option<String>,
    rows: Option<String>,
    bytes: Option<String>,
    us: String,
}

impl Call {
    fn from(record: &Record) -> Option<Call> {
        let text = |name| record.get(name).unwrap_or("").to_owned();
        Some(Call {
            capability: record.get("capability")?.to_owned(),
            op: text("op"),
            tables: record
                .get("tables")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            root: text("root"),
            path: text("path"),
            username: text("username"),
            outcome: record.get("outcome").unwrap_or("?").to_owned(),
            error: record.get("error").map(str::to_owned),
            rows: record.get("rows").map(str::to_owned),
            bytes: record.get("bytes").map(str::to_owned),
            us: record.get("us").unwrap_or("?").to_owned(),
        })
    }

    /// What it touched: the tables, the root and path, or the username.
    pub fn what(&self) -> String {
        let what = if !self.tables.is_empty() {
            self.tables.join(",")
        } else if !self.root.is_empty() {
            format!("{} {}", self.root, self.path).trim_end().to_owned()
        } else {
            self.username.clone()
        };
        if what.is_empty() {
            "-".to_owned()
        } else {
            what
        }
    }

    /// Its outcome, with rows or bytes and the error's message.
    pub fn result(&self) -> String {
        let mut outcome = self.outcome.clone();
        for (n, unit) in [(&self.rows, "row(s)"), (&self.bytes, "byte(s)")] {
            if let Some(n) = n.as_deref().filter(|n| *n != "0") {
                let _ = write!(outcome, ", {n} {unit}");
            }
        }
        if let Some(error) = &self.error {
            let _ = write!(outcome, ": {error}");
        }
        outcome
    }
}

/// What one render did: its capability calls, the calls past the audit
/// cap, and the guest's output lines.
#[derive(Default)]
pub struct Trace {
    pub calls: Vec<Call>,
    pub dropped: Vec<String>,
    pub output: Vec<String>,
}

impl Records {
    /// The trace of what was collected so far, which it takes.
    pub fn take(&self) -> Trace {
        let records = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        let audit = || records.iter().filter(|r| r.target == "rawalite::audit");
        Trace {
            calls: audit().filter_map(Call::from).collect(),
            dropped: audit()
                .filter_map(|r| r.get("dropped").map(str::to_owned))
                .collect(),
            output: records
                .iter()
                .filter(|r| r.target == "rawalite::guest")
                .map(|line| match (line.get("stream"), line.get("line")) {
                    (Some(stream), Some(text)) => format!("{stream}: {text}"),
                    _ => format!("({})", line.get("message").unwrap_or("output cut")),
                })
                .collect(),
        }
    }
}

impl fmt::Display for Trace {
    /// The calls in order, then the guest's output.
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "trace: {} capability call(s)", self.calls.len())?;
        for call in &self.calls {
            writeln!(
                out,
                "  {:<8} {:<12} {:<28} {:>6} µs  {}",
                call.capability,
                call.op,
                call.what(),
                call.us,
                call.result()
            )?;
        }
        for dropped in &self.dropped {
            writeln!(out, "  … and {dropped} more call(s), past the audit cap")?;
        }
        if !self.output.is_empty() {
            writeln!(out, "trace: the guest's output")?;
            for line in &self.output {
                writeln!(out, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// `render --trace`'s report, for stderr.
pub fn report() -> String {
    format!("\n{}", TRACED.take())
}
