//! A benchmark guest: one 10-row query through `db`, rendered as an HTML
//! table by the same function the native baseline uses. With `?queries=N`
//! it runs the query N times and renders nothing: the bench subtracts the
//! request to learn what one `db.query` costs.

use rawalite_guest::db::{self, Value};
use rawalite_guest::{Error, Renderer, Request, Response};

struct BenchCustomers;

impl Renderer for BenchCustomers {
    fn render(req: Request) -> Result<Response, Error> {
        if let Some(n) = req.query("queries").and_then(|n| n.parse::<usize>().ok()) {
            let mut rows = 0;
            for _ in 0..n {
                rows += db::query(pages::CUSTOMERS_QUERY, &[])?.rows.len();
            }
            return Ok(Response::text(rows.to_string()));
        }
        let rows = db::query(pages::CUSTOMERS_QUERY, &[])?;
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
        Ok(Response::html(pages::customers(customers)))
    }
}

rawalite_guest::export!(BenchCustomers);
