//! The demo app in a real headless Chromium, driven through ChromeDriver:
//! sign in, create a customer, create an invoice with two lines and check
//! its total, export it and download the CSV, sign out. A screenshot of each
//! page is saved under `target/e2e/`.
//!
//! `cargo xtask test` installs Debian's `chromium` and `chromium-driver`
//! when they are missing; without them this test fails and says so.

mod common;

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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
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
    assert_eq!(text(&c, "form.signout .who").await, "Administrator");
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

    // Signing out ends the session: the dashboard sends us back.
    click(&c, "form.signout button").await;
    wait_for_path(&c, "/login").await;
    shot(&c, "09-signed-out").await;
    c.goto(&served.url("/")).await.unwrap();
    wait_for_path(&c, "/login?next=%2F").await;

    c.close().await.unwrap();
}
