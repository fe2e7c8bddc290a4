
struct Page;

impl Renderer for Page {
    fn render(req: Request) -> Result<Response, Error> {
        if req.path != "/" {
            return Err(Error::not_found("no such page"));
        }
        let name = req.query("name").unwrap_or("world");
        let mut body = format!("<h1>Hello, {}!</h1>", escape(name));
        // capabilities
        Ok(Response::html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>@NAME@</title></head><body>{body}</body></html>"
        )))
    }
}

rawalite_guest::export!(Page);
