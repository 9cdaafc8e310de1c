//! Structs read only from tables. serde's derived `Deserialize` takes a
//! struct from a map *or* from a list of its fields in order, so
//! `"quota": [5, 6, 7]` would silently become three limits. Request bodies and
//! the tables inside them are read through [`Table`], which takes a map
//! (a JSON object, a TOML table) and nothing else.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A `T` that was given as a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Table<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of named fields (an object), not a list")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(OnlyMaps(PhantomData)).map(Table)
    }
}

/// For `#[serde(deserialize_with = "…")]` on a struct-valued field.
pub fn table<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Table::deserialize(d).map(|Table(t)| t)
}

/// For a field holding a list of structs: each one a table.
pub fn tables<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Table<T>>::deserialize(d).map(|v| v.into_iter().map(|Table(t)| t).collect())
}

/// The same for an optional struct-valued field (absent or `null`: `None`).
pub fn optional_table<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Table<T>>::deserialize(d).map(|o| o.map(|Table(t)| t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        a: u32,
        #[serde(default, deserialize_with = "optional_table")]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        x: u32,
        y: u32,
    }

    #[test]
    fn maps_are_taken_and_lists_refused_at_every_level() {
        let ok: Table<Pair> = serde_json::from_str(r#"{"a": 1, "inner": {"x": 2, "y": 3}}"#).unwrap();
        assert_eq!(ok.0, Pair { a: 1, inner: Some(Inner { x: 2, y: 3 }) });
        let none: Table<Pair> = serde_json::from_str(r#"{"a": 1, "inner": null}"#).unwrap();
        assert_eq!(none.0.inner, None);
        assert!(serde_json::from_str::<Table<Pair>>("[1]").is_err(), "a list for the body");
        assert!(serde_json::from_str::<Table<Pair>>(r#"{"a": 1, "inner": [2, 3]}"#).is_err(), "a list inside");
        assert!(serde_json::from_str::<Table<Pair>>(r#"{"a": 1, "b": 2}"#).is_err(), "unknown fields still refused");
        let from_toml: Table<Pair> = toml::from_str("a = 1\n[inner]\nx = 2\ny = 3\n").unwrap();
        assert_eq!(from_toml.0.inner, Some(Inner { x: 2, y: 3 }));
        assert!(toml::from_str::<Table<Pair>>("a = 1\ninner = [2, 3]\n").is_err());
    }
}
