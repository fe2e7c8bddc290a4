//! A benchmark guest: one 10-row query through `db`, rendered as an HTML
//! table by the same function the native baseline uses.

use rawalite_guest::db::{self, Value};
use rawalite_guest::{Error, Renderer, Request, Response};

struct BenchCustomers;

impl Renderer for BenchCustomers {
    fn render(_req: Request) -> Result<Response, Error> {
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
