//! Signing in and out. `GET /login` shows the form, `POST /login` signs in
//! through the host (which checks the password and sets the cookie) and
//! goes on to `next`; `GET /login/logout` asks, and its form's
//! `POST /login/logout` signs out. (Every screen links here to sign out:
//! the host accepts a form only from the pages of the screen it is for.)

use maud::html;
use rawalite_guest::{Error, ErrorCode, Renderer, Request, Response, same_site, session};

struct Login;

impl Renderer for Login {
    fn render(req: Request) -> Result<Response, Error> {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Ok(form(&req, next(req.query("next")), None, "", 200)),
            ("POST", "/") => sign_in(&req),
            ("GET", "/logout") => Ok(sign_out_form(&req)),
            ("POST", "/logout") => {
                session::logout();
                Ok(Response::redirect("/login"))
            }
            _ => Err(Error::not_found("no such page")),
        }
    }
}

rawalite_guest::export!(Login);

fn sign_in(req: &Request) -> Result<Response, Error> {
    let f = req.form();
    let username = f.text("username");
    let next = next(f.get("next"));
    match session::login(username, f.get("password").unwrap_or("")) {
        Ok(_) => Ok(Response::redirect(&next)),
        Err(e) if matches!(e.code, ErrorCode::Unauthenticated | ErrorCode::Denied) => {
            Ok(form(req, next, Some(&e.message), username, 401))
        }
        Err(e) => Err(e),
    }
}

/// Where to go after signing in: a page of this app, never another site
/// (checked the way a browser will read it), else the start page.
fn next(next: Option<&str>) -> String {
    next.and_then(same_site)
        .map_or_else(|| "/".to_owned(), |next| next.into_owned())
}

fn form(req: &Request, next: String, error: Option<&str>, username: &str, status: u16) -> Response {
    let body = html! {
        section.signin {
            h1 { "Sign in" }
            @if let Some(error) = error { (ui::alert(error)) }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                (ui::field("Username", "username", username, None))
                (ui::field_of_type("Password", "password", "password", "", None))
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    ui::page_with_status(req, status, "Sign in", body)
}

fn sign_out_form(req: &Request) -> Response {
    let body = html! {
        section.signin {
            h1 { "Sign out" }
            @match session::current() {
                Some(user) => {
                    p { "Signed in as " strong { (user.display_name) } "." }
                    form.signout method="post" action="/login/logout" {
                        button.primary type="submit" { "Sign out" }
                        " "
                        a href="/" { "Stay signed in" }
                    }
                }
                None => {
                    p { "You are not signed in. " a href="/login" { "Sign in" } }
                }
            }
        }
    };
    ui::page(req, "Sign out", body)
}
