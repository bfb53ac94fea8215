//! Node placeholders in attachment templates: `{{ node.name }}`, `{{ node.labels[KEY] }}` and
//! `{{ node.annotations[KEY] }}`, replaced inside JSON string values only, so a value can
//! never change the structure of the config it lands in.

use serde_json::Value;
use std::collections::BTreeMap;

/// One placeholder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placeholder {
    NodeName,
    Label(String),
    Annotation(String),
}

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placeholder::NodeName => write!(f, "{{{{ node.name }}}}"),
            Placeholder::Label(k) => write!(f, "{{{{ node.labels[{k}] }}}}"),
            Placeholder::Annotation(k) => write!(f, "{{{{ node.annotations[{k}] }}}}"),
        }
    }
}

/// A malformed placeholder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SyntaxError {
    pub path: String,
    pub message: String,
}

/// A placeholder the node cannot fill.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {placeholder} is not set on node {node}")]
pub struct MissingValue {
    pub node: String,
    pub path: String,
    pub placeholder: Placeholder,
}

/// What a node offers to placeholders.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

impl NodeFacts<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<&str> {
        match placeholder {
            Placeholder::NodeName => Some(self.name),
            Placeholder::Label(k) => self.labels.and_then(|m| m.get(k)).map(String::as_str),
            Placeholder::Annotation(k) => {
                self.annotations.and_then(|m| m.get(k)).map(String::as_str)
            }
        }
    }
}

/// A string split into literal text and placeholders.
enum Piece<'a> {
    Text(&'a str),
    Slot(Placeholder),
}

fn parse(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a placeholder opened with {{ is never closed with }}".to_string())?;
        pieces.push(Piece::Slot(parse_expr(after[..end].trim())?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

fn parse_expr(expr: &str) -> Result<Placeholder, String> {
    if expr == "node.name" {
        return Ok(Placeholder::NodeName);
    }
    let keyed = |prefix: &str| -> Option<String> {
        expr.strip_prefix(prefix)?
            .strip_suffix(']')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty() && !k.contains(['[', ']', '{', '}']))
    };
    if let Some(key) = keyed("node.labels[") {
        return Ok(Placeholder::Label(key));
    }
    if let Some(key) = keyed("node.annotations[") {
        return Ok(Placeholder::Annotation(key));
    }
    Err(format!(
        "unknown placeholder {{{{ {expr} }}}}; use node.name, node.labels[KEY] or node.annotations[KEY]"
    ))
}

/// Every placeholder in the string values of a JSON document, or the first syntax error.
pub fn scan(value: &Value) -> Result<Vec<Placeholder>, SyntaxError> {
    let mut found = Vec::new();
    walk(value, "$", &mut |path, text| {
        let pieces = parse(text).map_err(|message| SyntaxError {
            path: path.to_string(),
            message,
        })?;
        found.extend(pieces.into_iter().filter_map(|p| match p {
            Piece::Slot(s) => Some(s),
            Piece::Text(_) => None,
        }));
        Ok(())
    })?;
    found.sort();
    found.dedup();
    Ok(found)
}

/// The document with every placeholder replaced from the node, or the first missing value.
/// The document must have passed [`scan`].
pub fn substitute(value: &Value, node: &NodeFacts<'_>) -> Result<Value, MissingValue> {
    substitute_at(value, "$", node)
}

fn substitute_at(value: &Value, path: &str, node: &NodeFacts<'_>) -> Result<Value, MissingValue> {
    Ok(match value {
        Value::String(text) if text.contains("{{") => {
            let mut out = String::with_capacity(text.len());
            // scan() already accepted this document; a syntax error here leaves it literal.
            for piece in parse(text).unwrap_or_else(|_| vec![Piece::Text(text)]) {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Slot(p) => match node.lookup(&p) {
                        Some(v) => out.push_str(v),
                        None => {
                            return Err(MissingValue {
                                node: node.name.to_string(),
                                path: path.to_string(),
                                placeholder: p,
                            });
                        }
                    },
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| substitute_at(v, &format!("{path}[{i}]"), node))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute_at(v, &child(path, k), node)?)))
                .collect::<Result<_, MissingValue>>()?,
        ),
        other => other.clone(),
    })
}

fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn walk(
    value: &Value,
    path: &str,
    visit: &mut dyn FnMut(&str, &str) -> Result<(), SyntaxError>,
) -> Result<(), SyntaxError> {
    match value {
        Value::String(s) => visit(path, s),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| walk(v, &format!("{path}[{i}]"), visit)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| walk(v, &child(path, k), visit)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts<'a>(labels: &'a BTreeMap<String, String>) -> NodeFacts<'a> {
        NodeFacts {
            name: "worker-1",
            labels: Some(labels),
            annotations: None,
        }
    }

    #[test]
    fn scan_finds_every_kind_of_placeholder() {
        let doc = json!({"master": "{{ node.labels[net.example.com/uplink] }}",
                         "x": ["{{node.name}}-{{ node.annotations[a/b] }}"]});
        assert_eq!(
            scan(&doc).unwrap(),
            vec![
                Placeholder::NodeName,
                Placeholder::Label("net.example.com/uplink".into()),
                Placeholder::Annotation("a/b".into()),
            ]
        );
    }

    #[test]
    fn scan_rejects_unknown_and_unclosed_placeholders_with_their_path() {
        let err = scan(&json!({"a": {"b": "{{ node.ip }}"}})).unwrap_err();
        assert_eq!(err.path, "$.a.b");
        assert!(err.message.contains("unknown placeholder"));
        let err = scan(&json!({"a": ["{{ node.name"]})).unwrap_err();
        assert_eq!(err.path, "$.a[0]");
    }

    #[test]
    fn substitute_fills_values_inside_strings_only() {
        let labels = BTreeMap::from([("uplink".to_string(), "eth1\",\"x\":\"y".to_string())]);
        let out = substitute(
            &json!({"master": "{{ node.labels[uplink] }}", "n": 3}),
            &facts(&labels),
        )
        .unwrap();
        // A hostile label value stays a string; the document keeps its shape.
        assert_eq!(out, json!({"master": "eth1\",\"x\":\"y", "n": 3}));
    }

    #[test]
    fn a_missing_label_is_reported_with_node_and_path() {
        let labels = BTreeMap::new();
        let err = substitute(
            &json!({"ipam": {"ranges": ["{{ node.labels[subnet] }}"]}}),
            &facts(&labels),
        )
        .unwrap_err();
        assert_eq!(err.node, "worker-1");
        assert_eq!(err.path, "$.ipam.ranges[0]");
        assert_eq!(err.placeholder, Placeholder::Label("subnet".into()));
    }
}
