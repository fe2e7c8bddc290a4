//! The inert WASI subset a Rust guest's standard library needs, and nothing
//! more: no filesystem, no sockets, an empty environment, no arguments, an
//! empty stdin, and stdout/stderr captured into `tracing`.
//!
//! The interfaces linked here are exactly the WASI half of the load-time
//! allowlist in `imports.rs`; the two lists must name the same interfaces.

use super::GuestState;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime::component::Linker;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Adds the inert WASI interfaces to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    let l = linker;
    type T = GuestState;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
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
    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
    sync::io::poll::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
    sync::io::streams::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
    Ok(())
}

struct HasIo;

impl wasmtime::component::HasData for HasIo {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A fresh WASI context for one request whose output lands in `output`.
pub(crate) fn context(output: &GuestOutput) -> WasiCtx {
    WasiCtx::builder()
        .stdout(output.stream(Stream::Stdout))
        .stderr(output.stream(Stream::Stderr))
        .build()
}

/// What a guest printed during one request, kept up to a cap so a chatty or
/// hostile guest cannot fill the host's memory. Writes past the cap are
/// dropped silently: the guest must not trap because it logged too much.
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

const OUTPUT_CAP: usize = 64 << 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
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

    fn push(&self, stream: Stream, bytes: &[u8]) {
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

    /// Sends what the guest printed to the log, one event per line.
    pub(crate) fn emit(&self, guest: &str) {
        let captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for line in String::from_utf8_lossy(&captured.stdout).lines() {
            tracing::info!(target: "rawalite::guest", guest, stream = "stdout", "{line}");
        }
        for line in String::from_utf8_lossy(&captured.stderr).lines() {
            tracing::warn!(target: "rawalite::guest", guest, stream = "stderr", "{line}");
        }
        if captured.dropped > 0 {
            tracing::warn!(
                target: "rawalite::guest",
                guest,
                dropped_bytes = captured.dropped,
                "guest output over {OUTPUT_CAP} bytes was dropped"
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
