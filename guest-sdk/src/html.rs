//! HTML escaping for text put into pages by hand.

use std::fmt;

/// Escapes `text` for use in HTML element content and quoted attribute values.
///
/// ```
/// assert_eq!(rawalite_guest::escape("<a href=\"x\">").to_string(),
///            "&lt;a href=&quot;x&quot;&gt;");
/// ```
pub fn escape(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Text that is escaped as it is formatted, without an intermediate copy.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape(r#"<script>alert('x' & "y")</script>"#).to_string(),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(escape("Grüße, 42").to_string(), "Grüße, 42");
    }
}
