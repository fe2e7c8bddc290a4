//! Invoices: a list, a form with line items (quantity × unit price, the
//! tax rate from the settings, every total in integer cents), a view, and
//! marking an invoice paid. Numbers come from a gapless sequence: the next
//! number is taken in the same transaction that stores the invoice, and
//! invoices are never deleted.

use maud::{Markup, html};
use rawalite_guest::db::{self, Statement, Value};
use rawalite_guest::{Error, Form, Renderer, Request, Response};

struct Invoices;

/// Line rows on the form; empty ones are ignored. Works without JavaScript.
const LINES: usize = 5;
const PAGE: i64 = 25;

impl Renderer for Invoices {
    fn render(req: Request) -> Result<Response, Error> {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", [""]) => list(&req),
            ("GET", ["new"]) => new_form(&req, &Draft::default(), &[]),
            ("POST", ["new"]) => create(&req),
            ("GET", [id]) => view(&req, parse_id(id)?),
            ("POST", [id, "paid"]) => mark_paid(parse_id(id)?),
            _ => Err(Error::not_found("no such page")),
        }
    }
}

rawalite_guest::export!(Invoices);

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub description: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

impl Line {
    pub fn total_cents(&self) -> i64 {
        self.quantity * self.unit_price_cents
    }
}

/// The totals of an invoice, all in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

/// Subtotal, tax at `rate_bp` basis points rounded half up to the cent, and
/// total.
pub fn totals(lines: &[Line], rate_bp: i64) -> Totals {
    let subtotal: i64 = lines.iter().map(Line::total_cents).sum();
    let tax = (subtotal * rate_bp + 5_000) / 10_000;
    Totals {
        subtotal,
        tax,
        total: subtotal + tax,
    }
}

/// The form as the user filled it in, kept to show it again with errors.
#[derive(Debug, Clone, Default)]
struct Draft {
    customer_id: String,
    issued_on: String,
    lines: Vec<[String; 3]>,
}

impl Draft {
    fn from_form(f: &Form) -> Self {
        Draft {
            customer_id: f.text("customer").to_owned(),
            issued_on: f.text("issued_on").to_owned(),
            lines: (0..LINES)
                .map(|i| {
                    [
                        f.text(&format!("description{i}")).to_owned(),
                        f.text(&format!("quantity{i}")).to_owned(),
                        f.text(&format!("price{i}")).to_owned(),
                    ]
                })
                .collect(),
        }
    }

    fn line(&self, i: usize) -> [&str; 3] {
        self.lines
            .get(i)
            .map(|[d, q, p]| [d.as_str(), q.as_str(), p.as_str()])
            .unwrap_or(["", "", ""])
    }

    /// The customer, the date and the lines, or every problem found.
    fn parse(&self) -> Result<(i64, String, Vec<Line>), Vec<String>> {
        let mut problems = Vec::new();
        let customer = self.customer_id.parse::<i64>().ok();
        if customer.is_none() {
            problems.push("Choose a customer.".to_owned());
        }
        if !self.issued_on.is_empty() && !is_date(&self.issued_on) {
            problems.push("The date must look like 2026-11-26.".to_owned());
        }
        let mut lines = Vec::new();
        for (i, [description, quantity, price]) in self.lines.iter().enumerate() {
            if description.is_empty() && quantity.is_empty() && price.is_empty() {
                continue;
            }
            let n = i + 1;
            if description.is_empty() || description.chars().count() > 500 {
                problems.push(format!(
                    "Line {n}: a description of at most 500 characters is required."
                ));
            }
            let quantity = match quantity.parse::<i64>() {
                Ok(q) if (1..=1_000_000).contains(&q) => q,
                _ => {
                    problems.push(format!(
                        "Line {n}: the quantity must be a whole number from 1 to 1000000."
                    ));
                    0
                }
            };
            let unit_price_cents = ui::parse_money(price).unwrap_or_else(|e| {
                problems.push(format!("Line {n}: {e}."));
                0
            });
            lines.push(Line {
                description: description.clone(),
                quantity,
                unit_price_cents,
            });
        }
        if lines.is_empty() {
            problems.push("Add at least one line.".to_owned());
        }
        match (customer, problems.is_empty()) {
            (Some(customer), true) => Ok((customer, self.issued_on.clone(), lines)),
            _ => Err(problems),
        }
    }
}

fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&text[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&text[8..10].parse::<u32>().unwrap_or(0))
}

fn parse_id(id: &str) -> Result<i64, Error> {
    id.parse().map_err(|_| Error::not_found("no such invoice"))
}

fn tax_rate() -> Result<i64, Error> {
    let rows = db::query("SELECT value FROM settings WHERE key = 'tax_rate_bp'", &[])?;
    Ok(rows
        .first()
        .and_then(|r| r.text("value").parse().ok())
        .unwrap_or(0))
}

fn create(req: &Request) -> Result<Response, Error> {
    let draft = Draft::from_form(&req.form());
    let (customer, issued_on, lines) = match draft.parse() {
        Ok(parsed) => parsed,
        Err(problems) => return new_form(req, &draft, &problems).map(|r| r.with_status(422)),
    };
    let rate = tax_rate()?;
    let t = totals(&lines, rate);
    let mut statements = vec![Statement {
        sql: "INSERT INTO invoices (number, customer_id, issued_on, tax_rate_bp, subtotal_cents, tax_cents, total_cents) \
              VALUES ((SELECT coalesce(max(number), 0) + 1 FROM invoices), ?, coalesce(nullif(?, ''), date('now')), ?, ?, ?, ?)"
            .into(),
        params: vec![
            customer.into(),
            issued_on.into(),
            rate.into(),
            t.subtotal.into(),
            t.tax.into(),
            t.total.into(),
        ],
    }];
    for (i, line) in lines.iter().enumerate() {
        statements.push(Statement {
            // The invoice inserted above: the transaction holds the write
            // lock, so no other invoice can be newer.
            sql: "INSERT INTO invoice_items (invoice_id, position, description, quantity, unit_price_cents, line_total_cents) \
                  VALUES ((SELECT max(id) FROM invoices), ?, ?, ?, ?, ?)"
                .into(),
            params: vec![
                (i as i64 + 1).into(),
                line.description.as_str().into(),
                line.quantity.into(),
                line.unit_price_cents.into(),
                line.total_cents().into(),
            ],
        });
    }
    match db::transaction(&statements) {
        Ok(outcomes) => Ok(Response::redirect(&format!(
            "/invoices/{}",
            outcomes[0].last_insert_rowid
        ))),
        Err(e) if e.message.contains("FOREIGN KEY") => {
            new_form(req, &draft, &["That customer no longer exists.".to_owned()])
                .map(|r| r.with_status(422))
        }
        Err(e) => Err(e),
    }
}

fn mark_paid(id: i64) -> Result<Response, Error> {
    db::execute(
        "UPDATE invoices SET status = 'paid', paid_on = date('now') WHERE id = ? AND status = 'open'",
        &[id.into()],
    )?;
    Ok(Response::redirect(&format!("/invoices/{id}")))
}

fn list(req: &Request) -> Result<Response, Error> {
    let page: i64 = req
        .query("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .max(0);
    let rows = db::query(
        "SELECT i.id, i.number, i.issued_on, i.status, i.total_cents, c.name \
         FROM invoices i JOIN customers c ON c.id = i.customer_id \
         ORDER BY i.number DESC LIMIT ? OFFSET ?",
        &[(PAGE + 1).into(), (page * PAGE).into()],
    )?;
    let more = rows.rows.len() as i64 > PAGE;
    let body = html! {
        div.heading {
            h1 { "Invoices" }
            a.button.primary href="/invoices/new" { "New invoice" }
        }
        @if rows.rows.is_empty() {
            p.empty { "No invoices yet." }
        } @else {
            (ui::invoice_table(rows.records().take(PAGE as usize)))
            nav.pager {
                @if page > 0 { a href={ "/invoices?page=" (page - 1) } { "← Newer" } }
                @if more { a href={ "/invoices?page=" (page + 1) } { "Older →" } }
            }
        }
    };
    Ok(ui::page(req, "Invoices", body))
}

fn new_form(req: &Request, draft: &Draft, problems: &[String]) -> Result<Response, Error> {
    let customers = db::query(
        "SELECT id, name FROM customers ORDER BY name COLLATE NOCASE LIMIT 1000",
        &[],
    )?;
    let rate = tax_rate()?;
    let body: Markup = html! {
        h1 { "New invoice" }
        @for problem in problems { (ui::alert(problem)) }
        @if customers.rows.is_empty() {
            p.empty { "Add a customer first: " a href="/customers/new" { "new customer" } "." }
        } @else {
            form.stacked method="post" action="/invoices/new" {
                label.field {
                    span { "Customer" }
                    select name="customer" {
                        option value="" { "Choose…" }
                        @for c in customers.records() {
                            @let id = c.int("id").to_string();
                            option value=(id) selected[id == draft.customer_id] { (c.text("name")) }
                        }
                    }
                }
                (ui::field_of_type("Issued on (empty: today)", "issued_on", "date", &draft.issued_on, None))
                table.lines {
                    thead { tr { th { "Description" } th.num { "Quantity" } th.num { "Unit price" } } }
                    tbody {
                        @for i in 0..LINES {
                            @let [description, quantity, price] = draft.line(i);
                            tr {
                                td { input type="text" name={ "description" (i) } value=(description) aria-label={ "Line " (i + 1) " description" }; }
                                td.num { input type="number" min="1" name={ "quantity" (i) } value=(quantity) aria-label={ "Line " (i + 1) " quantity" }; }
                                td.num { input type="text" inputmode="decimal" name={ "price" (i) } value=(price) placeholder="0.00" aria-label={ "Line " (i + 1) " unit price" }; }
                            }
                        }
                    }
                }
                p.hint { "Tax: " (ui::percent(rate)) " (from the settings). Empty lines are ignored." }
                div.buttons {
                    button.primary type="submit" { "Create invoice" }
                    a href="/invoices" { "Cancel" }
                }
            }
        }
    };
    Ok(ui::page(req, "New invoice", body))
}

fn view(req: &Request, id: i64) -> Result<Response, Error> {
    let invoice = db::query(
        "SELECT i.number, i.issued_on, i.status, i.paid_on, i.tax_rate_bp, i.subtotal_cents, i.tax_cents, i.total_cents, c.name, c.address \
         FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.id = ?",
        &[id.into()],
    )?;
    let inv = invoice
        .first()
        .ok_or_else(|| Error::not_found("no such invoice"))?;
    let items = db::query(
        "SELECT position, description, quantity, unit_price_cents, line_total_cents \
         FROM invoice_items WHERE invoice_id = ? ORDER BY position",
        &[Value::Integer(id)],
    )?;
    let title = format!("Invoice {}", inv.int("number"));
    let body = html! {
        div.heading {
            h1 { (title) " " span class={ "status " (inv.text("status")) } { (inv.text("status")) } }
            div.buttons {
                @if inv.text("status") == "open" {
                    form.inline method="post" action={ "/invoices/" (id) "/paid" } {
                        button.primary type="submit" { "Mark paid" }
                    }
                }
                a.button href={ "/invoices/pdf/" (id) } { "PDF" }
                form.inline method="post" action="/exports/invoice" {
                    input type="hidden" name="invoice" value=(id);
                    button type="submit" { "Export CSV" }
                }
            }
        }
        dl.facts {
            dt { "Customer" } dd { (inv.text("name")) @if !inv.text("address").is_empty() { br; small { (inv.text("address")) } } }
            dt { "Issued" } dd { (inv.text("issued_on")) }
            @if let Some(paid) = inv.opt_text("paid_on") { dt { "Paid" } dd { (paid) } }
        }
        table.items {
            thead { tr { th { "#" } th { "Description" } th.num { "Quantity" } th.num { "Unit price" } th.num { "Amount" } } }
            tbody {
                @for item in items.records() {
                    tr {
                        td { (item.int("position")) }
                        td { (item.text("description")) }
                        td.num { (item.int("quantity")) }
                        td.num { (ui::money(item.int("unit_price_cents"))) }
                        td.num { (ui::money(item.int("line_total_cents"))) }
                    }
                }
            }
            tfoot {
                tr { td colspan="4" { "Subtotal" } td.num { (ui::money(inv.int("subtotal_cents"))) } }
                tr { td colspan="4" { "Tax " (ui::percent(inv.int("tax_rate_bp"))) } td.num { (ui::money(inv.int("tax_cents"))) } }
                tr.total { td colspan="4" { "Total" } td.num #total { (ui::money(inv.int("total_cents"))) } }
            }
        }
        p { a href="/invoices" { "← All invoices" } }
    };
    Ok(ui::page(req, &title, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: i64, unit_price_cents: i64) -> Line {
        Line {
            description: "x".into(),
            quantity,
            unit_price_cents,
        }
    }

    #[test]
    fn totals_are_integer_cents_with_half_up_tax() {
        let t = totals(&[line(2, 1250), line(1, 999)], 1900);
        assert_eq!(
            t,
            Totals {
                subtotal: 3499,
                tax: 665,
                total: 4164
            }
        );
        // 0.5 cent rounds up: 50 cents at 1 % is 0.5 cent.
        assert_eq!(totals(&[line(1, 50)], 100).tax, 1);
        assert_eq!(totals(&[line(1, 49)], 100).tax, 0);
        assert_eq!(
            totals(&[], 1900),
            Totals {
                subtotal: 0,
                tax: 0,
                total: 0
            }
        );
    }

    fn draft(lines: &[[&str; 3]]) -> Draft {
        Draft {
            customer_id: "1".into(),
            issued_on: String::new(),
            lines: lines.iter().map(|l| l.map(str::to_owned)).collect(),
        }
    }

    #[test]
    fn a_draft_parses_into_lines_and_skips_empty_rows() {
        let (customer, _, lines) = draft(&[
            ["Consulting", "3", "100.00"],
            ["", "", ""],
            ["Travel", "1", "45.5"],
        ])
        .parse()
        .unwrap();
        assert_eq!(customer, 1);
        assert_eq!(
            lines,
            [
                Line {
                    description: "Consulting".into(),
                    quantity: 3,
                    unit_price_cents: 10000
                },
                Line {
                    description: "Travel".into(),
                    quantity: 1,
                    unit_price_cents: 4550
                }
            ]
        );
    }

    #[test]
    fn a_bad_draft_names_every_problem() {
        let problems = draft(&[["", "0", "abc"]]).parse().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(draft(&[]).parse().unwrap_err()[0].contains("at least one line"));
        let mut d = draft(&[["x", "1", "1"]]);
        d.issued_on = "26.11.2026".into();
        assert!(d.parse().is_err());
    }
}
