//! The values the host binds to its own statements, each with the
//! PostgreSQL type it is sent as. A statement whose parameter types travel
//! with it runs unnamed (Parse, Bind, Execute in one message): nothing of
//! it stays on the server connection, so it survives a pooler in
//! transaction mode, which may run the next statement on another one.

use tokio_postgres::types::{ToSql, Type};

/// A value of the host's, and the type it is sent as.
pub trait Value: ToSql + Sync {
    fn sql_type(&self) -> Type;
}

macro_rules! values {
    ($($rust:ty => $sql:ident),* $(,)?) => {
        $(impl Value for $rust {
            fn sql_type(&self) -> Type {
                Type::$sql
            }
        })*
    };
}

values! {
    bool => BOOL,
    i64 => INT8,
    f64 => FLOAT8,
    String => TEXT,
    &str => TEXT,
    Vec<u8> => BYTEA,
    &[u8] => BYTEA,
    Vec<String> => TEXT_ARRAY,
    Vec<i64> => INT8_ARRAY,
}

/// `None` is sent as a NULL of the type a value would have.
impl<T: Value + Default> Value for Option<T> {
    fn sql_type(&self) -> Type {
        T::default().sql_type()
    }
}

/// `params` as tokio-postgres takes them with their types.
pub(super) fn typed<'a>(params: &[&'a dyn Value]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|value| (*value as &(dyn ToSql + Sync), value.sql_type()))
        .collect()
}

/// A guest's value as JSON, for `json_populate_record`: a blob as bytea's
/// hex text, a real that JSON cannot hold (NaN, ∞) as null.
pub(super) fn json(value: &crate::capabilities::db::Value) -> serde_json::Value {
    use crate::capabilities::db::Value as V;
    match value {
        V::Null => serde_json::Value::Null,
        V::Integer(v) => (*v).into(),
        V::Real(v) => serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
        V::Text(v) => v.as_str().into(),
        V::Blob(v) => format!("\\x{}", hex::encode(v)).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_has_the_type_its_value_would_have() {
        assert_eq!(None::<String>.sql_type(), Type::TEXT);
        assert_eq!(None::<i64>.sql_type(), Type::INT8);
        assert_eq!(Some(true).sql_type(), Type::BOOL);
        let hash = vec![1u8, 2];
        let params = typed(&[&hash, &"x", &None::<bool>]);
        let types: Vec<Type> = params.into_iter().map(|(_, t)| t).collect();
        assert_eq!(types, [Type::BYTEA, Type::TEXT, Type::BOOL]);
    }
}
