//! The benchmark pages, as plain functions. The `hello` and
//! `bench-customers` guests, the native baseline server and the wasi:http
//! component for `wasmtime serve` all render through these, so every system
//! in `cargo xtask bench serve` answers the same bytes.

use std::fmt::{self, Write};

/// The hello page: the request's method and path, escaped.
pub fn hello(method: &str, path: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Hello</title></head>\n<body><h1>Hello from RawaLite</h1><p>{} {}</p></body></html>\n",
        Escaped(method),
        Escaped(path)
    )
}

/// The query of the customers page.
pub const CUSTOMERS_QUERY: &str = "SELECT id, name, email FROM customers ORDER BY id LIMIT 10";

/// The customers page: a table of (id, name, email).
pub fn customers<'a>(rows: impl Iterator<Item = (i64, &'a str, &'a str)>) -> String {
    let mut html = String::with_capacity(2048);
    html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Customers</title></head>\n<body><table>\n<tr><th>#</th><th>Name</th><th>Email</th></tr>\n");
    for (id, name, email) in rows {
        let _ = writeln!(
            html,
            "<tr><td>{id}</td><td>{}</td><td>{}</td></tr>",
            Escaped(name),
            Escaped(email)
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

/// Text escaped for HTML as it is formatted.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        assert!(hello("GET", "/<x>").contains("<p>GET /&lt;x&gt;</p>"));
        let page = customers([(1, "A & B", "a@b.c")].into_iter());
        assert!(page.contains("<tr><td>1</td><td>A &amp; B</td><td>a@b.c</td></tr>"));
    }
}
