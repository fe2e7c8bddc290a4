//! Customers: a list with search and paging, and forms to create, edit and
//! delete, each field validated with its error shown on the form.

use maud::{Markup, html};
use rawalite_guest::db::{self, Value};
use rawalite_guest::{Error, ErrorCode, Form, Renderer, Request, Response};
use std::collections::BTreeMap;

struct Customers;

const PAGE: i64 = 20;

impl Renderer for Customers {
    fn render(req: Request) -> Result<Response, Error> {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", [""]) => list(&req, None),
            ("GET", ["new"]) => Ok(form_page(&req, None, &Customer::default(), &Errors::new())),
            ("POST", ["new"]) => save(&req, None),
            ("GET", [id, "edit"]) => {
                let id = parse_id(id)?;
                Ok(form_page(&req, Some(id), &load(id)?, &Errors::new()))
            }
            ("POST", [id, "edit"]) => save(&req, Some(parse_id(id)?)),
            ("POST", [id, "delete"]) => delete(&req, parse_id(id)?),
            _ => Err(Error::not_found("no such page")),
        }
    }
}

rawalite_guest::export!(Customers);

/// A customer as the form edits it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Customer {
    pub name: String,
    pub email: String,
    pub phone: String,
    pub address: String,
    pub notes: String,
}

/// Field name → what is wrong with it.
pub type Errors = BTreeMap<&'static str, String>;

impl Customer {
    pub fn from_form(f: &Form) -> Self {
        Customer {
            name: f.text("name").to_owned(),
            email: f.text("email").to_owned(),
            phone: f.text("phone").to_owned(),
            address: f.text("address").to_owned(),
            notes: f.text("notes").to_owned(),
        }
    }

    /// Every problem with the fields, by field.
    pub fn validate(&self) -> Errors {
        let mut errors = Errors::new();
        let chars = |s: &str| s.chars().count();
        if self.name.is_empty() {
            errors.insert("name", "A name is required.".into());
        } else if chars(&self.name) > 200 {
            errors.insert("name", "At most 200 characters.".into());
        }
        if !self.email.is_empty() && !looks_like_email(&self.email) {
            errors.insert("email", "This does not look like an email address.".into());
        }
        if !self.phone.is_empty()
            && (chars(&self.phone) > 50
                || !self
                    .phone
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-()/.".contains(c)))
        {
            errors.insert("phone", "Use digits, spaces and + - ( ) / only.".into());
        }
        if chars(&self.address) > 500 {
            errors.insert("address", "At most 500 characters.".into());
        }
        if chars(&self.notes) > 2000 {
            errors.insert("notes", "At most 2000 characters.".into());
        }
        errors
    }

    fn params(&self) -> Vec<Value> {
        let opt = |s: &str| if s.is_empty() { Value::Null } else { s.into() };
        vec![
            self.name.as_str().into(),
            opt(&self.email),
            opt(&self.phone),
            opt(&self.address),
            opt(&self.notes),
        ]
    }
}

fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>')
}

fn parse_id(id: &str) -> Result<i64, Error> {
    id.parse().map_err(|_| Error::not_found("no such customer"))
}

fn load(id: i64) -> Result<Customer, Error> {
    let rows = db::query(
        "SELECT name, email, phone, address, notes FROM customers WHERE id = ?",
        &[id.into()],
    )?;
    let r = rows
        .first()
        .ok_or_else(|| Error::not_found("no such customer"))?;
    Ok(Customer {
        name: r.text("name").into(),
        email: r.text("email").into(),
        phone: r.text("phone").into(),
        address: r.text("address").into(),
        notes: r.text("notes").into(),
    })
}

fn save(req: &Request, id: Option<i64>) -> Result<Response, Error> {
    let customer = Customer::from_form(&req.form());
    let mut errors = customer.validate();
    if errors.is_empty() {
        let mut params = customer.params();
        let result = match id {
            None => db::execute(
                "INSERT INTO customers (name, email, phone, address, notes) VALUES (?, ?, ?, ?, ?)",
                &params,
            ),
            Some(id) => {
                params.push(id.into());
                db::execute(
                    "UPDATE customers SET name = ?, email = ?, phone = ?, address = ?, notes = ?, \
                     updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?",
                    &params,
                )
            }
        };
        match result {
            Ok(outcome) if id.is_some() && outcome.changed == 0 => {
                return Err(Error::not_found("no such customer"));
            }
            Ok(_) => return Ok(Response::redirect("/customers?done=saved")),
            Err(e) if e.code == ErrorCode::Conflict && e.message.contains("customers_email") => {
                errors.insert("email", "Another customer has this email address.".into());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(form_page(req, id, &customer, &errors).with_status(422))
}

fn delete(req: &Request, id: i64) -> Result<Response, Error> {
    match db::execute("DELETE FROM customers WHERE id = ?", &[id.into()]) {
        Ok(_) => Ok(Response::redirect("/customers?done=deleted")),
        Err(e) if e.code == ErrorCode::Conflict => list(
            req,
            Some("This customer has invoices and cannot be deleted."),
        )
        .map(|r| r.with_status(409)),
        Err(e) => Err(e),
    }
}

fn list(req: &Request, problem: Option<&str>) -> Result<Response, Error> {
    let q = req.query("q").unwrap_or("").trim();
    let page: i64 = req
        .query("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .max(0);
    let pattern = format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = db::query(
        "SELECT c.id, c.name, c.email, c.phone, \
                (SELECT count(*) FROM invoices i WHERE i.customer_id = c.id) AS invoices \
         FROM customers c \
         WHERE ?1 = '' OR c.name LIKE ?2 ESCAPE '\\' OR c.email LIKE ?2 ESCAPE '\\' \
         ORDER BY c.name COLLATE NOCASE, c.id LIMIT ?3 OFFSET ?4",
        &[
            q.into(),
            pattern.into(),
            (PAGE + 1).into(),
            (page * PAGE).into(),
        ],
    )?;
    let more = rows.rows.len() as i64 > PAGE;
    let done = match req.query("done") {
        Some("saved") => Some("The customer was saved."),
        Some("deleted") => Some("The customer was deleted."),
        _ => None,
    };
    let link = |page: i64| format!("/customers?q={}&page={page}", url_encode(q));
    let body = html! {
        div.heading {
            h1 { "Customers" }
            a.button.primary href="/customers/new" { "New customer" }
        }
        @if let Some(done) = done { (ui::notice(done)) }
        @if let Some(problem) = problem { (ui::alert(problem)) }
        form.search method="get" action="/customers" {
            input type="search" name="q" value=(q) placeholder="Search by name or email";
            button type="submit" { "Search" }
        }
        @if rows.rows.is_empty() {
            p.empty { @if q.is_empty() { "No customers yet." } @else { "No customer matches “" (q) "”." } }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Email" } th { "Phone" } th.num { "Invoices" } th {} } }
                tbody {
                    @for r in rows.records().take(PAGE as usize) {
                        tr {
                            td { (r.text("name")) }
                            td { (r.text("email")) }
                            td { (r.text("phone")) }
                            td.num { (r.int("invoices")) }
                            td.actions {
                                a href={ "/customers/" (r.int("id")) "/edit" } { "Edit" }
                                form.inline method="post" action={ "/customers/" (r.int("id")) "/delete" } {
                                    button.link type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            nav.pager {
                @if page > 0 { a href=(link(page - 1)) { "← Previous" } }
                @if more { a href=(link(page + 1)) { "Next →" } }
            }
        }
    };
    Ok(ui::page(req, "Customers", body))
}

fn form_page(req: &Request, id: Option<i64>, c: &Customer, errors: &Errors) -> Response {
    let (title, action) = match id {
        None => ("New customer".to_owned(), "/customers/new".to_owned()),
        Some(id) => ("Edit customer".to_owned(), format!("/customers/{id}/edit")),
    };
    let err = |field: &str| errors.get(field).map(String::as_str);
    let body: Markup = html! {
        h1 { (title) }
        @if !errors.is_empty() { (ui::alert("Please correct the fields marked below.")) }
        form.stacked method="post" action=(action) {
            (ui::field("Name", "name", &c.name, err("name")))
            (ui::field_of_type("Email", "email", "email", &c.email, err("email")))
            (ui::field("Phone", "phone", &c.phone, err("phone")))
            (ui::field("Address", "address", &c.address, err("address")))
            (ui::field("Notes", "notes", &c.notes, err("notes")))
            div.buttons {
                button.primary type="submit" { "Save" }
                a href="/customers" { "Cancel" }
            }
        }
    };
    ui::page(req, &title, body)
}

/// Percent-encodes a query value for a link.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(name: &str, email: &str, phone: &str) -> Customer {
        Customer {
            name: name.into(),
            email: email.into(),
            phone: phone.into(),
            ..Customer::default()
        }
    }

    #[test]
    fn a_complete_customer_is_valid() {
        assert!(
            customer("Ada", "ada@example.org", "+49 (30) 123-45")
                .validate()
                .is_empty()
        );
        assert!(customer("Ada", "", "").validate().is_empty());
    }

    #[test]
    fn each_bad_field_gets_its_own_error() {
        let errors = customer("", "not-an-email", "call me").validate();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["email", "name", "phone"]
        );
        assert!(
            customer(&"x".repeat(201), "", "")
                .validate()
                .contains_key("name")
        );
        for bad in [
            "a@b",
            "@example.org",
            "a b@example.org",
            "a@.org",
            "a@example.",
        ] {
            assert!(
                customer("A", bad, "").validate().contains_key("email"),
                "{bad}"
            );
        }
    }

    #[test]
    fn search_terms_are_encoded_in_links() {
        assert_eq!(url_encode("Ada & Co"), "Ada%20%26%20Co");
    }
}
