//! JSON parsing that refuses an object with the same key twice. Go's decoder, which Multus
//! and the CNI plugins use, keeps the last value of a repeated key; other readers keep the
//! first or fail. A config whose meaning depends on the reader is refused instead of read
//! one way here and another way on the node.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why a text is not acceptable JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrictError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// `path` is the repeated key's JSONPath-like location.
    #[error(
        "{path}: the key {key:?} appears more than once (readers disagree on which value counts)"
    )]
    DuplicateKey { path: String, key: String },
}

/// Marker carried through serde's error type: `<path>\u{0}<key>`.
const DUPLICATE: &str = "\u{0}duplicate\u{0}";

/// Parses `text` as JSON, refusing repeated object keys at any depth.
pub fn parse(text: &str) -> Result<Value, StrictError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Seed { path: "$".into() }
        .deserialize(&mut deserializer)
        .and_then(|v| deserializer.end().map(|()| v))
        .map_err(|e| {
            let message = e.to_string();
            match message.split_once(DUPLICATE) {
                Some((path, rest)) => StrictError::DuplicateKey {
                    path: path.to_string(),
                    // serde_json appends " at line L column C" to custom errors.
                    key: rest
                        .rsplit_once(" at line ")
                        .map_or(rest, |(key, _)| key)
                        .to_string(),
                },
                None => StrictError::Syntax(message),
            }
        })?;
    Ok(value)
}

/// Deserializes one JSON value found at `path`.
struct Seed {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed {
            path: format!("{}[{}]", self.path, items.len()),
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let path = format!("{}.{key}", self.path);
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("{path}{DUPLICATE}{key}")));
            }
            let value = access.next_value_seed(Seed { path })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_serde_json_parses_them() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9"}"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn a_repeated_key_is_refused_at_its_path_at_any_depth() {
        for (text, path, key) in [
            (r#"{"type":"bridge","type":"macvlan"}"#, "$.type", "type"),
            (r#"{"ipam":{"type":"a","type":"b"}}"#, "$.ipam.type", "type"),
            (
                r#"{"plugins":[{"x":1},{"mtu":1,"mtu":2}]}"#,
                "$.plugins[1].mtu",
                "mtu",
            ),
        ] {
            assert_eq!(
                parse(text),
                Err(StrictError::DuplicateKey {
                    path: path.into(),
                    key: key.into()
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn syntax_errors_and_trailing_text_are_refused() {
        for text in ["{", "{} {}", "[1,]", ""] {
            assert!(matches!(parse(text), Err(StrictError::Syntax(_))), "{text}");
        }
    }
}
