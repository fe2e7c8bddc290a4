//! A small scanner for guest SQL, run before SQLite sees it: it splits the
//! text into tokens the way SQLite's tokenizer does for what matters here
//! (strings, quoted identifiers and comments hide `;` and names), so the
//! host can tell one statement from two and find the names a statement
//! mentions. SQLite still parses every statement; this only decides what
//! the host answers.

use std::borrow::Cow;

/// One significant token (white space and comments are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token<'a> {
    /// A bare word: a keyword or an unquoted identifier.
    Word(&'a str),
    /// A quoted identifier (`"x"`, `[x]`, `` `x` ``), unquoted.
    Quoted(Cow<'a, str>),
    /// A string literal.
    Text,
    Semicolon,
    /// Anything else: numbers, operators, punctuation.
    Other,
}

/// The tokens of `sql`. An unterminated string, identifier or comment runs
/// to the end, as SQLite reads it (and then refuses it).
pub(super) fn tokens(sql: &str) -> impl Iterator<Item = Token<'_>> {
    let b = sql.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        loop {
            let start = i;
            let c = *b.get(i)?;
            i += 1;
            return Some(match c {
                c if c.is_ascii_whitespace() => continue,
                b'-' if b.get(i) == Some(&b'-') => {
                    i = find(b, i, b"\n").map_or(b.len(), |at| at + 1);
                    continue;
                }
                b'/' if b.get(i) == Some(&b'*') => {
                    i = find(b, i + 1, b"*/").map_or(b.len(), |at| at + 2);
                    continue;
                }
                b';' => Token::Semicolon,
                b'\'' => {
                    i = closing(b, i, b'\'').map_or(b.len(), |at| at + 1);
                    Token::Text
                }
                b'"' | b'`' => {
                    let end = closing(b, i, c);
                    i = end.map_or(b.len(), |at| at + 1);
                    let inner = &sql[start + 1..end.unwrap_or(b.len())];
                    let quote = (c as char).to_string();
                    let doubled = quote.repeat(2);
                    Token::Quoted(if inner.contains(&doubled) {
                        Cow::Owned(inner.replace(&doubled, &quote))
                    } else {
                        Cow::Borrowed(inner)
                    })
                }
                b'[' => {
                    let end = find(b, i, b"]");
                    i = end.map_or(b.len(), |at| at + 1);
                    Token::Quoted(Cow::Borrowed(&sql[start + 1..end.unwrap_or(b.len())]))
                }
                c if is_word_start(c) => {
                    while i < b.len() && is_word(b[i]) {
                        i += 1;
                    }
                    Token::Word(&sql[start..i])
                }
                _ => Token::Other,
            });
        }
    })
}

/// SQLite's identifier characters: letters, `_`, and every non-ASCII byte;
/// digits and `$` after the first.
fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word(c: u8) -> bool {
    is_word_start(c) || c.is_ascii_digit() || c == b'$'
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

/// The index of the quote that closes a string or identifier opened just
/// before `from` (a doubled quote is part of it), if there is one.
fn closing(b: &[u8], mut from: usize, quote: u8) -> Option<usize> {
    loop {
        let at = find(b, from, &[quote])?;
        if b.get(at + 1) == Some(&quote) {
            from = at + 2;
        } else {
            return Some(at);
        }
    }
}

/// Whether `sql` has a second statement after the first `;` (further `;`,
/// comments and white space do not count).
pub(super) fn has_trailing_statement(sql: &str) -> bool {
    tokens(sql)
        .skip_while(|t| *t != Token::Semicolon)
        .any(|t| t != Token::Semicolon)
}

/// The names a statement mentions: its bare words and quoted identifiers.
pub(super) fn names(sql: &str) -> impl Iterator<Item = Cow<'_, str>> {
    tokens(sql).filter_map(|t| match t {
        Token::Word(w) => Some(Cow::Borrowed(w)),
        Token::Quoted(q) => Some(q),
        _ => None,
    })
}

/// Whether the statement's first word is `keyword` (any case).
pub(super) fn first_keyword_is(sql: &str, keyword: &str) -> bool {
    match tokens(sql).next() {
        Some(Token::Word(w)) => w.eq_ignore_ascii_case(keyword),
        _ => false,
    }
}

/// Whether a statement writes, by its first keyword: for the denial of a
/// table that does not exist, which the authorizer never sees.
pub(super) fn writes(sql: &str) -> bool {
    ["insert", "update", "delete", "replace"]
        .iter()
        .any(|k| first_keyword_is(sql, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_statement_with_trailing_noise_is_one() {
        assert!(!has_trailing_statement("select 1"));
        assert!(!has_trailing_statement("select 1;"));
        assert!(!has_trailing_statement("select 1;;  ;"));
        assert!(!has_trailing_statement("select 1;  -- done\n"));
        assert!(!has_trailing_statement("select 1; /* done */ "));
        assert!(!has_trailing_statement(
            "select ';' || \"a;b\" || [c;d] || `e;f`"
        ));
        assert!(!has_trailing_statement("select 'it''s;' -- ; x\n"));
    }

    #[test]
    fn a_second_statement_is_found() {
        assert!(has_trailing_statement("select 1; delete from customers"));
        assert!(has_trailing_statement("select 1;select 2"));
        assert!(has_trailing_statement("select 1; -- x\n delete from t"));
        assert!(has_trailing_statement("select 1; 'x'"));
        assert!(has_trailing_statement("select 1; /* */ x"));
    }

    #[test]
    fn names_are_unquoted_and_strings_are_not_names() {
        let found: Vec<String> = names("SELECT \"a\"\"b\", [c d], `e`, 'users' FROM t -- users\n")
            .map(|n| n.into_owned())
            .collect();
        assert_eq!(found, ["SELECT", "a\"b", "c d", "e", "FROM", "t"]);
    }

    #[test]
    fn writes_is_judged_by_the_first_keyword() {
        assert!(writes("  INSERT INTO x VALUES (1)"));
        assert!(writes("/* hi */ delete from x"));
        assert!(!writes("select * from x"));
        assert!(!writes("with a as (select 1) select * from a"));
    }

    /// A piece of one statement that SQLite reads as a single expression:
    /// numbers, strings and quoted names with `;`, quotes and comment
    /// markers inside.
    fn expression() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u32>().prop_map(|n| n.to_string()),
            "[a-z;'\" -]{0,8}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
            "[a-z;' -]{1,8}".prop_map(|s| format!("1 AS \"{}\"", s.replace('"', "\"\""))),
            "[a-z;' -]{1,8}".prop_map(|s| format!("1 AS [{}]", s.replace(']', ""))),
        ]
    }

    /// What may sit between statements without being one.
    fn filler() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just(" ".to_owned()),
                Just("\n".to_owned()),
                Just(";".to_owned()),
                "[a-z; ']{0,6}".prop_map(|s| format!("/* {s} */")),
                "[a-z; '*/]{0,6}".prop_map(|s| format!("-- {s}\n")),
            ],
            0..4,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The scanner finds a second statement exactly when SQLite does.
        #[test]
        fn the_scanner_agrees_with_sqlite(
            first in prop::collection::vec(expression(), 1..4),
            gap in filler(),
            second in proptest::option::of(prop::collection::vec(expression(), 1..3)),
        ) {
            let mut sql = format!("SELECT {};{gap}", first.join(", "));
            if let Some(second) = &second {
                sql += &format!("SELECT {}", second.join(", "));
            }
            crate::database::sqlite::init().unwrap();
            let conn = rusqlite::Connection::open_in_memory().unwrap();
            let sqlite_sees_two = matches!(conn.prepare(&sql), Err(rusqlite::Error::MultipleStatement));
            prop_assert_eq!(has_trailing_statement(&sql), sqlite_sees_two, "{}", sql);
            prop_assert_eq!(sqlite_sees_two, second.is_some(), "{}", sql);
        }

        /// Any text scans without a panic, and a `;` inside a string or a
        /// quoted name never counts.
        #[test]
        fn any_text_scans(text in ".{0,200}") {
            let _ = tokens(&text).count();
            let quoted = format!("SELECT '{}'", text.replace('\'', "''"));
            prop_assert!(!has_trailing_statement(&quoted));
        }
    }
}
