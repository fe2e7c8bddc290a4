//! SQL against the host's database, under this guest's table grants
//! (`[guest.db]` in the manifest). Parameters are bound, never spliced:
//! `db::query("SELECT name FROM customers WHERE id = ?", &[id.into()])`.
//!
//! [`query`] asks the host for the rows in one packed buffer and unpacks
//! them here: one copy into the guest instead of one per value.

use crate::Error;
use crate::bindings::rawalite::bridge::db as bridge;

pub use bridge::{Outcome, Rows, Statement, Value, execute, transaction};

/// Runs one statement that reads and returns its rows.
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    let packed = bridge::query_packed(sql, params)?;
    unpack(&packed).ok_or_else(|| Error::internal("the host sent rows this SDK cannot read"))
}

/// The rows of a buffer in the layout of `query-packed` (`wit/bridge.wit`).
fn unpack(bytes: &[u8]) -> Option<Rows> {
    let mut r = Reader(bytes);
    let columns = (0..r.u32()?)
        .map(|_| r.text())
        .collect::<Option<Vec<String>>>()?;
    let count = r.u32()? as usize;
    let mut rows = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        let row = (0..columns.len())
            .map(|_| r.value())
            .collect::<Option<Vec<Value>>>()?;
        rows.push(row);
    }
    r.0.is_empty().then_some(Rows { columns, rows })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn eight(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }

    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.take(1)?[0] {
            0 => Value::Null,
            1 => Value::Integer(i64::from_le_bytes(self.eight()?)),
            2 => Value::Real(f64::from_le_bytes(self.eight()?)),
            3 => Value::Text(self.text()?),
            4 => Value::Blob(self.bytes()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The host's side of the layout, for the tests: what `query-packed`
    /// sends for these rows.
    fn pack(rows: &Rows) -> Vec<u8> {
        let mut out = Vec::new();
        let bytes = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        out.extend_from_slice(&(rows.columns.len() as u32).to_le_bytes());
        for c in &rows.columns {
            bytes(&mut out, c.as_bytes());
        }
        out.extend_from_slice(&(rows.rows.len() as u32).to_le_bytes());
        for v in rows.rows.iter().flatten() {
            match v {
                Value::Null => out.push(0),
                Value::Integer(i) => {
                    out.push(1);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Value::Real(f) => {
                    out.push(2);
                    out.extend_from_slice(&f.to_le_bytes());
                }
                Value::Text(t) => {
                    out.push(3);
                    bytes(&mut out, t.as_bytes());
                }
                Value::Blob(b) => {
                    out.push(4);
                    bytes(&mut out, b);
                }
            }
        }
        out
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>().prop_map(Value::Real),
            ".{0,20}".prop_map(Value::Text),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::Blob),
        ]
    }

    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
            (Value::Null, Value::Null) => true,
            (Value::Integer(x), Value::Integer(y)) => x == y,
            (Value::Text(x), Value::Text(y)) => x == y,
            (Value::Blob(x), Value::Blob(y)) => x == y,
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the rows, they unpack to themselves.
        #[test]
        fn rows_round_trip(
            columns in prop::collection::vec(".{0,8}", 0..4),
            values in prop::collection::vec(value(), 0..40),
        ) {
            let width = columns.len().max(1);
            let rows: Vec<Vec<Value>> = if columns.is_empty() {
                Vec::new()
            } else {
                values.chunks_exact(width).map(|c| c.to_vec()).collect()
            };
            let rows = Rows { columns, rows };
            let back = unpack(&pack(&rows)).unwrap();
            prop_assert_eq!(&back.columns, &rows.columns);
            prop_assert_eq!(back.rows.len(), rows.rows.len());
            for (a, b) in back.rows.iter().flatten().zip(rows.rows.iter().flatten()) {
                prop_assert!(same(a, b), "{:?} != {:?}", a, b);
            }
        }

        /// Any bytes at all unpack without a panic (to rows or to nothing).
        #[test]
        fn any_bytes_are_safe(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = unpack(&bytes);
        }
    }
}
