//! The dashboard: how many customers and invoices there are, what is open
//! and what was paid, and the latest invoices.

use maud::html;
use rawalite_guest::{Error, Renderer, Request, Response, db};

struct Dashboard;

impl Renderer for Dashboard {
    fn render(req: Request) -> Result<Response, Error> {
        if req.path != "/" {
            return Err(Error::not_found("no such page"));
        }
        let totals = db::query(
            "SELECT (SELECT count(*) FROM customers) AS customers, \
                    count(*) AS invoices, \
                    count(*) FILTER (WHERE status = 'open') AS open, \
                    coalesce(sum(CASE WHEN status = 'open' THEN total_cents END), 0) AS open_cents, \
                    coalesce(sum(CASE WHEN status = 'paid' THEN total_cents END), 0) AS paid_cents \
             FROM invoices",
            &[],
        )?;
        let t = totals.first().ok_or_else(|| Error::internal("no totals"))?;
        let recent = db::query(
            "SELECT i.id, i.number, i.issued_on, i.status, i.total_cents, c.name \
             FROM invoices i JOIN customers c ON c.id = i.customer_id \
             ORDER BY i.number DESC LIMIT 5",
            &[],
        )?;
        let body = html! {
            h1 { "Dashboard" }
            section.cards {
                div.card { span.label { "Customers" } span.value { (t.int("customers")) } }
                div.card { span.label { "Invoices" } span.value { (t.int("invoices")) } }
                div.card { span.label { "Open" } span.value { (t.int("open")) } small { (ui::money(t.int("open_cents"))) " due" } }
                div.card { span.label { "Paid" } span.value { (ui::money(t.int("paid_cents"))) } }
            }
            h2 { "Recent invoices" }
            @if recent.rows.is_empty() {
                p.empty { "No invoices yet. " a href="/invoices/new" { "Create the first one" } "." }
            } @else {
                (ui::invoice_table(recent.records()))
            }
        };
        Ok(ui::page(&req, "Dashboard", body))
    }
}

rawalite_guest::export!(Dashboard);
