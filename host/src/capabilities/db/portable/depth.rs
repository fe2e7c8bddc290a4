//! How deep a statement's tree can be, bounded from its tokens before
//! anything recursive touches it: the parser, the checks, printing,
//! comparing and dropping the tree all recurse once per level. sqlparser
//! bounds its own recursion (parentheses, subqueries, `CASE`, `NOT`), but
//! builds a chain of operators (`1-1-1-…`, `a OR b OR …`, `… UNION …`) in
//! a loop, one level per operator: 64 KiB of SQL can make a tree 30,000
//! levels deep.
//!
//! Two bounds, both before parsing:
//! - [`NESTING`]: parentheses, `CASE` and prefix operators (`NOT NOT …`)
//!   open at once, so that sqlparser's
//!   own limit is never what refuses a statement (past it, sqlparser may
//!   backtrack and report a confusing error instead);
//! - [`DEPTH`]: every token that starts a step of one of sqlparser's loops
//!   (an operator symbol, an operator keyword such as `AND` or `LIKE`, a
//!   set operation, `PIVOT`) counts along the path from the statement's top
//!   down through its parentheses; a comma starts a sibling, so the count of
//!   the part before it ends there, except for set operations, whose chain
//!   spans the commas of their select lists. Identifiers, literals,
//!   parameters, commas, periods and other keywords add no level.
//!
//! The checking threads' stack holds even the deepest tree 64 KiB of SQL
//! can make (`tests::the_checking_stack_holds_any_tree_64_kib_can_make`):
//! the bound keeps the check quick and its refusal clear, the stack is the
//! second line.

use super::invalid;
use crate::capabilities::Error;
use sqlparser::dialect::SQLiteDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// How many levels a path through a statement may have: far more than
/// any statement a person writes (a `WHERE` of 300 conditions counts
/// about 900), far less than the stack it runs on allows
/// (`portable::tests::the_deepest_statement_allowed_checks_on_a_small_stack`).
pub const DEPTH: usize = 2000;

/// How many parentheses, `CASE`s and prefix operators may be open at once.
pub const NESTING: usize = 40;

/// The keywords that start a step of sqlparser's loops: its infix
/// operators (`get_next_precedence_default`, SQLite's own), set operations
/// and the table operators that wrap a table again and again.
const LOOPS: &[Keyword] = &[
    Keyword::AND,
    Keyword::AT,
    Keyword::BETWEEN,
    Keyword::COLLATE,
    Keyword::DIV,
    Keyword::GLOB,
    Keyword::GLOBAL,
    Keyword::ILIKE,
    Keyword::IN,
    Keyword::IS,
    Keyword::LIKE,
    Keyword::MATCH,
    Keyword::MATCH_RECOGNIZE,
    Keyword::MEMBER,
    Keyword::NOT,
    Keyword::NOTNULL,
    Keyword::OPERATOR,
    Keyword::OR,
    Keyword::OVERLAPS,
    Keyword::PIVOT,
    Keyword::REGEXP,
    Keyword::RLIKE,
    Keyword::SIMILAR,
    Keyword::UNPIVOT,
    Keyword::XOR,
];

/// The statement's tokens (SQLite's reading, which the check parses),
/// refused when its tree could be deeper than [`DEPTH`].
pub(super) fn tokens(sql: &str) -> Result<Vec<TokenWithSpan>, Error> {
    let tokens = Tokenizer::new(&SQLiteDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| invalid(format!("the statement cannot be read: {e}")))?;
    bound(tokens.iter().map(|t| &t.token))?;
    Ok(tokens)
}

/// One parenthesis' worth of the path: the levels above it, the set
/// operations so far in it, and the operators of its current part.
#[derive(Default)]
struct Group {
    above: usize,
    set_operations: usize,
    part: usize,
}

impl Group {
    fn depth(&self) -> usize {
        self.above + self.set_operations + self.part
    }
}

fn bound<'t>(tokens: impl Iterator<Item = &'t Token>) -> Result<(), Error> {
    let mut groups = vec![Group::default()];
    let mut cases = 0usize;
    // Prefix operators in a row (`NOT NOT …`, `- - …`) nest as well.
    let mut prefixes = 0usize;
    for token in tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark => prefixes += 1,
            Token::Word(word) if word.keyword == Keyword::NOT && word.quote_style.is_none() => {
                prefixes += 1
            }
            _ => prefixes = 0,
        }
        let group = groups.last_mut().expect("the statement's own group stays");
        match token {
            Token::LParen => {
                let above = group.depth() + 1;
                groups.push(Group {
                    above,
                    ..Group::default()
                });
            }
            Token::RParen => {
                if groups.len() > 1 {
                    groups.pop();
                }
                continue;
            }
            Token::Comma => group.part = 0,
            Token::SemiColon => *group = Group::default(),
            Token::Word(word) if word.quote_style.is_none() => match word.keyword {
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                    group.set_operations += 1
                }
                Keyword::CASE => cases += 1,
                Keyword::END => cases = cases.saturating_sub(1),
                keyword if LOOPS.contains(&keyword) => group.part += 1,
                _ => {}
            },
            Token::Word(_)
            | Token::Whitespace(_)
            | Token::Period
            | Token::EOF
            | Token::Number(..)
            | Token::Placeholder(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            // Every other token is an operator or could be one.
            _ => group.part += 1,
        }
        if groups.len() - 1 + cases + prefixes > NESTING {
            return Err(invalid(format!(
                "the statement nests more than {NESTING} levels deep (parentheses, subqueries, CASE, NOT): flatten it"
            )));
        }
        let group = groups.last().expect("the statement's own group stays");
        if group.depth() > DEPTH {
            return Err(too_deep());
        }
    }
    Ok(())
}

fn too_deep() -> Error {
    invalid(format!(
        "the statement nests too deeply: more than {DEPTH} operators, keywords and parentheses \
         along one path (a chain such as `a - b - c …` or `… UNION …` counts each link); \
         split it into several statements, or pass a list of values as parameters of `IN (…)`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn depth_ok(sql: &str) -> bool {
        tokens(sql).is_ok()
    }

    #[test]
    fn chains_are_counted_and_lists_are_not() {
        let chain = |n: usize, op: &str| format!("SELECT 1{} AS x", format!(" {op} 1").repeat(n));
        for op in [
            "-", "+", "*", "/", "%", "||", "=", "<", "AND", "OR", "IS", "LIKE", "GLOB",
        ] {
            assert!(depth_ok(&chain(DEPTH - 10, op)), "{op}");
            assert!(!depth_ok(&chain(DEPTH + 1, op)), "{op}");
        }
        let union = |n: usize| format!("SELECT 1, 2{}", " UNION SELECT 1, 2".repeat(n));
        assert!(depth_ok(&union(DEPTH / 2 - 5)));
        assert!(!depth_ok(&union(DEPTH + 1)));
        // 20,000 values in a list are siblings, not levels.
        let list = vec!["-1"; 20_000].join(", ");
        assert!(depth_ok(&format!("SELECT x FROM t WHERE x IN ({list})")));
        let parens = |n: usize| format!("SELECT {}1{} AS x", "(".repeat(n), ")".repeat(n));
        assert!(depth_ok(&parens(NESTING)));
        assert!(!depth_ok(&parens(NESTING + 1)));
        let cases = |n: usize| {
            format!(
                "SELECT {}1{} AS x",
                "CASE WHEN 1 THEN ".repeat(n),
                " END".repeat(n)
            )
        };
        assert!(depth_ok(&cases(NESTING)));
        assert!(!depth_ok(&cases(NESTING + 1)));
        // Column names that are keywords are not operators.
        let wide = vec!["name IS NOT NULL"; 600].join(" AND ");
        assert!(depth_ok(&format!("SELECT name FROM t WHERE {wide}")));
    }

    #[test]
    fn the_refusal_names_the_limit() {
        let e = tokens(&format!("SELECT 1{} AS x", " - 1".repeat(30_000))).unwrap_err();
        assert!(e.message.contains(&DEPTH.to_string()), "{}", e.message);
    }

    proptest! {
        /// Whatever the tokens, the bound ends without panic.
        #[test]
        fn any_text_is_bounded_without_harm(sql in "[ -~]{0,400}") {
            let _ = tokens(&sql);
        }
    }
}
