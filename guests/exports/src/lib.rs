//! Exports: an invoice, or all invoices of a month, written as CSV into the
//! `exports` root through `paths`; a list of the exports, and downloads.

use maud::html;
use rawalite_guest::paths::{self, EntryKind};
use rawalite_guest::{Error, Renderer, Request, Response, db};

struct Exports;

const ROOT: &str = "exports";

impl Renderer for Exports {
    fn render(req: Request) -> Result<Response, Error> {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", [""]) => list(&req),
            ("POST", ["invoice"]) => {
                let id: i64 = req
                    .form()
                    .text("invoice")
                    .parse()
                    .map_err(|_| Error::invalid_input("choose an invoice"))?;
                let name = export_invoice(id)?;
                Ok(Response::redirect(&format!("/exports?done={name}")))
            }
            ("POST", ["month"]) => {
                let form = req.form();
                let month = form.text("month");
                if !is_month(month) {
                    return Err(Error::invalid_input("the month must look like 2026-11"));
                }
                let name = export_month(month)?;
                Ok(Response::redirect(&format!("/exports?done={name}")))
            }
            ("GET", ["files", name]) => download(name),
            _ => Err(Error::not_found("no such page")),
        }
    }
}

rawalite_guest::export!(Exports);

fn is_month(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
        && (1..=12).contains(&text[5..].parse::<u32>().unwrap_or(0))
}

/// One CSV cell: quoted when it needs to be, and defused when a spreadsheet
/// would read it as a formula.
pub fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn row(cells: &[String]) -> String {
    let mut line = cells.join(",");
    line.push_str("\r\n");
    line
}

fn export_invoice(id: i64) -> Result<String, Error> {
    let invoice = db::query(
        "SELECT i.number, i.issued_on, i.status, i.tax_rate_bp, i.subtotal_cents, i.tax_cents, i.total_cents, c.name \
         FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.id = ?",
        &[id.into()],
    )?;
    let inv = invoice
        .first()
        .ok_or_else(|| Error::not_found("no such invoice"))?;
    let items = db::query(
        "SELECT position, description, quantity, unit_price_cents, line_total_cents \
         FROM invoice_items WHERE invoice_id = ? ORDER BY position",
        &[id.into()],
    )?;
    let mut csv = row(&[
        "invoice",
        "issued_on",
        "customer",
        "position",
        "description",
        "quantity",
        "unit_price",
        "amount",
    ]
    .map(String::from));
    for item in items.records() {
        csv += &row(&[
            inv.int("number").to_string(),
            cell(inv.text("issued_on")),
            cell(inv.text("name")),
            item.int("position").to_string(),
            cell(item.text("description")),
            item.int("quantity").to_string(),
            ui::money(item.int("unit_price_cents")).replace(',', ""),
            ui::money(item.int("line_total_cents")).replace(',', ""),
        ]);
    }
    for (label, cents) in [
        ("subtotal", inv.int("subtotal_cents")),
        ("tax", inv.int("tax_cents")),
        ("total", inv.int("total_cents")),
    ] {
        csv += &row(&[
            inv.int("number").to_string(),
            String::new(),
            String::new(),
            String::new(),
            label.to_owned(),
            String::new(),
            String::new(),
            ui::money(cents).replace(',', ""),
        ]);
    }
    let name = format!("invoice-{}.csv", inv.int("number"));
    paths::open(ROOT)?.write(&name, csv.as_bytes())?;
    Ok(name)
}

fn export_month(month: &str) -> Result<String, Error> {
    let rows = db::query(
        "SELECT i.number, i.issued_on, i.status, c.name, i.subtotal_cents, i.tax_cents, i.total_cents \
         FROM invoices i JOIN customers c ON c.id = i.customer_id \
         WHERE substr(i.issued_on, 1, 7) = ? ORDER BY i.number",
        &[month.into()],
    )?;
    let mut csv = row(&[
        "invoice",
        "issued_on",
        "customer",
        "status",
        "subtotal",
        "tax",
        "total",
    ]
    .map(String::from));
    for r in rows.records() {
        csv += &row(&[
            r.int("number").to_string(),
            cell(r.text("issued_on")),
            cell(r.text("name")),
            cell(r.text("status")),
            ui::money(r.int("subtotal_cents")).replace(',', ""),
            ui::money(r.int("tax_cents")).replace(',', ""),
            ui::money(r.int("total_cents")).replace(',', ""),
        ]);
    }
    let name = format!("invoices-{month}.csv");
    paths::open(ROOT)?.write(&name, csv.as_bytes())?;
    Ok(name)
}

fn download(name: &str) -> Result<Response, Error> {
    let bytes = paths::open(ROOT)?.read(name)?;
    // The name comes from the path; only simple names reach the header.
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    Ok(
        Response::bytes("text/csv; charset=utf-8", bytes).with_header(
            "content-disposition",
            &format!("attachment; filename=\"{safe}\""),
        ),
    )
}

fn list(req: &Request) -> Result<Response, Error> {
    let mut files: Vec<_> = paths::open(ROOT)?
        .list_dir("")?
        .into_iter()
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.modified_ms));
    let invoices = db::query(
        "SELECT i.id, i.number, c.name FROM invoices i JOIN customers c ON c.id = i.customer_id ORDER BY i.number DESC LIMIT 200",
        &[],
    )?;
    let done = req.query("done");
    let body = html! {
        h1 { "Exports" }
        @if let Some(done) = done { (ui::notice(&format!("Exported {done}."))) }
        section.exports {
            form.card method="post" action="/exports/invoice" {
                h2 { "One invoice" }
                select name="invoice" aria-label="Invoice" {
                    @for i in invoices.records() {
                        option value=(i.int("id")) { (i.int("number")) " · " (i.text("name")) }
                    }
                }
                button.primary type="submit" { "Export invoice" }
            }
            form.card method="post" action="/exports/month" {
                h2 { "A month" }
                input type="month" name="month" aria-label="Month" required;
                button.primary type="submit" { "Export month" }
            }
        }
        h2 { "Files" }
        @if files.is_empty() {
            p.empty { "Nothing exported yet." }
        } @else {
            table {
                thead { tr { th { "File" } th.num { "Size" } } }
                tbody {
                    @for f in &files {
                        tr {
                            td { a href={ "/exports/files/" (f.name) } download { (f.name) } }
                            td.num { (f.size) " B" }
                        }
                    }
                }
            }
        }
    };
    Ok(ui::page(req, "Exports", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-5"), "'-5");
    }

    #[test]
    fn months_look_like_yyyy_mm() {
        assert!(is_month("2026-11"));
        assert!(!is_month("2026-13"));
        assert!(!is_month("26-11"));
        assert!(!is_month("2026/11"));
    }
}
