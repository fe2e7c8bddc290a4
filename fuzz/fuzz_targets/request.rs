//! What a client sends (method, target, `Host`, `Origin`, `Referer`,
//! `Sec-Fetch-*`, cookies, `X-Forwarded-*`, a query) through every decoder
//! `serve` runs on it: no panic, and a `Referer` the host takes for one
//! of its pages is one by a URL parser's reading too.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rawalite_host::server::fuzzing::request;

/// Header names the host reads; any other name comes from the input.
const NAMES: &[&str] = &[
    "host",
    "origin",
    "referer",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "content-type",
    "accept",
    "if-none-match",
    "if-modified-since",
];

/// Headers as names and values, in order.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// A method, a target and headers from the input.
fn parts(u: &mut Unstructured) -> Result<(Vec<u8>, String, Headers)> {
    let method: Vec<u8> = u.arbitrary()?;
    let target: String = u.arbitrary()?;
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=12)? {
        let name = if u.ratio(1, 8)? {
            u.arbitrary()?
        } else {
            u.choose(NAMES)?.as_bytes().to_vec()
        };
        headers.push((name, u.arbitrary()?));
    }
    Ok((method, target, headers))
}

fuzz_target!(|data: &[u8]| {
    let Ok((method, target, headers)) = parts(&mut Unstructured::new(data)) else {
        return;
    };
    let Some(page) = request(&method, &target, &headers) else {
        return;
    };
    // The page the host took the Referer for is on this site's origin,
    // read as a browser reads a URL.
    let (Ok(referer), Ok(origin)) = (
        url::Url::parse(&page.referer),
        url::Url::parse(&page.origin),
    ) else {
        return;
    };
    assert_eq!(
        referer.origin(),
        origin.origin(),
        "{:?} was taken for a page of {:?}",
        page.referer,
        page.origin
    );
    assert!(page.path.starts_with('/'), "{:?}", page.path);
});
