//! The `rawalite` binary.

mod cli;

use clap::Parser;
use rawalite_host::log_queue::{self, LogQueue};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, filter};

/// What `serve`'s log may hold for a destination that does not keep up:
/// some 20,000 access lines, and 1 MiB more for the lines it never drops
/// (some 3,000 denied calls) before their writers wait.
const LOG_QUEUE_BYTES: usize = 4 << 20;
const LOG_KEPT_BYTES: usize = 1 << 20;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A write past a file size limit fails with EFBIG, as a full disk fails
    // with ENOSPC, instead of killing the process with SIGXFSZ.
    // SAFETY: before any thread starts; SIG_IGN is always valid.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // Blocks of 256 KiB and more (response bodies, a guest's rows) are
    // mapped on their own and unmapped when freed, so memory a burst of
    // clients took comes back. glibc would otherwise raise this threshold
    // as such blocks are freed, and keep them in its arenas.
    // SAFETY: before any thread starts; mallopt only sets a tunable.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10)
    };
    if !cli.is_server() {
        // `rawalite audit | head` should stop quietly when `head` does, as
        // command-line tools do. (`serve` keeps Rust's default of ignoring
        // SIGPIPE: a client that hangs up must not stop the server.)
        // SAFETY: called before any thread starts; SIG_DFL is always valid.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.default_log_level()));
    // `serve` logs a line per request, through a queue a thread of its own
    // writes out (see log_queue.rs).
    let (writer, flush) = if cli.is_server() {
        let (queue, flush) = LogQueue::start(LOG_QUEUE_BYTES, LOG_KEPT_BYTES, std::io::stderr());
        log_queue::install(queue.clone(), cli.wants_json_log());
        (BoxMakeWriter::new(queue), Some(flush))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let log = tracing_subscriber::fmt::layer().with_writer(writer);
    let log = if cli.wants_json_log() {
        log.json().with_filter(filter).boxed()
    } else {
        log.with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(log)
        .with(cli.wants_trace().then(|| {
            cli::trace::Collect::traced().with_filter(filter::filter_fn(|m| {
                matches!(m.target(), "rawalite::audit" | "rawalite::guest")
            }))
        }))
        .init();
    let outcome = cli.run();
    let dropped = log_queue::dropped();
    if dropped > 0 {
        log_queue::keep(true, || {
            tracing::warn!(
                dropped,
                "log lines were dropped because the log's destination did not keep up"
            )
        });
    }
    drop(flush);
    match outcome {
        Ok(exit) => exit.into(),
        Err(e) => {
            // One line: the whole cause chain, never a panic or a backtrace.
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            cli::Exit::Usage.into()
        }
    }
}
