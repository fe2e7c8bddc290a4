//! Reading a request: its query, headers and form body.

use crate::Request;

impl Request {
    /// The first value of query parameter `key`, already percent-decoded.
    pub fn query(&self, key: &str) -> Option<&str> {
        first_named(&self.query, key)
    }

    /// Every value of query parameter `key`, in order.
    pub fn query_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        pairs_named(&self.query, key)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a `POST` (the method browsers use for forms).
    pub fn is_post(&self) -> bool {
        self.method.eq_ignore_ascii_case("POST")
    }

    /// The body parsed as `application/x-www-form-urlencoded`.
    pub fn form(&self) -> Form {
        Form::parse(&self.body)
    }

    /// A link to `path` inside this guest (`base` + `path`).
    pub fn link(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses a form body; malformed percent-escapes are kept as text.
    pub fn parse(body: &[u8]) -> Self {
        let pairs = form_urlencoded::parse(body).into_owned().collect();
        Form { pairs }
    }

    /// The first value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        first_named(&self.pairs, key)
    }

    /// The first value of field `key`, trimmed, or "" when it is missing.
    pub fn text(&self, key: &str) -> &str {
        self.get(key).map(str::trim).unwrap_or("")
    }

    /// Every value of field `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        pairs_named(&self.pairs, key)
    }
}

fn first_named<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn pairs_named<'a>(
    pairs: &'a [(String, String)],
    key: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    pairs
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// A form reads back the fields a browser encoded, in order.
        #[test]
        fn forms_read_back_what_was_encoded(fields in prop::collection::vec((".{0,12}", ".{0,20}"), 0..6)) {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&fields)
                .finish();
            let form = Form::parse(body.as_bytes());
            for (key, _) in &fields {
                let want: Vec<&str> = fields.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
                prop_assert_eq!(form.get_all(key).collect::<Vec<_>>(), want);
            }
        }

        /// Any bytes at all parse without a panic.
        #[test]
        fn any_body_parses(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let form = Form::parse(&body);
            let _ = form.get("a");
        }
    }

    fn request(query: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: "POST".into(),
            base: "/x".into(),
            path: "/".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn query_keeps_repeated_keys_in_order() {
        let req = request(&[("p", "1"), ("q", "x"), ("p", "2")], "");
        assert_eq!(req.query("p"), Some("1"));
        assert_eq!(req.query_all("p").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(req.query("missing"), None);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let req = request(&[], "");
        assert_eq!(req.header("Content-Type"), Some("text/plain"));
    }

    #[test]
    fn form_decodes_plus_and_percent() {
        let req = request(&[], "name=Ada+Lovelace&city=K%C3%B6ln&tag=a&tag=b");
        let form = req.form();
        assert_eq!(form.get("name"), Some("Ada Lovelace"));
        assert_eq!(form.get("city"), Some("Köln"));
        assert_eq!(form.get_all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(form.text("missing"), "");
    }

    #[test]
    fn link_prefixes_base() {
        assert_eq!(request(&[], "").link("/new"), "/x/new");
    }
}
