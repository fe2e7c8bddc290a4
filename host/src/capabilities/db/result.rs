//! The two shapes a query's result is built in, as a backend hands it over:
//! `rows` (a value at a time, what `db.query` returns) and one packed
//! buffer (what `db.query-packed` returns, in the layout `wit/bridge.wit`
//! gives). Each says how many bytes of the host's memory a value took, so
//! the call's charge counts the result as it grows.

use crate::capabilities::rawalite::bridge::db::{Rows, Value};

/// A value as a backend hands it over, borrowed from its row: SQLite's
/// five kinds, which PostgreSQL's values are mapped to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// What a result is built into.
pub trait Shape: Default {
    type Output;
    /// Starts the result with its column names; the bytes they took.
    fn columns(&mut self, names: &[&str]) -> usize;
    /// Starts a row.
    fn row(&mut self, width: usize);
    /// Adds a value to the current row; the bytes it took.
    fn value(&mut self, value: ValueRef<'_>) -> usize;
    /// The rows so far.
    fn rows(&self) -> usize;
    fn finish(self) -> Self::Output;
}

/// `rows`: one `Value` per value.
#[derive(Default)]
pub struct Values {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

/// What the host keeps for each value besides its bytes.
const VALUE_OVERHEAD: usize = std::mem::size_of::<Value>();

impl Shape for Values {
    type Output = Rows;

    fn columns(&mut self, names: &[&str]) -> usize {
        self.columns = names.iter().map(|n| n.to_string()).collect();
        names.iter().map(|n| n.len() + VALUE_OVERHEAD).sum()
    }

    fn row(&mut self, width: usize) {
        self.rows.push(Vec::with_capacity(width));
    }

    fn value(&mut self, value: ValueRef<'_>) -> usize {
        let (value, bytes) = match value {
            ValueRef::Null => (Value::Null, 0),
            ValueRef::Integer(v) => (Value::Integer(v), 0),
            ValueRef::Real(v) => (Value::Real(v), 0),
            ValueRef::Text(t) => {
                // Counted as stored: text that is not UTF-8 grows (each bad
                // byte becomes a 3-byte U+FFFD).
                let text = String::from_utf8_lossy(t).into_owned();
                let len = text.len();
                (Value::Text(text), len)
            }
            ValueRef::Blob(b) => (Value::Blob(b.to_vec()), b.len()),
        };
        if let Some(row) = self.rows.last_mut() {
            row.push(value);
        }
        bytes + VALUE_OVERHEAD
    }

    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn finish(self) -> Rows {
        Rows {
            columns: self.columns,
            rows: self.rows,
        }
    }
}

/// One buffer: the columns, a row count patched in at the end, the values.
#[derive(Default)]
pub struct Packed {
    bytes: Vec<u8>,
    /// Where the row count goes.
    count_at: usize,
    rows: u32,
}

/// The tags of the packed layout.
const NULL: u8 = 0;
const INTEGER: u8 = 1;
const REAL: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;

impl Packed {
    fn bytes(&mut self, bytes: &[u8]) {
        self.bytes
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(bytes);
    }
}

impl Shape for Packed {
    type Output = Vec<u8>;

    fn columns(&mut self, names: &[&str]) -> usize {
        self.bytes
            .extend_from_slice(&(names.len() as u32).to_le_bytes());
        for name in names {
            self.bytes(name.as_bytes());
        }
        self.count_at = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.bytes.len()
    }

    fn row(&mut self, _width: usize) {
        self.rows += 1;
    }

    fn value(&mut self, value: ValueRef<'_>) -> usize {
        let before = self.bytes.len();
        match value {
            ValueRef::Null => self.bytes.push(NULL),
            ValueRef::Integer(v) => {
                self.bytes.push(INTEGER);
                self.bytes.extend_from_slice(&v.to_le_bytes());
            }
            ValueRef::Real(v) => {
                self.bytes.push(REAL);
                self.bytes.extend_from_slice(&v.to_le_bytes());
            }
            ValueRef::Text(t) => {
                self.bytes.push(TEXT);
                // A text that is not UTF-8 reads as `db.query` gives it.
                match std::str::from_utf8(t) {
                    Ok(_) => self.bytes(t),
                    Err(_) => self.bytes(String::from_utf8_lossy(t).as_bytes()),
                }
            }
            ValueRef::Blob(b) => {
                self.bytes.push(BLOB);
                self.bytes(b);
            }
        }
        self.bytes.len() - before
    }

    fn rows(&self) -> usize {
        self.rows as usize
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes[self.count_at..self.count_at + 4].copy_from_slice(&self.rows.to_le_bytes());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_charged_as_stored() {
        let mut values = Values::default();
        values.row(1);
        // Each byte that is not UTF-8 becomes a 3-byte U+FFFD.
        let charged = values.value(ValueRef::Text(&[0xff; 1000]));
        assert!(charged >= 3000, "{charged}");
        let charged = values.value(ValueRef::Text("plain".as_bytes()));
        assert_eq!(charged, 5 + VALUE_OVERHEAD);
    }
}
