//! Conversions into and out of `db::Value`, so parameters read naturally:
//! `db::query("select name from customers where id = ?", &[id.into()])`.

use crate::db::{Rows, Value};

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(v) => Some(*v),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The number as a float, if this is a real or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Real(v) => Some(*v),
            Value::Integer(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl Rows {
    /// The rows as records whose values can be read by column name.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.rows.iter().map(|values| Record {
            columns: &self.columns,
            values,
        })
    }

    /// The first row, if there is one.
    pub fn first(&self) -> Option<Record<'_>> {
        self.records().next()
    }
}

/// One row of a result, read by column name. A missing column reads as
/// `NULL`, so a typo shows up as an empty value rather than a panic.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Record<'a> {
    /// The value of `column`.
    pub fn get(&self, column: &str) -> &'a Value {
        const NULL: &Value = &Value::Null;
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
            .unwrap_or(NULL)
    }

    /// The integer in `column`, or 0.
    pub fn int(&self, column: &str) -> i64 {
        self.get(column).as_i64().unwrap_or(0)
    }

    /// The text in `column`, or "".
    pub fn text(&self, column: &str) -> &'a str {
        self.get(column).as_str().unwrap_or("")
    }

    /// The text in `column`, or `None` when it is NULL.
    pub fn opt_text(&self, column: &str) -> Option<&'a str> {
        self.get(column).as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_by_column_name() {
        let rows = Rows {
            columns: vec!["id".into(), "name".into()],
            rows: vec![vec![Value::Integer(7), Value::Text("Ada".into())]],
        };
        let r = rows.first().unwrap();
        assert_eq!((r.int("id"), r.text("name")), (7, "Ada"));
        assert!(matches!(r.get("nope"), Value::Null));
        assert_eq!(r.opt_text("id"), None);
    }

    #[test]
    fn options_become_null() {
        assert!(matches!(Value::from(None::<i64>), Value::Null));
        assert_eq!(Value::from(Some(7_i64)).as_i64(), Some(7));
        assert_eq!(Value::from("x").as_str(), Some("x"));
    }
}
