//! Prometheus metrics, off unless `serve --metrics ADDR` turns them on.
//! The host records through the `metrics` facade; the exposition is
//! `metrics-exporter-prometheus`'s, served on a listener of its own so it
//! is never reachable where the app is. While off, recording is one
//! relaxed load: no label is built on the hot path.

use anyhow::Result;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ON: AtomicBool = AtomicBool::new(false);

/// Installs the recorder; from now on the functions below record.
pub fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("rawalite_render_seconds".into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ],
        )?
        .install_recorder()?;
    ON.store(true, Ordering::Relaxed);
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "rawalite_requests_total",
        "Requests answered, by guest (`-` for none) and status."
    );
    describe_histogram!(
        "rawalite_render_seconds",
        "Time to render a request with its guest, host calls included."
    );
    describe_counter!(
        "rawalite_memory_grows_total",
        "memory.grow calls during renders, by guest: a page that grows pays for it on every request."
    );
    describe_counter!(
        "rawalite_guests_stopped_total",
        "Renders the host stopped, by guest and cause."
    );
    describe_counter!(
        "rawalite_capability_calls_total",
        "Capability calls, by guest, capability and outcome (`ok` or an error code such as `denied`)."
    );
    describe_counter!(
        "rawalite_sign_in_failures_total",
        "Failed or refused sign-ins."
    );
    describe_gauge!(
        "rawalite_database_bytes",
        "The database file and its write-ahead log."
    );
    describe_gauge!(
        "rawalite_root_bytes",
        "What each root holds, as its quota counts it."
    );
    describe_counter!(
        "rawalite_log_lines_dropped_total",
        "Log lines dropped because the log's destination did not keep up."
    );
}

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

pub fn request(guest: Option<&str>, status: u16) {
    if on() {
        let guest = guest.unwrap_or("-").to_owned();
        metrics::counter!("rawalite_requests_total", "guest" => guest, "status" => status.to_string())
            .increment(1);
    }
}

/// A render's `memory.grow`s, counted per guest (none is the goal).
pub fn memory_grows(guest: &str, grows: u32) {
    if on() && grows > 0 {
        metrics::counter!("rawalite_memory_grows_total", "guest" => guest.to_owned())
            .increment(u64::from(grows));
    }
}

pub fn render(guest: &str, took: Duration) {
    if on() {
        metrics::histogram!("rawalite_render_seconds", "guest" => guest.to_owned()).record(took);
    }
}

pub fn stopped(guest: &str, cause: &'static str) {
    if on() {
        metrics::counter!("rawalite_guests_stopped_total", "guest" => guest.to_owned(), "cause" => cause)
            .increment(1);
    }
}

pub fn capability(guest: &str, capability: &'static str, outcome: &'static str) {
    if on() {
        metrics::counter!(
            "rawalite_capability_calls_total",
            "guest" => guest.to_owned(),
            "capability" => capability,
            "outcome" => outcome
        )
        .increment(1);
    }
}

pub fn sign_in_failed() {
    if on() {
        metrics::counter!("rawalite_sign_in_failures_total").increment(1);
    }
}

pub fn sizes<'a>(database: u64, roots: impl Iterator<Item = (&'a str, u64)>) {
    if on() {
        metrics::gauge!("rawalite_database_bytes").set(database as f64);
        for (root, bytes) in roots {
            metrics::gauge!("rawalite_root_bytes", "root" => root.to_owned()).set(bytes as f64);
        }
        metrics::counter!("rawalite_log_lines_dropped_total").absolute(crate::log_queue::dropped());
    }
}
