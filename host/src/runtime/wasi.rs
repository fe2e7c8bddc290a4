//! The inert WASI subset a Rust guest's standard library needs, and nothing
//! more: no filesystem, no sockets, an empty environment, no arguments, an
//! empty stdin, and stdout/stderr captured into `tracing`. Waiting (a
//! `sleep`, anything that polls) is asynchronous, so a waiting guest holds
//! no thread, and it ends at the request's deadline, stopping the guest.
//!
//! The interfaces linked here are exactly the WASI half of the load-time
//! allowlist in `imports.rs`; the two lists must name the same interfaces.

use super::GuestState;
use crate::capabilities::DeadlineReached;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, io, random};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Adds the inert WASI interfaces to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    let l = linker;
    type T = GuestState;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    io::error::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
    io::poll::add_to_linker::<T, Poll>(l, |t| DeadlinePoll {
        table: &mut t.table,
        deadline: t.call.deadline,
    })?;
    io::streams::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
    Ok(())
}

struct HasIo;

impl wasmtime::component::HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// `wasi:io/poll` whose waits end at the request's deadline.
struct Poll;

impl wasmtime::component::HasData for Poll {
    type Data<'a> = DeadlinePoll<'a>;
}

struct DeadlinePoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

/// `wait`, or a stop at `deadline` if that comes first.
async fn until<T>(
    deadline: Instant,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    tokio::time::timeout_at(deadline.into(), wait)
        .await
        .unwrap_or_else(|_elapsed| Err(wasmtime::Error::new(DeadlineReached)))
}

impl io::poll::Host for DeadlinePoll<'_> {
    async fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        until(self.deadline, io::poll::Host::poll(self.table, pollables)).await
    }
}

impl io::poll::HostPollable for DeadlinePoll<'_> {
    async fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        until(
            self.deadline,
            io::poll::HostPollable::block(self.table, pollable),
        )
        .await
    }

    async fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        io::poll::HostPollable::ready(self.table, pollable).await
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        io::poll::HostPollable::drop(self.table, pollable)
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (output, pinned) = (&self.output, self.pinned.as_ref().map(|p| p.pinned));
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(|| context(output, pinned)),
            table: &mut self.table,
        }
    }
}

/// A fresh WASI context for one request whose output lands in `output`,
/// its clock and generators pinned when a test asked.
fn context(output: &GuestOutput, pinned: Option<super::Pinned>) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(output.stream(Stream::Stdout))
        .stderr(output.stream(Stream::Stderr));
    if let Some(pinned) = pinned {
        pinned.pin(&mut builder);
    }
    builder.build()
}

/// What a guest printed during one request, kept up to a cap so a chatty or
/// hostile guest cannot fill the host's memory or the log. Writes past the
/// cap are dropped (the guest must not trap because it logged too much) and
/// counted in one summary event.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    dropped: usize,
}

/// Bytes kept per stream.
const OUTPUT_CAP: usize = 64 << 10;
/// Lines logged per stream; the rest are counted.
const OUTPUT_LINES: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl GuestOutput {
    fn stream(&self, stream: Stream) -> OutputSink {
        OutputSink {
            output: self.clone(),
            stream,
        }
    }

    /// Keeps what fits under the cap of `stream`; counts the rest.
    pub(crate) fn push(&self, stream: Stream, bytes: &[u8]) {
        let mut captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Captured {
            stdout,
            stderr,
            dropped,
        } = &mut *captured;
        let buf = if stream == Stream::Stdout {
            stdout
        } else {
            stderr
        };
        let room = OUTPUT_CAP.saturating_sub(buf.len());
        let kept = bytes.len().min(room);
        buf.extend_from_slice(&bytes[..kept]);
        *dropped += bytes.len() - kept;
    }

    /// The captured stderr, as text (where a Rust guest's panic message goes).
    pub(crate) fn stderr(&self) -> String {
        let captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&captured.stderr).into_owned()
    }

    /// Sends what the guest printed to the log, one event per line up to
    /// [`OUTPUT_LINES`] per stream. The line is a quoted, escaped field
    /// (`\n`, `\u{1b}`…), so a guest cannot end an event early, forge
    /// another, or pass for the host.
    pub(crate) fn emit(&self, guest: &str) {
        let captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped_lines = 0;
        for (stream, bytes) in [("stdout", &captured.stdout), ("stderr", &captured.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            for (i, line) in text.lines().enumerate() {
                if i >= OUTPUT_LINES {
                    dropped_lines += 1;
                    continue;
                }
                if stream == "stdout" {
                    tracing::info!(target: "rawalite::guest", guest, stream, line, "output");
                } else {
                    tracing::warn!(target: "rawalite::guest", guest, stream, line, "output");
                }
            }
        }
        if captured.dropped > 0 || dropped_lines > 0 {
            tracing::warn!(
                target: "rawalite::guest",
                guest,
                dropped_bytes = captured.dropped,
                dropped_lines,
                "guest output past {OUTPUT_LINES} lines or {OUTPUT_CAP} bytes per stream was not logged"
            );
        }
    }
}

struct OutputSink {
    output: GuestOutput,
    stream: Stream,
}

impl IsTerminal for OutputSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(OutputSink {
            output: self.output.clone(),
            stream: self.stream,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(OutputSink {
            output: self.output.clone(),
            stream: self.stream,
        })
    }
}

impl OutputStream for OutputSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.push(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(OUTPUT_CAP)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.output.push(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_cap_is_dropped_and_counted() {
        let out = GuestOutput::default();
        out.push(Stream::Stderr, &vec![b'x'; OUTPUT_CAP - 1]);
        out.push(Stream::Stderr, b"yz");
        assert_eq!(out.stderr().len(), OUTPUT_CAP);
        assert_eq!(out.inner.lock().unwrap().dropped, 1);
    }
}
