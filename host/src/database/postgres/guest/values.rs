//! Values across the boundary on PostgreSQL, as on SQLite: parameters are
//! typed from the WIT values (integer → bigint, real → double precision,
//! text → text, blob → bytea, null → for the server to infer), and result
//! columns map back: integers, integral `numeric` and booleans (0/1) to
//! integer, floats and other `numeric` to real, text-like types to text,
//! `bytea` to blob, dates and timestamps to ISO-8601 text. Any other type
//! is refused, naming the column.

use crate::capabilities::db::ValueRef;
use crate::capabilities::rawalite::bridge::db::Value;
use bytes::BytesMut;
use std::error::Error as StdError;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// A parameter, owned so that it can cross to the database's runtime.
#[derive(Debug, Clone)]
pub(super) enum Param {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl Param {
    pub(super) fn of(value: &Value) -> Self {
        match value {
            Value::Null => Param::Null,
            Value::Integer(v) => Param::Integer(*v),
            Value::Real(v) => Param::Real(*v),
            Value::Text(v) => Param::Text(v.clone()),
            Value::Blob(v) => Param::Blob(v.clone()),
        }
    }

    /// The type the statement is prepared with for this parameter.
    pub(super) fn pg_type(&self) -> Type {
        match self {
            Param::Integer(_) => Type::INT8,
            Param::Real(_) => Type::FLOAT8,
            Param::Text(_) => Type::TEXT,
            Param::Blob(_) => Type::BYTEA,
            // "unknown": the server infers it, as for a NULL literal.
            Param::Null => Type::UNKNOWN,
        }
    }
}

impl ToSql for Param {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // Each is written in the binary form of the type `pg_type` declared.
        match self {
            Param::Integer(v) => out.extend_from_slice(&v.to_be_bytes()),
            Param::Real(v) => out.extend_from_slice(&v.to_be_bytes()),
            Param::Text(v) => out.extend_from_slice(v.as_bytes()),
            Param::Blob(v) => out.extend_from_slice(v),
            Param::Null => return Ok(IsNull::Yes),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column's value as the server sent it, decoded by [`cell`].
pub(super) struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A result value, as the result shapes take it: borrowed from the row
/// where it can be, else built.
#[derive(Debug)]
pub(super) enum Cell<'a> {
    Borrowed(ValueRef<'a>),
    Built(Built),
}

/// A value that had to be built from the server's form.
#[derive(Debug, PartialEq)]
pub(super) enum Built {
    Integer(i64),
    Real(f64),
    Text(String),
}

impl Cell<'_> {
    pub(super) fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Cell::Borrowed(v) => *v,
            Cell::Built(Built::Integer(v)) => ValueRef::Integer(*v),
            Cell::Built(Built::Real(v)) => ValueRef::Real(*v),
            Cell::Built(Built::Text(t)) => ValueRef::Text(t.as_bytes()),
        }
    }
}

/// Decodes one column's binary value of type `ty`; `Err` names what the
/// bridge cannot carry.
pub(super) fn cell<'a>(ty: &Type, raw: Raw<'a>) -> Result<Cell<'a>, String> {
    use Built as V;
    use ValueRef as R;
    let Some(raw) = raw.0 else {
        return Ok(Cell::Borrowed(R::Null));
    };
    let int = |bytes: &[u8]| -> Result<i64, String> {
        Ok(match bytes.len() {
            2 => i16::from_be_bytes(bytes.try_into().expect("2 bytes")).into(),
            4 => i32::from_be_bytes(bytes.try_into().expect("4 bytes")).into(),
            8 => i64::from_be_bytes(bytes.try_into().expect("8 bytes")),
            n => return Err(format!("an integer of {n} bytes")),
        })
    };
    Ok(match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 => Cell::Borrowed(R::Integer(int(raw)?)),
        Type::FLOAT4 => Cell::Borrowed(R::Real(f32::from_be_bytes(
            raw.try_into().map_err(|_| "a float4 of another size")?,
        ) as f64)),
        Type::FLOAT8 => Cell::Borrowed(R::Real(f64::from_be_bytes(
            raw.try_into().map_err(|_| "a float8 of another size")?,
        ))),
        Type::BOOL => Cell::Borrowed(R::Integer(i64::from(raw.first() == Some(&1)))),
        Type::NUMERIC => Cell::Built(numeric(raw)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            Cell::Borrowed(R::Text(raw))
        }
        Type::JSONB => Cell::Borrowed(R::Text(raw.get(1..).unwrap_or_default())),
        Type::UUID => Cell::Built(V::Text(uuid_text(raw).ok_or("a uuid of another size")?)),
        Type::BYTEA => Cell::Borrowed(R::Blob(raw)),
        // Days since 2000-01-01; microseconds since 2000-01-01 00:00 UTC.
        Type::DATE => Cell::Built(V::Text(crate::utc::date(int(raw)? + 10_957))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            Cell::Built(V::Text(crate::utc::iso(int(raw)? + 946_684_800_000_000)))
        }
        _ => return Err(format!("type `{ty}`")),
    })
}

fn uuid_text(raw: &[u8]) -> Option<String> {
    let hex = hex::encode(<[u8; 16]>::try_from(raw).ok()?);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// A `numeric` in its binary form (digit count, weight, sign, scale, then
/// base-10000 digits): an integer when it has no fraction and fits in 64
/// bits (`sum` of bigints is numeric), else a real, as SQLite's `avg` is.
fn numeric(raw: &[u8]) -> Result<Built, String> {
    use Built as V;
    let word = |i: usize| -> Result<i16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a numeric cut short".to_owned())
    };
    let (count, weight, sign) = (word(0)? as usize, word(1)? as i32, word(2)? as u16);
    if sign == 0xC000 {
        return Ok(V::Real(f64::NAN));
    }
    let negative = sign == 0x4000;
    let digits: Vec<i64> = (0..count)
        .map(|i| word(4 + i).map(i64::from))
        .collect::<Result<_, _>>()?;
    // Digit i is worth 10000^(weight - i).
    let integral = digits
        .iter()
        .enumerate()
        .all(|(i, d)| *d == 0 || weight - i as i32 >= 0);
    if integral {
        let mut value: i128 = 0;
        for (i, d) in digits.iter().enumerate() {
            let power = weight - i as i32;
            if *d == 0 || power < 0 {
                continue;
            }
            let scaled = 10_000i128
                .checked_pow(power as u32)
                .and_then(|p| p.checked_mul(*d as i128));
            value = match scaled.and_then(|s| value.checked_add(s)) {
                Some(v) => v,
                None => return Ok(V::Real(real(&digits, weight, negative))),
            };
        }
        let value = if negative { -value } else { value };
        if let Ok(v) = i64::try_from(value) {
            return Ok(V::Integer(v));
        }
    }
    Ok(V::Real(real(&digits, weight, negative)))
}

fn real(digits: &[i64], weight: i32, negative: bool) -> f64 {
    let value: f64 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| *d as f64 * 10_000f64.powi(weight - i as i32))
        .sum();
    if negative { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Built as V;

    /// The binary form of a numeric, as PostgreSQL writes it.
    fn encoded(digits: &[i16], weight: i16, negative: bool, scale: i16) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [
            digits.len() as i16,
            weight,
            if negative { 0x4000 } else { 0 },
            scale,
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_become_integers_when_whole_and_reals_otherwise() {
        assert_eq!(
            numeric(&encoded(&[48, 2550], 1, false, 0)).unwrap(),
            V::Integer(482_550)
        );
        assert_eq!(
            numeric(&encoded(&[12], 0, true, 0)).unwrap(),
            V::Integer(-12)
        );
        assert_eq!(numeric(&encoded(&[], 0, false, 0)).unwrap(), V::Integer(0));
        assert_eq!(
            numeric(&encoded(&[1, 5000], 0, false, 1)).unwrap(),
            V::Real(1.5)
        );
        match numeric(&encoded(&[1, 0, 0, 0, 0, 0], 5, false, 0)).unwrap() {
            V::Real(v) => assert!((v - 1e20).abs() < 1e6, "{v}"),
            other => panic!("{other:?}"),
        }
        assert!(numeric(&[0, 1]).is_err());
    }

    #[test]
    fn dates_and_timestamps_read_as_iso_text() {
        let days = 9_826i32.to_be_bytes();
        let date = cell(&Type::DATE, Raw(Some(&days))).unwrap();
        assert_eq!(date.as_ref(), ValueRef::Text(b"2026-11-26"));
        let micros: i64 = 849_033_000_000_000;
        let micros = micros.to_be_bytes();
        let ts = cell(&Type::TIMESTAMPTZ, Raw(Some(&micros))).unwrap();
        assert_eq!(ts.as_ref(), ValueRef::Text(b"2026-11-26T18:30:00Z"));
        assert!(
            cell(&Type::POINT, Raw(Some(&[0; 16])))
                .unwrap_err()
                .contains("point")
        );
    }
}
