//! Settings: the company's name and address and the tax rate. Everyone
//! signed in may read them; only a user with the `admin` role may change
//! them, which the guest checks through `session.has-role`.

use maud::html;
use rawalite_guest::{Error, Form, Renderer, Request, Response, db, session};
use std::collections::BTreeMap;

struct Settings;

impl Renderer for Settings {
    fn render(req: Request) -> Result<Response, Error> {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => {
                let current = load()?;
                Ok(form(
                    &req,
                    &current,
                    &BTreeMap::new(),
                    req.query("done").is_some(),
                ))
            }
            ("POST", "/") => {
                if !session::has_role("admin") {
                    return Err(Error::denied("only an admin may change the settings"));
                }
                let values = Values::from_form(&req.form());
                let errors = values.validate();
                if !errors.is_empty() {
                    return Ok(form(&req, &values, &errors, false).with_status(422));
                }
                let statements = values
                    .pairs()
                    .into_iter()
                    .map(|(key, value)| db::Statement {
                        sql: "INSERT INTO settings (key, value) VALUES (?, ?) \
                              ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                            .into(),
                        params: vec![key.into(), value.into()],
                    })
                    .collect::<Vec<_>>();
                db::transaction(&statements)?;
                Ok(Response::redirect("/settings?done=saved"))
            }
            _ => Err(Error::not_found("no such page")),
        }
    }
}

rawalite_guest::export!(Settings);

/// The settings as the form shows them (the tax rate as a percentage).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Values {
    pub company_name: String,
    pub company_address: String,
    pub tax_rate: String,
}

impl Values {
    fn from_form(f: &Form) -> Self {
        Values {
            company_name: f.text("company_name").to_owned(),
            company_address: f.text("company_address").to_owned(),
            tax_rate: f.text("tax_rate").to_owned(),
        }
    }

    pub fn validate(&self) -> BTreeMap<&'static str, String> {
        let mut errors = BTreeMap::new();
        if self.company_name.is_empty() || self.company_name.chars().count() > 200 {
            errors.insert(
                "company_name",
                "A name of 1 to 200 characters is required.".into(),
            );
        }
        if self.company_address.chars().count() > 500 {
            errors.insert("company_address", "At most 500 characters.".into());
        }
        if tax_basis_points(&self.tax_rate).is_none() {
            errors.insert(
                "tax_rate",
                "A percentage from 0 to 100 with at most two decimals, like 19 or 7.5.".into(),
            );
        }
        errors
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("company_name", self.company_name.clone()),
            ("company_address", self.company_address.clone()),
            (
                "tax_rate_bp",
                tax_basis_points(&self.tax_rate).unwrap_or(0).to_string(),
            ),
        ]
    }
}

/// `19` or `7.5` (percent) → basis points, 0 to 10000.
pub fn tax_basis_points(percent: &str) -> Option<i64> {
    let bp = ui::parse_money(percent).ok()?;
    (bp <= 10_000).then_some(bp)
}

fn load() -> Result<Values, Error> {
    let rows = db::query("SELECT key, value FROM settings", &[])?;
    let mut values = Values::default();
    for r in rows.records() {
        match r.text("key") {
            "company_name" => values.company_name = r.text("value").into(),
            "company_address" => values.company_address = r.text("value").into(),
            "tax_rate_bp" => {
                values.tax_rate = ui::percent(r.text("value").parse().unwrap_or(0))
                    .trim_end_matches(" %")
                    .to_owned()
            }
            _ => {}
        }
    }
    Ok(values)
}

fn form(
    req: &Request,
    v: &Values,
    errors: &BTreeMap<&'static str, String>,
    saved: bool,
) -> Response {
    let admin = session::has_role("admin");
    let err = |f: &str| errors.get(f).map(String::as_str);
    let body = html! {
        h1 { "Settings" }
        @if saved { (ui::notice("The settings were saved.")) }
        @if !admin { p.hint { "Only an admin can change the settings." } }
        form.stacked method="post" action="/settings" {
            fieldset disabled[!admin] {
                (ui::field("Company name", "company_name", &v.company_name, err("company_name")))
                (ui::field("Address", "company_address", &v.company_address, err("company_address")))
                (ui::field("Tax rate (%)", "tax_rate", &v.tax_rate, err("tax_rate")))
                @if admin { div.buttons { button.primary type="submit" { "Save" } } }
            }
        }
    };
    ui::page(req, "Settings", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_rates_become_basis_points() {
        assert_eq!(tax_basis_points("19"), Some(1900));
        assert_eq!(tax_basis_points("7.5"), Some(750));
        assert_eq!(tax_basis_points("0"), Some(0));
        assert_eq!(tax_basis_points("100"), Some(10000));
        assert_eq!(tax_basis_points("100.01"), None);
        assert_eq!(tax_basis_points("-1"), None);
        assert_eq!(tax_basis_points("nineteen"), None);
    }
}
