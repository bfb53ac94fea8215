//! Schema pieces the derives cannot express: a label selector bounded and checked at
//! admission the way the API server checks selectors of its own kinds, so `kubectl apply`
//! refuses an unknown operator or an invalid label key at once, naming the field.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters (alphanumerics, `-`, `_`, `.`; alphanumeric at both ends).
pub const LABEL_KEY: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// A label value: empty, or at most 63 characters like a key's name part.
pub const LABEL_VALUE: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";
/// A DNS-1123 label (a namespace name).
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1123 subdomain (most object names, a ServiceAccount's among them).
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Longest label key: a 253-character prefix, `/`, a 63-character name.
const MAX_KEY: u32 = 317;
/// Bounds that keep the CEL rule's cost estimate within the API server's budget.
const MAX_LABELS: u32 = 64;
const MAX_EXPRESSIONS: u32 = 64;
const MAX_VALUES: u32 = 256;

/// `metav1.LabelSelector` with the API server's own checks as schema and CEL rules.
pub fn label_selector(_: &mut SchemaGenerator) -> Schema {
    let key_rule = format!("self.all(k, size(k) <= {MAX_KEY} && k.matches(r'{LABEL_KEY}'))");
    json_schema!({
        "description": "A label selector: matchLabels and matchExpressions are ANDed; empty or absent selects everything.",
        "nullable": true,
        "type": "object",
        "properties": {
            "matchLabels": {
                "description": "Labels that must all be present with these values.",
                "type": "object",
                "maxProperties": MAX_LABELS,
                "additionalProperties": { "type": "string", "maxLength": 63, "pattern": LABEL_VALUE },
                "x-kubernetes-validations": [{
                    "rule": key_rule,
                    "message": "every matchLabels key must be a valid label key: an optional DNS subdomain prefix and '/', then 1 to 63 alphanumerics, '-', '_' or '.'"
                }]
            },
            "matchExpressions": {
                "description": "Requirements on labels, all of which must hold.",
                "type": "array",
                "maxItems": MAX_EXPRESSIONS,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": { "type": "string", "maxLength": MAX_KEY, "pattern": LABEL_KEY },
                        "operator": { "type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"] },
                        "values": {
                            "type": "array",
                            "maxItems": MAX_VALUES,
                            "items": { "type": "string", "maxLength": 63, "pattern": LABEL_VALUE }
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "In and NotIn need at least one value; Exists and DoesNotExist take none"
                    }]
                }
            }
        }
    })
}
