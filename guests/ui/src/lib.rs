//! The demo app's shared look: the page layout with its navigation, form
//! fields with their errors, the invoice table, and money in integer cents. Every demo guest
//! links this library; it is not a guest itself.

use maud::{DOCTYPE, Markup, html};
use rawalite_guest::{Record, Request, Response, session};

/// The sections of the app, in the order the navigation shows them.
const SECTIONS: &[(&str, &str)] = &[
    ("/", "Dashboard"),
    ("/customers", "Customers"),
    ("/invoices", "Invoices"),
    ("/reports", "Reports"),
    ("/exports", "Exports"),
    ("/settings", "Settings"),
];

/// A whole page: head, navigation with the signed-in user, and `body`.
pub fn page(req: &Request, title: &str, body: Markup) -> Response {
    Response::page(layout(req, title, body))
}

/// The same page with another status (a form with errors is 422).
pub fn page_with_status(req: &Request, status: u16, title: &str, body: Markup) -> Response {
    page(req, title, body).with_status(status)
}

pub fn layout(req: &Request, title: &str, body: Markup) -> Markup {
    let user = session::current();
    let section = if req.base.is_empty() {
        "/"
    } else {
        req.base.as_str()
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · RawaLite" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                header.top {
                    a.brand href="/" { "RawaLite" }
                    @if user.is_some() {
                        nav {
                            @for (href, label) in SECTIONS {
                                a href=(href) class=[(*href == section).then_some("active")] { (label) }
                            }
                        }
                    }
                    @if let Some(user) = &user {
                        // A link: signing out is a form on the login screen's
                        // own page, since no screen may post to another.
                        div.account {
                            span.who { (user.display_name) }
                            a.signout href="/login/logout" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A labelled text input with its error, if any.
pub fn field(label: &str, name: &str, value: &str, error: Option<&str>) -> Markup {
    field_of_type(label, name, "text", value, error)
}

pub fn field_of_type(
    label: &str,
    name: &str,
    kind: &str,
    value: &str,
    error: Option<&str>,
) -> Markup {
    html! {
        label.field class=[error.map(|_| "invalid")] {
            span { (label) }
            input type=(kind) name=(name) value=(value);
            @if let Some(error) = error {
                small.error { (error) }
            }
        }
    }
}

/// A notice box (after a save) or an error box.
pub fn notice(text: &str) -> Markup {
    html! { p.notice { (text) } }
}

pub fn alert(text: &str) -> Markup {
    html! { p.alert { (text) } }
}

/// A table of invoices, one row per record with the columns `id`,
/// `number`, `name` (the customer), `issued_on`, `status` and
/// `total_cents`: the dashboard's recent invoices and the invoice list.
pub fn invoice_table<'a>(invoices: impl Iterator<Item = Record<'a>>) -> Markup {
    html! {
        table {
            thead { tr { th { "No." } th { "Customer" } th { "Issued" } th { "Status" } th.num { "Total" } } }
            tbody {
                @for r in invoices {
                    tr {
                        td { a href={ "/invoices/" (r.int("id")) } { (r.int("number")) } }
                        td { (r.text("name")) }
                        td { (r.text("issued_on")) }
                        td { span class={ "status " (r.text("status")) } { (r.text("status")) } }
                        td.num { (money(r.int("total_cents"))) }
                    }
                }
            }
        }
    }
}

/// `123456` cents → `1,234.56`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let units = (cents / 100).to_string();
    let mut grouped = String::with_capacity(units.len() + units.len() / 3);
    for (i, digit) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02}", cents % 100)
}

/// `1234.5`, `1,234.50` or `12` → cents, without floating point. At most two
/// decimals, not negative, below ten million.
pub fn parse_money(text: &str) -> Result<i64, String> {
    let text = text.trim().replace(',', "");
    let (units, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let bad = || format!("`{text}` is not an amount like 12.50");
    if units.is_empty() || !units.bytes().all(|b| b.is_ascii_digit()) || units.len() > 7 {
        return Err(bad());
    }
    if fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let units: i64 = units.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    Ok(units * 100 + fraction)
}

/// Basis points → `19 %` or `7.5 %`.
pub fn percent(basis_points: i64) -> String {
    if basis_points % 100 == 0 {
        format!("{} %", basis_points / 100)
    } else {
        format!("{} %", basis_points as f64 / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats_with_groups_and_cents() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(123456), "1,234.56");
        assert_eq!(money(100_000_000), "1,000,000.00");
        assert_eq!(money(-250), "-2.50");
    }

    #[test]
    fn money_parses_without_floats() {
        assert_eq!(parse_money("12.5"), Ok(1250));
        assert_eq!(parse_money(" 1,234.56 "), Ok(123456));
        assert_eq!(parse_money("7"), Ok(700));
        assert_eq!(parse_money("0.01"), Ok(1));
        for bad in ["", "-1", "1.234", "abc", "1e5", "99999999", ".5"] {
            assert!(parse_money(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percent_shows_basis_points() {
        assert_eq!(percent(1900), "19 %");
        assert_eq!(percent(750), "7.5 %");
    }
}
