//! The hello page as a `wasi:http/proxy` component, so `cargo xtask bench
//! serve` can compare RawaLite with `wasmtime serve` on the same page. It
//! imports wasi:http, so RawaLite itself would refuse it at load.

// Its export names (`wasi:http/...#handle`) are not valid native symbols, so
// the workspace's host build compiles it empty.
#![cfg(target_arch = "wasm32")]

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_owned(),
            Method::Post => "POST".to_owned(),
            Method::Head => "HEAD".to_owned(),
            Method::Put => "PUT".to_owned(),
            Method::Delete => "DELETE".to_owned(),
            Method::Other(other) => other,
            other => format!("{other:?}").to_uppercase(),
        };
        let target = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let path = target.split('?').next().unwrap_or("/");
        // Serve answers under its own root; show the path as RawaLite's
        // `hello` at `/hello` does: with the route removed.
        let path = path
            .strip_prefix("/hello")
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let page = pages::hello(&method, path);

        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/html; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("the stream is taken once");
        stream
            .blocking_write_and_flush(page.as_bytes())
            .expect("writing the page");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}

wasip2::http::proxy::export!(Hello);
