//! Where a redirect leads. A `Location` (or a sign-in form's `next`) must
//! stay on the site that sent it; [`same_site`] reads a value the way a
//! browser's URL parser does (the WHATWG URL standard, against an `http`
//! or `https` page) and keeps it only when it does.
//!
//! A browser, before it resolves a reference, strips leading and trailing
//! control characters and spaces, removes every tab and newline, and reads
//! `\` as `/`. So `\t/\t/evil.example`, ` //evil.example` and `/\evil.example`
//! all lead to `evil.example`. What stays on the site is a reference
//! without a scheme that does not start with two slashes: a path
//! (`/invoices/7`, `customers`), a query or a fragment. Everything with a
//! scheme is refused, even one naming this site: a guest has no need for it.
//!
//! The host uses this for every `Location` a guest sends; the guest SDK
//! uses it for a `next` parameter. One implementation, so the two agree.

use std::borrow::Cow;

/// `value` as a same-site reference to send, or `None` when a browser
/// would leave the site (or the value is not a reference at all). What is
/// returned is what the browser would resolve, written in plain ASCII:
/// backslashes as `/`, tabs and newlines removed, and anything else outside
/// visible ASCII percent-encoded, so every client reads it alike.
pub fn same_site(value: &str) -> Option<Cow<'_, str>> {
    let trimmed = value.trim_matches(|c: char| c <= ' ');
    let clean: Cow<'_, str> = if trimmed.contains(['\t', '\n', '\r']) {
        Cow::Owned(trimmed.replace(['\t', '\n', '\r'], ""))
    } else {
        Cow::Borrowed(trimmed)
    };
    if has_scheme(&clean) {
        return None;
    }
    let mut slashes = clean.chars().take_while(|c| matches!(c, '/' | '\\'));
    if slashes.next().is_some() && slashes.next().is_some() {
        return None;
    }
    if clean.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return Some(clean);
    }
    let mut out = String::with_capacity(clean.len() + 8);
    for b in clean.bytes() {
        match b {
            b'\\' => out.push('/'),
            b if b.is_ascii_graphic() => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    Some(Cow::Owned(out))
}

/// Whether the reference starts with a scheme: `letter (letter | digit |
/// + | - | .)* :`, as the URL parser's scheme state reads it.
fn has_scheme(value: &str) -> bool {
    let mut chars = value.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    for c in chars {
        match c {
            ':' => return true,
            c if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {}
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use url::Url;

    const PAGE: &str = "https://app.example/customers/7?x=1";

    fn kept(value: &str) -> Option<String> {
        same_site(value).map(Cow::into_owned)
    }

    #[test]
    fn paths_queries_and_fragments_stay() {
        for value in [
            "/",
            "/invoices/7",
            "/login?next=%2F",
            "customers",
            "?page=2",
            "#top",
            "",
            "/%2F/evil.example",
            "%2F%2Fevil.example",
            "/a//b",
        ] {
            assert_eq!(kept(value).as_deref(), Some(value), "{value:?}");
        }
    }

    #[test]
    fn what_a_browser_reads_as_another_site_is_refused() {
        for value in [
            "//evil.example",
            "\\\\evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "\t//evil.example",
            " //evil.example",
            "\u{0}//evil.example",
            "/\n/evil.example",
            "https://evil.example/",
            "HTTP://evil.example",
            "http:/\\evil.example",
            "javascript:alert(1)",
            "java\tscript:alert(1)",
            " JavaScript:alert(1)",
            "data:text/html,<script>",
            "https://app.example/same-site-but-absolute",
        ] {
            assert_eq!(kept(value), None, "{value:?}");
        }
    }

    #[test]
    fn what_stays_is_written_as_plain_ascii() {
        assert_eq!(kept("/K\u{f6}ln").as_deref(), Some("/K%C3%B6ln"));
        assert_eq!(kept("/a b").as_deref(), Some("/a%20b"));
        assert_eq!(kept("\\evil.example").as_deref(), Some("/evil.example"));
        assert_eq!(kept("/in\tvoices").as_deref(), Some("/invoices"));
    }

    /// Text made of what confuses URL parsers.
    fn tricky() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "/",
            "\\",
            ":",
            " ",
            "\t",
            "\n",
            "\r",
            "\u{0}",
            "\u{1f}",
            "%",
            "%2F",
            "%5C",
            "a",
            "e.x",
            "@",
            "?",
            "#",
            ".",
            "..",
            "http",
            "https",
            "javascript",
            "//",
            "\u{ff0f}",
            "\u{3000}",
            "\u{e9}",
            "+",
            "-",
            "8080",
        ]);
        prop::collection::vec(pieces, 0..10).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Whatever is kept, a WHATWG URL parser resolves on this site, both
        /// as it was sent and as it is written out; what is refused has a
        /// scheme or leads elsewhere.
        #[test]
        fn kept_values_resolve_on_the_site(value in prop_oneof![tricky(), ".{0,40}"]) {
            let base = Url::parse(PAGE).unwrap();
            match same_site(&value) {
                Some(out) => {
                    prop_assert!(out.bytes().all(|b| b.is_ascii_graphic()), "{:?} -> {:?}", value, out);
                    for sent in [value.as_str(), &out] {
                        let resolved = base.join(sent);
                        prop_assert!(
                            resolved.as_ref().is_ok_and(|u| u.origin() == base.origin()),
                            "{:?} leads to {:?}", sent, resolved
                        );
                    }
                }
                None => {
                    let resolved = base.join(&value);
                    let elsewhere = resolved.as_ref().map_or(true, |u| u.origin() != base.origin());
                    let cleaned: String = value.trim_matches(|c: char| c <= ' ').replace(['\t', '\n', '\r'], "");
                    prop_assert!(elsewhere || has_scheme(&cleaned), "{:?} was refused but stays", value);
                }
            }
        }
    }
}
