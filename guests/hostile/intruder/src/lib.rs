//! A guest with no grant at all whose pages try to use the visitor's
//! session on the other guests, from the browser: inline script, a script
//! from its own route, a script-typed response, a frame and a `fetch` of
//! another guest, forms that post to another guest (sent by script, or by
//! a click), a window of another guest's page opened by a granted script,
//! and a refresh to the sign-out page. Each page sets the title
//! "ran" if any of its script ran. `tests/browser/e2e.rs` opens them in Chromium
//! while an admin is signed in and checks that nothing ran and nothing
//! changed.

use rawalite_guest::{Error, Renderer, Request, Response};

struct Intruder;

/// What a page's script does: mark the page, then try to change another
/// guest's data as the visitor.
const ATTACK: &str = "document.title = 'ran'; \
    fetch('/customers/new', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'name=Mallory&email=m%40evil.example&phone=1'});";

impl Renderer for Intruder {
    fn render(req: Request) -> Result<Response, Error> {
        let page = |title: &str, body: &str| {
            Response::html(format!(
                "<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
            ))
        };
        Ok(match req.path.as_str() {
            "/inline" => page(
                "inline",
                &format!(
                    "<script>{ATTACK}</script><img src=\"/nothing\" onerror=\"{ATTACK}\"><a id=\"go\" href=\"javascript:{ATTACK}\">go</a>"
                ),
            ),
            "/src" => page(
                "src",
                "<script src=\"/intruder/evil.js\"></script><script src=\"/intruder/evil.txt\"></script>",
            ),
            // A script-typed response, and the same code as text.
            "/evil.js" => Response::bytes("text/javascript", ATTACK.as_bytes().to_vec()),
            "/evil.txt" => Response::text(ATTACK),
            "/frame" => page(
                "frame",
                "<iframe id=\"f\" src=\"/settings\"></iframe><object id=\"o\" data=\"/settings\"></object>",
            ),
            // With a script the manifest grants (a file of /static/): it
            // runs, so what stops it is the host refusing its requests.
            "/fetch" => page(
                "fetch",
                "<p id=\"out\"></p><script src=\"/static/intruder.js\"></script>",
            ),
            // The granted script opens another guest's page in a window of
            // its own on a click and reaches into it (same origin).
            "/popup" => page(
                "popup",
                "<button id=\"open\">Open</button><p id=\"out\"></p><script src=\"/static/popup.js\"></script>",
            ),
            "/form" => page(
                "form",
                "<form id=\"f\" method=\"post\" action=\"/customers/new\">\
                 <input name=\"name\" value=\"Mallory\"><input name=\"email\" value=\"m@evil.example\">\
                 <input name=\"phone\" value=\"1\"><button id=\"send\" type=\"submit\">Win a prize</button></form>\
                 <script>document.getElementById('f').submit()</script>",
            ),
            "/quiet-form" => page(
                "quiet-form",
                "<form id=\"f\" method=\"post\" action=\"/settings\" rel=\"noreferrer\">\
                 <input name=\"company_name\" value=\"Pwned Ltd\"><input name=\"tax_rate\" value=\"0\">\
                 <button id=\"send\" type=\"submit\">Continue</button></form>",
            ),
            "/refresh" => page(
                "refresh",
                "<meta http-equiv=\"refresh\" content=\"0; url=/login/logout\">",
            ),
            _ => return Err(Error::not_found("no such page")),
        })
    }
}

rawalite_guest::export!(Intruder);
