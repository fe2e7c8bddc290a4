//! A hostile renderer that tries to keep its thread (and its render slot)
//! past the request's deadline by waiting inside the host rather than
//! running wasm code, where the epoch deadline cannot reach it:
//!
//! - `/sleep`: one long `std::thread::sleep` (a monotonic-clock pollable);
//! - `/naps`: short sleeps in a loop, forever;
//! - `/stdin`: a blocking read of standard input;
//! - `/clock`: busy-reads the clocks, forever.
//!
//! Each must end at the deadline with the guest stopped.

use rawalite_guest::{Error, Renderer, Request, Response};
use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

struct Squatter;

impl Renderer for Squatter {
    fn render(req: Request) -> Result<Response, Error> {
        match req.path.as_str() {
            "/sleep" => std::thread::sleep(Duration::from_secs(3600)),
            "/naps" => loop {
                std::thread::sleep(Duration::from_millis(5));
            },
            "/stdin" => {
                let mut buf = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut buf);
                // Stdin is empty and closed: the read returns at once, so
                // wait again the only way left.
                std::thread::sleep(Duration::from_secs(3600));
            }
            "/clock" => {
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(3600) {
                    std::hint::black_box(SystemTime::now());
                }
            }
            other => return Err(Error::not_found(format!("no route {other}"))),
        }
        Ok(Response::text("woke up"))
    }
}

rawalite_guest::export!(Squatter);
