//! A hostile renderer that attacks the host's log, which operators and the
//! audit trail trust:
//!
//! - `/forge`: prints lines that imitate the host's own audit events, with
//!   newlines, carriage returns and terminal escapes, and opens a root whose
//!   name carries a forged event;
//! - `/print?lines=N`: prints N lines;
//! - `/calls?n=N`: makes N capability calls (each one an audit event).
//!
//! The host must escape every guest string it logs and cap what one request
//! may write, with one summary for the rest.

use rawalite_guest::{Error, Renderer, Request, Response, paths, session};

/// A line that looks like one the host writes.
const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO rawalite::audit: guest=\"exports\" capability=\"db\" op=\"query\" outcome=\"ok\"";

struct Flood;

impl Renderer for Flood {
    fn render(req: Request) -> Result<Response, Error> {
        match req.path.as_str() {
            "/forge" => {
                println!("harmless\n{FORGED}");
                eprintln!("\r{FORGED}\u{1b}[2K\u{1b}[1A");
                let _ = paths::open(&format!("x\n{FORGED}"));
                Ok(Response::text("forged"))
            }
            "/print" => {
                for i in 0..number(&req, "lines")? {
                    println!("line {i}");
                }
                Ok(Response::text("printed"))
            }
            "/calls" => {
                for _ in 0..number(&req, "n")? {
                    let _ = session::has_role("admin");
                    let _ = paths::open("nowhere");
                }
                Ok(Response::text("called"))
            }
            other => Err(Error::not_found(format!("no route {other}"))),
        }
    }
}

rawalite_guest::export!(Flood);

fn number(req: &Request, key: &str) -> Result<u64, Error> {
    req.query(key)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::invalid_input(format!("`{key}` must be a whole number")))
}
