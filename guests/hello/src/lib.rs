//! The smallest renderer: a page that shows the request's method and path.

use rawalite_guest::{Error, Renderer, Request, Response, escape};

struct Hello;

impl Renderer for Hello {
    fn render(req: Request) -> Result<Response, Error> {
        Ok(Response::html(page(&req.method, &req.path)))
    }
}

rawalite_guest::export!(Hello);

/// The page, as a plain function so the host's benchmark and tests can
/// compare against exactly the same HTML.
pub fn page(method: &str, path: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Hello</title></head>\n<body><h1>Hello from RawaLite</h1><p>{} {}</p></body></html>\n",
        escape(method),
        escape(path)
    )
}
