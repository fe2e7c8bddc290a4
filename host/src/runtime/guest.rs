//! A loaded guest and one request to it: a fresh store from the guest's
//! pre-instantiated component, its limits, `render`, and a verdict that
//! tells a response, a guest error and a stopped guest apart.
//!
//! A render is a future: the guest runs on a stack of its own and yields to
//! the async runtime at every epoch tick, so a long computation shares its
//! thread instead of holding it, and a wait (a sleep) holds no thread at
//! all. Both end at the request's deadline. [`Guest::render`] drives one to completion where no runtime runs
//! (the command line, tests).

use super::GuestState;
use super::clock_random::Pinned;
use super::imports::Surface;
use super::limits::Limiter;
use super::log::GuestPanic;
use super::wasi::GuestOutput;
use crate::capabilities::session::{Caller, SessionChange};
use crate::capabilities::{
    DeadlineReached, Error, Grants, Refused, RendererPre, Request, Response,
};
use crate::limits::Limits;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};

/// How long past its deadline a guest's code may run to return what a host
/// call that stopped at the deadline said.
const GRACE: Duration = Duration::from_millis(10);

/// A guest ready to render: compiled, checked and pre-instantiated.
pub struct Guest {
    name: Arc<str>,
    pre: RendererPre<GuestState>,
    limits: Limits,
    grants: Grants,
    hash: [u8; 32],
    surface: Surface,
    pinned: Option<Pinned>,
}

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    /// The guest answered (any status).
    Response(Response),
    /// The guest returned a `types.error`.
    Error(Error),
    /// The host stopped the guest.
    Stopped(Stopped),
}

/// One rendered request: what became of it and what it did to its session.
#[derive(Debug)]
pub struct Rendered {
    pub outcome: Outcome,
    pub session: SessionChange,
    /// How often the guest's memory grew past what it was made with: a
    /// page that grows costs every request of it two `mprotect`s.
    pub memory_grows: u32,
}

/// Why the host stopped a guest. The guest's instance is gone; the host and
/// every other request carry on.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Stopped {
    #[error("deadline: the guest ran past its deadline of {} ms", .timeout.as_millis())]
    Deadline { timeout: Duration },
    #[error("memory: the guest needed more than its memory limit of {limit} bytes")]
    Memory { limit: u64 },
    #[error("response too large: the guest answered {size} bytes, over the limit of {limit}")]
    ResponseTooLarge { size: u64, limit: u64 },
    #[error("panic{}: {message}", .location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Panic {
        message: String,
        /// Where, when the guest said: `src/lib.rs:12:5`, `app.py:30`.
        location: Option<String>,
    },
    #[error("refused: {message}")]
    Refused { message: String },
    #[error("trap: {message}")]
    Trap { message: String },
}

impl Stopped {
    /// The cause, in one word (for metrics).
    pub fn cause(&self) -> &'static str {
        match self {
            Stopped::Deadline { .. } => "deadline",
            Stopped::Memory { .. } => "memory",
            Stopped::ResponseTooLarge { .. } => "response_size",
            Stopped::Panic { .. } => "panic",
            Stopped::Refused { .. } => "refused",
            Stopped::Trap { .. } => "trap",
        }
    }
}

impl Guest {
    pub(crate) fn new(
        name: Arc<str>,
        pre: RendererPre<GuestState>,
        limits: Limits,
        grants: Grants,
        hash: [u8; 32],
        surface: Surface,
    ) -> Self {
        Guest {
            name,
            pre,
            limits,
            grants,
            hash,
            surface,
            pinned: None,
        }
    }

    /// This guest with its time and randomness pinned for every render
    /// (`rawalite test`): same request, same bytes.
    pub fn pinned(self, pinned: Pinned) -> Self {
        Guest {
            pinned: Some(pinned),
            ..self
        }
    }

    /// This guest, compiled and pre-instantiated once, with other grants:
    /// `rawalite test` loads a guest once and gives each case's copy the
    /// grants of that case's database and roots.
    pub fn with_grants(&self, grants: Grants) -> Guest {
        Guest {
            name: self.name.clone(),
            pre: self.pre.clone(),
            limits: self.limits,
            grants,
            hash: self.hash,
            surface: self.surface.clone(),
            pinned: self.pinned,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The SHA-256 of the component binary.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The component's imports and exports.
    pub fn surface(&self) -> &Surface {
        &self.surface
    }

    /// Renders one request from `caller` in a fresh instance, after checking
    /// that the caller may use this guest at all. For callers outside an
    /// async runtime: it runs the render on a runtime of this thread's own.
    /// (Within a runtime, await [`Guest::render_async`] instead.)
    pub fn render(&self, request: &Request, caller: Caller) -> Rendered {
        thread_local! {
            static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for this thread");
        }
        RUNTIME.with(|runtime| runtime.block_on(self.render_async(request, caller)))
    }

    /// Renders one request from `caller` in a fresh instance, after checking
    /// that the caller may use this guest at all.
    pub async fn render_async(&self, request: &Request, caller: Caller) -> Rendered {
        if let Err(refused) = self.grants.session.admit(caller.user.as_ref()) {
            return Rendered {
                outcome: Outcome::Error(refused),
                session: SessionChange::Unchanged,
                memory_grows: 0,
            };
        }
        let deadline = Instant::now() + self.limits.timeout;
        let output = GuestOutput::default();
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.limits.handles);
        let states = self
            .grants
            .request(&self.name, deadline, self.limits.memory, caller);
        let state = GuestState {
            wasi: None,
            output: output.clone(),
            table,
            limiter: Limiter::new(&self.limits),
            call: states.call,
            db: states.db,
            paths: states.paths,
            session: states.session,
            pinned: self.pinned.map(Pinned::state),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // At every tick the guest yields to the runtime, until its deadline.
        // It is stopped a few ticks later: a host call that ended at the
        // deadline (a query stopped there) leaves the guest time to return
        // its `timeout`.
        store.set_epoch_deadline(1);
        let stop = deadline + GRACE;
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            Ok(if now >= stop {
                UpdateDeadline::Interrupt
            } else if now >= deadline {
                UpdateDeadline::Continue(1)
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        // Code stops at the epoch deadline; a wait inside the host (a
        // sleep) stops at the deadline too (`wasi.rs`).
        let result = async {
            let renderer = self.pre.instantiate_async(&mut store).await?;
            renderer
                .func_render()
                .call_async(&mut store, (request,))
                .await
                .map(|(result,)| result)
        }
        .await;
        output.emit(&self.name);
        let outcome = match result {
            Ok(Ok(response)) => self.check_size(response),
            Ok(Err(error)) => Outcome::Error(error),
            Err(trap) => Outcome::Stopped(self.stopped(&trap, &store, &output)),
        };
        if let Outcome::Stopped(why) = &outcome {
            tracing::warn!(guest = %self.name, reason = ?why.to_string(), "guest stopped");
        }
        let session = std::mem::take(&mut store.data_mut().session.change);
        let memory_grows = store.data().limiter.grows;
        crate::metrics::memory_grows(&self.name, memory_grows);
        Rendered {
            outcome,
            session,
            memory_grows,
        }
    }

    fn check_size(&self, response: Response) -> Outcome {
        let headers: usize = response
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let size = (response.body.len() + headers) as u64;
        if size > self.limits.response_bytes {
            Outcome::Stopped(Stopped::ResponseTooLarge {
                size,
                limit: self.limits.response_bytes,
            })
        } else {
            Outcome::Response(response)
        }
    }

    fn stopped(
        &self,
        error: &wasmtime::Error,
        store: &Store<GuestState>,
        output: &GuestOutput,
    ) -> Stopped {
        if store.data().limiter.memory_exceeded {
            return Stopped::Memory {
                limit: self.limits.memory,
            };
        }
        if error.downcast_ref::<DeadlineReached>().is_some() {
            return Stopped::Deadline {
                timeout: self.limits.timeout,
            };
        }
        if let Some(GuestPanic { message, location }) = error.downcast_ref::<GuestPanic>() {
            return Stopped::Panic {
                message: message.clone(),
                location: Some(location.clone()),
            };
        }
        if let Some(Refused(message)) = error.downcast_ref::<Refused>() {
            return Stopped::Refused {
                message: message.clone(),
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Stopped::Deadline {
                timeout: self.limits.timeout,
            },
            Some(Trap::UnreachableCodeReached) => match rust_panic(&output.stderr()) {
                Some((message, location)) => Stopped::Panic { message, location },
                None => Stopped::Trap {
                    message: where_trapped(Trap::UnreachableCodeReached, error),
                },
            },
            Some(trap) => Stopped::Trap {
                message: where_trapped(*trap, error),
            },
            None => Stopped::Trap {
                message: format!("{error:#}"),
            },
        }
    }
}

/// A trap and the innermost named functions it happened in: the names say
/// what the code was doing (`filesystem_preopens_get_directories ← stat`
/// is a guest built without WASI opening a file).
fn where_trapped(trap: Trap, error: &wasmtime::Error) -> String {
    // The names come from the guest: a few, each cut short.
    let names: Vec<String> = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|backtrace| {
            backtrace
                .frames()
                .iter()
                .filter_map(|frame| frame.func_name())
                .take(3)
                .map(|name| name.chars().take(80).collect())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        trap.to_string()
    } else {
        format!("{trap}, in {}", names.join(" ← "))
    }
}

/// The message and location of a Rust panic, from what the panic hook
/// wrote to stderr: `thread '…' panicked at src/lib.rs:1:2:\n<message>\nnote: …`.
fn rust_panic(stderr: &str) -> Option<(String, Option<String>)> {
    let (_, rest) = stderr.rsplit_once("panicked at ")?;
    let (location, message) = rest.split_once('\n').unwrap_or((rest, ""));
    let location = location.strip_suffix(':').unwrap_or(location);
    let location = (!location.is_empty()).then(|| location.to_owned());
    let message = message
        .lines()
        .take_while(|line| !line.starts_with("note: "))
        .collect::<Vec<_>>()
        .join("\n");
    let message = if message.is_empty() {
        "the guest panicked".to_owned()
    } else {
        message
    };
    Some((message, location))
}

#[cfg(test)]
mod tests {
    use super::rust_panic;

    #[test]
    fn a_rust_panic_is_read_from_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:53:27:\nthe probe was asked to panic\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            rust_panic(stderr),
            Some((
                "the probe was asked to panic".to_owned(),
                Some("src/lib.rs:53:27".to_owned())
            ))
        );
        assert_eq!(rust_panic("just a log line\n"), None);
    }
}
