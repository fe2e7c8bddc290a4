//! A benchmark guest: one 10-row query through `db`, rendered as an HTML
//! table. The page is a plain function so the native baseline renders
//! exactly the same HTML from the same rows.

use rawalite_guest::db::{self, Value};
use rawalite_guest::{Error, Renderer, Request, Response, escape};
use std::fmt::Write;

/// The query both the guest and the native baseline run.
pub const QUERY: &str = "SELECT id, name, email FROM customers ORDER BY id LIMIT 10";

struct BenchCustomers;

impl Renderer for BenchCustomers {
    fn render(_req: Request) -> Result<Response, Error> {
        let rows = db::query(QUERY, &[])?;
        let customers = rows.rows.iter().map(|row| {
            (
                row[0].as_i64().unwrap_or_default(),
                row[1].as_str().unwrap_or_default(),
                match &row[2] {
                    Value::Text(email) => email.as_str(),
                    _ => "",
                },
            )
        });
        Ok(Response::html(page(customers)))
    }
}

rawalite_guest::export!(BenchCustomers);

/// The page: a table of (id, name, email).
pub fn page<'a>(customers: impl Iterator<Item = (i64, &'a str, &'a str)>) -> String {
    let mut html = String::with_capacity(2048);
    html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Customers</title></head>\n<body><table>\n<tr><th>#</th><th>Name</th><th>Email</th></tr>\n");
    for (id, name, email) in customers {
        let _ = writeln!(
            html,
            "<tr><td>{id}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(email)
        );
    }
    html.push_str("</table></body></html>\n");
    html
}
