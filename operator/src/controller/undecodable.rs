//! Objects of a watched kind that this build cannot decode (a NAD whose `spec.config` is
//! not a string, a MultusConfig stored through another version, ...). They stay out of
//! every decision; each is reported once per version: a log line, a Warning Event on it,
//! and the `undecodable_objects{kind}` gauge.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::Context;

/// The versions already reported, by kind and uid.
#[derive(Default)]
pub struct Reported(Mutex<BTreeMap<(&'static str, String), String>>);

/// One undecodable object.
struct Found {
    kind: &'static str,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    metadata: ObjectMeta,
    error: String,
}

fn undecodable<K>(kind: &'static str, store: &Store<DeserializeGuard<K>>) -> Vec<Found>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter_map(|guarded| {
            let invalid = guarded.0.as_ref().err()?;
            Some(Found {
                kind,
                reference: guarded.object_ref(&()),
                metadata: invalid.metadata.clone(),
                error: redact(&invalid.error),
            })
        })
        .collect()
}

/// The decoder's message without the quoted values it echoes (`invalid type: string "…"`):
/// a field of the wrong type may hold a credential, and the message goes to logs and Events.
fn redact(message: &str) -> String {
    // Odd parts lie between quotes (an unclosed quote hides the rest).
    let parts: Vec<&str> = message
        .split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "…" } else { part })
        .collect();
    parts.join("\"")
}

/// Counts the undecodable objects in the caches and reports those not reported at their
/// current version. Publishing an Event is best effort (a standby's fenced client refuses
/// it); the log line and the gauge always happen.
pub async fn report(ctx: &Context) {
    let found: Vec<Found> = [
        undecodable("MultusConfig", &ctx.stores.configs),
        undecodable("NetworkAttachmentDefinition", &ctx.stores.nads),
        undecodable("Namespace", &ctx.stores.namespaces),
    ]
    .into_iter()
    .flatten()
    .collect();
    for kind in ["MultusConfig", "NetworkAttachmentDefinition", "Namespace"] {
        let count = found.iter().filter(|f| f.kind == kind).count();
        ctx.metrics
            .undecodable(kind)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    let fresh: Vec<&Found> = {
        let mut reported = ctx.reported.0.lock().unwrap_or_else(|e| e.into_inner());
        let present: BTreeSet<(&'static str, String)> = found
            .iter()
            .map(|f| (f.kind, f.metadata.uid.clone().unwrap_or_default()))
            .collect();
        reported.retain(|key, _| present.contains(key));
        found
            .iter()
            .filter(|f| {
                let key = (f.kind, f.metadata.uid.clone().unwrap_or_default());
                let version = f.metadata.resource_version.clone().unwrap_or_default();
                reported.insert(key, version.clone()).as_ref() != Some(&version)
            })
            .collect()
    };
    for f in fresh {
        tracing::warn!(
            kind = f.kind,
            namespace = f.metadata.namespace.as_deref().unwrap_or_default(),
            name = f.metadata.name.as_deref().unwrap_or_default(),
            error = %f.error,
            "cannot decode this object; it is left out until it changes"
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "Undecodable".into(),
            note: Some(
                format!(
                    "multus-operator cannot decode this object and ignores it: {}",
                    f.error
                )
                .chars()
                .take(1024)
                .collect(),
            ),
            action: "Decode".into(),
            secondary: None,
        };
        match ctx.recorder.publish(&event, &f.reference).await {
            Ok(()) => ctx.metrics.wrote("event"),
            Err(e) => tracing::warn!(
                kind = f.kind,
                name = f.metadata.name.as_deref().unwrap_or_default(),
                error = %e,
                "could not publish event"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn decoder_messages_lose_the_values_they_quote() {
        assert_eq!(
            redact(r#"Invalid type string "token=s3cret". Expected LabelSelector"#),
            r#"Invalid type string "…". Expected LabelSelector"#
        );
        assert_eq!(
            redact("Invalid type map. Expected a string"),
            "Invalid type map. Expected a string"
        );
        assert_eq!(redact(r#"bad "x" and "y""#), r#"bad "…" and "…""#);
        assert_eq!(redact(r#"cut "open"#), r#"cut "…"#);
    }
}
