//! The demo app in a real headless Chromium, driven through ChromeDriver:
//! sign in, create a customer, create an invoice with two lines and check
//! its total, export it and download the CSV, sign out. A screenshot of each
//! page is saved under `target/e2e/`. Then a hostile guest's pages, opened
//! while an admin is signed in, try to act as the admin on other guests.
//!
//! `cargo xtask test` installs Debian's `chromium` and `chromium-driver`
//! when they are missing; without them this test fails and says so.

use crate::common;

use common::{Served, demo_manifest, workspace};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: run the tests with `cargo xtask test`, which installs Debian's chromium and chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                // A PDF is saved, to read it back with pdftotext.
                "plugins.always_open_pdf_externally": true,
            },
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Saves a screenshot of the current page as `target/e2e/<name>.png`.
async fn shot(c: &Client, name: &str) {
    let dir = workspace().join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn fill(c: &Client, css: &str, text: &str) {
    let field = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn path(c: &Client) -> String {
    let url = c.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Waits until the browser is at `want`, or at `want` with a query.
async fn wait_for_path(c: &Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = path(c).await;
        if now == want || now.starts_with(&format!("{want}?")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {want}, the browser is at {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the first element matching `css`, waiting for one to appear:
/// after a form is sent, the old page may still be showing.
async fn text(c: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = match c.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        };
        match found {
            Some(text) => return text,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            None => panic!("no element matches {css}"),
        }
    }
}

fn wait_for_file(path: &Path) -> String {
    String::from_utf8(wait_for_bytes(path)).expect("a text file")
}

/// The file once the browser has finished it. Chrome first reserves the
/// name with an empty file, writes the download to `.crdownload` and then
/// renames that over it, so the file is done when it has bytes (every
/// download these tests make has some); reading it at the first sight of
/// the name once read the empty reservation.
fn wait_for_bytes(path: &Path) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(bytes) = std::fs::read(path)
            && !bytes.is_empty()
        {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not downloaded",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_user_signs_in_bills_a_customer_exports_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_manifest(dir.path(), false);
    let served = Served::start(&file, &dir.path().join("data"), &common::shared_cache());
    let driver = Driver::start();
    let downloads: PathBuf = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let c = browser(&driver, &dir.path().join("profile"), &downloads).await;

    // Signing in: an unauthenticated visit lands on the form.
    c.goto(&served.url("/")).await.unwrap();
    wait_for_path(&c, "/login").await;
    shot(&c, "01-sign-in").await;
    fill(&c, "input[name=username]", "admin").await;
    fill(&c, "input[name=password]", &served.admin_password).await;
    click(&c, "button[type=submit]").await;
    wait_for_path(&c, "/").await;
    assert_eq!(text(&c, "h1").await, "Dashboard");
    assert_eq!(text(&c, ".account .who").await, "Administrator");
    shot(&c, "02-dashboard").await;

    // A customer, with a validation error first.
    c.goto(&served.url("/customers/new")).await.unwrap();
    fill(&c, "input[name=name]", "Ada Lovelace").await;
    fill(&c, "input[name=email]", "ada@example.org").await;
    fill(&c, "input[name=phone]", "call me maybe").await;
    click(&c, "form.stacked button[type=submit]").await;
    wait_for_path(&c, "/customers/new").await;
    assert!(text(&c, "small.error").await.contains("digits"));
    shot(&c, "03-customer-invalid").await;
    fill(&c, "input[name=phone]", "+44 20 7946 0000").await;
    click(&c, "form.stacked button[type=submit]").await;
    wait_for_path(&c, "/customers?done=saved").await;
    assert!(text(&c, "table").await.contains("Ada Lovelace"));
    shot(&c, "04-customers").await;

    // An invoice with two lines: 3 × 120.00 + 1 × 45.50 = 405.50,
    // tax 19 % = 77.05 (half up), total 482.55.
    c.goto(&served.url("/invoices/new")).await.unwrap();
    c.find(Locator::Css("select[name=customer]"))
        .await
        .unwrap()
        .select_by_label("Ada Lovelace")
        .await
        .unwrap();
    fill(&c, "input[name=description0]", "Consulting").await;
    fill(&c, "input[name=quantity0]", "3").await;
    fill(&c, "input[name=price0]", "120.00").await;
    fill(&c, "input[name=description1]", "Travel").await;
    fill(&c, "input[name=quantity1]", "1").await;
    fill(&c, "input[name=price1]", "45.50").await;
    shot(&c, "05-invoice-form").await;
    click(&c, "form.stacked button[type=submit]").await;
    wait_for_path(&c, "/invoices/1").await;
    assert_eq!(text(&c, "#total").await, "482.55");
    assert!(text(&c, "h1").await.starts_with("Invoice 1"));
    shot(&c, "06-invoice").await;

    // Export it, then download the CSV.
    click(&c, "form[action='/exports/invoice'] button").await;
    wait_for_path(&c, "/exports?done=invoice-1.csv").await;
    shot(&c, "07-exports").await;
    click(&c, "a[href='/exports/files/invoice-1.csv']").await;
    let csv = wait_for_file(&downloads.join("invoice-1.csv"));
    assert!(
        csv.starts_with(
            "invoice,issued_on,customer,position,description,quantity,unit_price,amount\r\n"
        ),
        "{csv}"
    );
    assert!(
        csv.contains(",Ada Lovelace,1,Consulting,3,120.00,360.00\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains(",Ada Lovelace,2,Travel,1,45.50,45.50\r\n"),
        "{csv}"
    );
    assert!(csv.ends_with(",total,,,482.55\r\n"), "{csv}");

    // The invoice as a PDF, from the screen written in TypeScript: it
    // opens, and names the customer, the lines and the total.
    c.goto(&served.url("/invoices/1")).await.unwrap();
    click(&c, "a[href='/invoices/pdf/1']").await;
    let pdf = downloads.join("invoice-1.pdf");
    assert!(wait_for_bytes(&pdf).starts_with(b"%PDF-1.4"));
    let read = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils, installed by `cargo xtask test`)");
    assert!(read.status.success(), "{}", common::stderr(&read));
    let printed = common::stdout(&read);
    for part in [
        "Invoice 1",
        "Ada Lovelace",
        "Consulting",
        "360.00",
        "Tax 19 %",
        "482.55",
    ] {
        assert!(printed.contains(part), "`{part}` not in the PDF: {printed}");
    }
    let total = printed
        .lines()
        .find(|l| l.contains("Total"))
        .unwrap_or_default();
    assert!(total.trim_end().ends_with("482.55"), "{printed}");

    // The Reports screen, written in Python, has the invoice in its month
    // and under its customer; the nav marks it.
    click(&c, "header.top nav a[href='/reports']").await;
    wait_for_path(&c, "/reports").await;
    assert_eq!(text(&c, "h1").await, "Reports");
    assert_eq!(text(&c, "header.top nav a.active").await, "Reports");
    let tables = text(&c, "main").await;
    assert!(tables.contains("482.55"), "{tables}");
    assert!(tables.contains("Ada Lovelace"), "{tables}");
    shot(&c, "08-reports").await;

    // Signing out, on the login screen's own page, ends the session: the
    // dashboard sends us back.
    click(&c, "header.top a.signout").await;
    wait_for_path(&c, "/login/logout").await;
    click(&c, "form.signout button").await;
    wait_for_path(&c, "/login").await;
    shot(&c, "09-signed-out").await;
    c.goto(&served.url("/")).await.unwrap();
    wait_for_path(&c, "/login?next=%2F").await;

    c.close().await.unwrap();
}

/// Runs `script` in the page (WebDriver's own script, which the page's
/// policy does not govern) and returns its string result.
async fn eval(c: &Client, script: &str) -> String {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// What the admin could change: the customers and the settings.
fn state(manifest: &Path, data: &Path) -> (Vec<String>, Vec<String>) {
    let sql = |q: &str| common::sql_behind(manifest, data, q);
    (
        sql("SELECT count(*) FROM customers"),
        sql("SELECT key || '=' || value FROM settings ORDER BY key"),
    )
}

/// The script the intruder's manifest entry grants: it runs, and tries to
/// read and change other guests' data with the admin's session.
const INTRUDER_JS: &str = "\
const form = (body) => ({method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body});
Promise.all([
  fetch('/settings').then(r => r.status),
  fetch('/customers/new', form('name=Mallory&email=m%40evil.example&phone=1')).then(r => r.status),
  fetch('/settings', form('company_name=Pwned&company_address=&tax_rate=0')).then(r => r.status),
  fetch('/customers/new', {...form('name=Eve&email=e%40evil.example&phone=1'), referrerPolicy: 'no-referrer'}).then(r => r.status),
]).then(s => { document.getElementById('out').textContent = s.join(' '); },
        e => { document.getElementById('out').textContent = 'failed: ' + e; });
";

/// The popup page's granted script: on a click, it opens another guest's
/// form in a window of its own, waits for it, and submits it from there
/// (whose Referer is that guest's own page).
const POPUP_JS: &str = "\
const out = document.getElementById('out');
document.getElementById('open').addEventListener('click', () => {
  const w = window.open('/customers/new', 'victim');
  let tries = 0;
  const attempt = () => {
    try {
      const form = w.document.querySelector('form');
      if (!form || !form.querySelector('[name=name]')) {
        if (++tries < 200) { setTimeout(attempt, 50); } else { out.textContent = 'never loaded'; }
        return;
      }
      form.querySelector('[name=name]').value = 'Mallory';
      form.submit();
      out.textContent = 'submitted';
    } catch (e) {
      out.textContent = 'blocked: ' + e.name;
    }
  };
  attempt();
});
";

#[tokio::test(flavor = "current_thread")]
async fn a_hostile_guests_pages_cannot_act_as_the_signed_in_admin() {
    let dir = tempfile::tempdir().unwrap();
    // The demo app, with the intruder at /intruder granted one script of a
    // static directory of this test's own.
    let assets = dir.path().join("static");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::copy(workspace().join("static/app.css"), assets.join("app.css")).unwrap();
    std::fs::write(assets.join("intruder.js"), INTRUDER_JS).unwrap();
    std::fs::write(assets.join("popup.js"), POPUP_JS).unwrap();
    let file = demo_manifest(dir.path(), false);
    let manifest = std::fs::read_to_string(&file).unwrap();
    let manifest = manifest.replace(
        &format!("static = \"{}/static\"", workspace().display()),
        &format!("static = \"{}\"", assets.display()),
    ) + &format!(
        "\n[[guest]]\nname = \"intruder\"\ncomponent = \"{}\"\nroute = \"/intruder\"\n\
             [guest.browser]\nscripts = [\"/static/intruder.js\", \"/static/popup.js\"]\n",
        common::guest("intruder").display()
    );
    std::fs::write(&file, manifest).unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&file, &data, &common::shared_cache());
    let driver = Driver::start();
    let downloads = dir.path().join("downloads");
    let c = browser(&driver, &dir.path().join("profile"), &downloads).await;
    c.goto(&served.url("/login")).await.unwrap();
    fill(&c, "input[name=username]", "admin").await;
    fill(&c, "input[name=password]", &served.admin_password).await;
    click(&c, "button[type=submit]").await;
    wait_for_path(&c, "/").await;
    let before = state(&file, &data);

    // Inline script, an event handler, a javascript: link, a script from
    // the guest's own route and a script-typed response: none runs.
    c.goto(&served.url("/intruder/inline")).await.unwrap();
    assert_eq!(
        eval(&c, "return document.title").await,
        "inline",
        "a script ran"
    );
    click(&c, "#go").await;
    assert_eq!(
        eval(&c, "return document.title").await,
        "inline",
        "a javascript: link ran"
    );
    c.goto(&served.url("/intruder/src")).await.unwrap();
    assert_eq!(
        eval(&c, "return document.title").await,
        "src",
        "a script ran"
    );
    shot(&c, "10-intruder-no-script").await;

    // Another guest in a frame or an object: not shown.
    c.goto(&served.url("/intruder/frame")).await.unwrap();
    let framed = eval(
        &c,
        "try { const d = document.getElementById('f').contentDocument; return d ? d.body.innerText : ''; } catch (e) { return ''; }",
    )
    .await;
    assert!(
        !framed.contains("Company"),
        "the settings page was framed: {framed}"
    );

    // A granted script runs, and every request it makes to another guest
    // with the admin's session is refused.
    c.goto(&served.url("/intruder/fetch")).await.unwrap();
    assert_eq!(text(&c, "#out:not(:empty)").await, "403 403 403 403");

    // Another guest's page in a window the granted script opens: cut off
    // from its opener, so the script cannot fill in and send its form.
    c.goto(&served.url("/intruder/popup")).await.unwrap();
    let intruder = c.window().await.unwrap();
    click(&c, "#open").await;
    let reached = text(&c, "#out:not(:empty)").await;
    assert!(
        reached.starts_with("blocked"),
        "the opener reached the other page: {reached}"
    );
    for window in c.windows().await.unwrap() {
        if window != intruder {
            c.switch_to_window(window).await.unwrap();
            c.close_window().await.unwrap();
        }
    }
    c.switch_to_window(intruder).await.unwrap();

    // A form to another guest: sent by script (blocked), or by a click
    // (refused by the host), with or without a Referer.
    c.goto(&served.url("/intruder/form")).await.unwrap();
    assert_eq!(
        path(&c).await,
        "/intruder/form",
        "the form was sent by script"
    );
    click(&c, "#send").await;
    wait_for_path(&c, "/customers/new").await;
    assert_eq!(text(&c, "h1").await, "403 Forbidden");
    c.goto(&served.url("/intruder/quiet-form")).await.unwrap();
    click(&c, "#send").await;
    wait_for_path(&c, "/settings").await;
    assert_eq!(text(&c, "h1").await, "403 Forbidden");
    shot(&c, "11-intruder-form-refused").await;

    // A refresh to the sign-out page only shows it; the admin stays.
    c.goto(&served.url("/intruder/refresh")).await.unwrap();
    wait_for_path(&c, "/login/logout").await;
    c.goto(&served.url("/")).await.unwrap();
    wait_for_path(&c, "/").await;
    assert_eq!(text(&c, "h1").await, "Dashboard");

    assert_eq!(state(&file, &data), before, "something changed");
    c.close().await.unwrap();
}
