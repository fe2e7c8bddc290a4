//! The smallest renderer: a page that shows the request's method and path.

use rawalite_guest::{Error, Renderer, Request, Response};

struct Hello;

impl Renderer for Hello {
    fn render(req: Request) -> Result<Response, Error> {
        Ok(Response::html(pages::hello(&req.method, &req.path)))
    }
}

rawalite_guest::export!(Hello);
