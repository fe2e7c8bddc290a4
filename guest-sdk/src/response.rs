//! Building a response: HTML, JSON, text, redirects.

use crate::Response;
use serde::Serialize;

impl Response {
    /// A response with this status, no headers and no body.
    pub fn status(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `200 OK` with an HTML page.
    pub fn html(body: impl Into<String>) -> Self {
        Self::status(200)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_body(body.into())
    }

    /// `200 OK` with a page built with maud's `html!`.
    pub fn page(markup: maud::Markup) -> Self {
        Self::html(markup.into_string())
    }

    /// `200 OK` with plain text.
    pub fn text(body: impl Into<String>) -> Self {
        Self::status(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// `200 OK` with `value` as JSON.
    pub fn json(value: &impl Serialize) -> Self {
        // Serializing plain data into a Vec cannot fail; a map with
        // non-string keys would, and that is a bug worth a loud panic.
        let body = serde_json::to_vec(value).expect("value serializes to JSON");
        Self::status(200)
            .with_header("content-type", "application/json")
            .with_body(body)
    }

    /// `200 OK` with raw bytes of the given content type.
    pub fn bytes(content_type: &str, body: Vec<u8>) -> Self {
        Self::status(200)
            .with_header("content-type", content_type)
            .with_body(body)
    }

    /// `303 See Other` to `location`: where a browser goes after a form post.
    pub fn redirect(location: &str) -> Self {
        Self::status(303).with_header("location", location)
    }

    /// This response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// This response with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// This response with another body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_sets_content_type_and_body() {
        let res = Response::html("<p>hi</p>");
        assert_eq!(res.status, 200);
        assert_eq!(
            res.headers,
            [(
                "content-type".to_string(),
                "text/html; charset=utf-8".to_string()
            )]
        );
        assert_eq!(res.body, b"<p>hi</p>");
    }

    #[test]
    fn redirect_is_see_other_with_location() {
        let res = Response::redirect("/customers");
        assert_eq!(res.status, 303);
        assert_eq!(res.headers[0].1, "/customers");
        assert!(res.body.is_empty());
    }

    #[test]
    fn json_serializes_value() {
        let res = Response::json(&serde_json::json!({"a": [1, 2]}));
        assert_eq!(res.body, br#"{"a":[1,2]}"#);
    }
}
