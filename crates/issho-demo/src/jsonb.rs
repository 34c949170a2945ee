//! Cheap JSON construction: `obj!` and `arr!` move their values into the tree.
//!
//! (`serde_json::json!` converts every interpolated expression with `to_value`, which deep-copies
//! `Value`s through the serializer; building resources out of many small `Value`s that way was
//! the generator's main cost.)

use serde_json::{Map, Number, Value};

/// Conversion into a JSON value by move.
pub trait IntoJson {
    fn into_json(self) -> Value;
}

impl IntoJson for Value {
    #[inline]
    fn into_json(self) -> Value {
        self
    }
}

impl IntoJson for Map<String, Value> {
    #[inline]
    fn into_json(self) -> Value {
        Value::Object(self)
    }
}

impl IntoJson for Vec<Value> {
    #[inline]
    fn into_json(self) -> Value {
        Value::Array(self)
    }
}

impl IntoJson for &str {
    #[inline]
    fn into_json(self) -> Value {
        Value::String(self.to_owned())
    }
}

impl IntoJson for String {
    #[inline]
    fn into_json(self) -> Value {
        Value::String(self)
    }
}

impl IntoJson for &String {
    #[inline]
    fn into_json(self) -> Value {
        Value::String(self.clone())
    }
}

impl IntoJson for bool {
    #[inline]
    fn into_json(self) -> Value {
        Value::Bool(self)
    }
}

macro_rules! int_into_json {
    ($($t:ty),*) => {$(
        impl IntoJson for $t {
            #[inline]
            fn into_json(self) -> Value {
                Value::Number(Number::from(self))
            }
        }
    )*};
}
int_into_json!(i32, u32, u64, i64, usize);

/// Build a JSON object: `obj! { "key" => value, … }` (values are moved, not copied).
macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {{
        let mut m = ::serde_json::Map::with_capacity(0 $(+ { let _ = $k; 1 })*);
        $( m.insert(::std::string::String::from($k), $crate::jsonb::IntoJson::into_json($v)); )*
        ::serde_json::Value::Object(m)
    }};
}

/// Build a JSON array: `arr![a, b, …]` (values are moved, not copied).
macro_rules! arr {
    ($($v:expr),* $(,)?) => {
        ::serde_json::Value::Array(vec![$($crate::jsonb::IntoJson::into_json($v)),*])
    };
}

pub(crate) use {arr, obj};
