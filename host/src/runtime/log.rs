//! The bridge's `log` interface: what a guest without WASI prints, and the
//! panic it reports before it stops. It writes into the same capped buffer
//! as WASI stdout and stderr, so it can flood nothing.

use super::GuestState;
use super::wasi::Stream;
use crate::capabilities::rawalite::bridge::log::{self, Output};
use std::fmt;
use wasmtime::component::{HasSelf, Linker};

/// The longest panic message or location kept; the rest is cut.
const PANIC_TEXT: usize = 4 << 10;

pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    log::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)
}

/// The guest reported a panic through `log.panic`; it is stopped with this.
#[derive(Debug, Clone)]
pub(crate) struct GuestPanic {
    pub message: String,
    pub location: String,
}

impl fmt::Display for GuestPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panic at {}: {}", self.location, self.message)
    }
}

impl std::error::Error for GuestPanic {}

impl log::Host for GuestState {
    fn write(&mut self, to: Output, text: String) -> wasmtime::Result<()> {
        let stream = match to {
            Output::Stdout => Stream::Stdout,
            Output::Stderr => Stream::Stderr,
        };
        self.output.push(stream, text.as_bytes());
        Ok(())
    }

    fn panic(&mut self, message: String, location: String) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(GuestPanic {
            message: cut(message),
            location: cut(location),
        }))
    }
}

/// `text`, at most [`PANIC_TEXT`] bytes of it (on a character boundary).
fn cut(mut text: String) -> String {
    if text.len() > PANIC_TEXT {
        let mut end = PANIC_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_panic_text_is_cut_on_a_character_boundary() {
        let text = "é".repeat(PANIC_TEXT);
        let kept = cut(text);
        assert!(kept.len() <= PANIC_TEXT);
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(cut("short".into()), "short");
    }
}
