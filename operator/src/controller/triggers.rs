//! Which watch events wake the controller. A Node wakes it only when it appears, goes, or
//! changes its labels or annotations (what selection and placeholders read): kubelets
//! rewrite Node status all the time, and a controller woken by every heartbeat would do
//! work proportional to nodes times time instead of to changes.

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Hash of what of a Node the renderer reads besides its name.
fn node_inputs(node: &Node) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    node.metadata.labels.hash(&mut hasher);
    node.metadata.annotations.hash(&mut hasher);
    hasher.finish()
}

/// Node events that can change a bundle, from a Node watch (after its reflector): new and
/// deleted nodes, and label or annotation changes. Status-only updates are dropped.
pub fn node_changes<S>(events: S) -> impl Stream<Item = Result<Node, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<Node>, watcher::Error>>,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    events.filter_map(move |event| {
        let wake = match event {
            Err(e) => Some(Err(e)),
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                let inputs = node_inputs(&node);
                (seen.insert(node.name_any(), inputs) != Some(inputs)).then_some(Ok(node))
            }
            Ok(watcher::Event::Delete(node)) => {
                seen.remove(&node.name_any());
                Some(Ok(node))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
        };
        futures::future::ready(wake)
    })
}

/// A Node as the controller keeps it, from a metadata-only watch event: its metadata
/// without managed fields (name, labels and annotations are all that selection and
/// placeholders read). A metadata-only watch never transfers or decodes spec and status,
/// which real kubelets make kilobytes large and rewrite on every status update, and whose
/// decoding cannot fail on a field this build does not know.
pub fn node_from_metadata(event: watcher::Event<PartialObjectMeta<Node>>) -> watcher::Event<Node> {
    let node = |partial: PartialObjectMeta<Node>| {
        let mut metadata = partial.metadata;
        metadata.managed_fields = None;
        Node {
            metadata,
            ..Node::default()
        }
    };
    match event {
        watcher::Event::Apply(n) => watcher::Event::Apply(node(n)),
        watcher::Event::InitApply(n) => watcher::Event::InitApply(node(n)),
        watcher::Event::Delete(n) => watcher::Event::Delete(node(n)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// An object of a metadata-only watch as the controller keeps it: without managed fields,
/// which server-side apply makes as long as the list of keys it wrote.
pub fn without_managed_fields<K>(
    event: watcher::Event<PartialObjectMeta<K>>,
) -> watcher::Event<PartialObjectMeta<K>> {
    event.modify(|partial| partial.metadata.managed_fields = None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::NodeStatus;
    use kube::runtime::watcher::Event;
    use std::collections::BTreeMap;

    fn node(labels: &[(&str, &str)], heartbeat: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        n.metadata.resource_version = Some(heartbeat.into());
        n.status = Some(NodeStatus {
            phase: Some(heartbeat.into()),
            ..NodeStatus::default()
        });
        n
    }

    #[test]
    fn heartbeats_are_dropped_and_new_nodes_label_changes_and_deletions_pass() {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut filtered = Box::pin(node_changes(rx));
        let relabelled = node(&[("pool", "b")], "4");
        let table = [
            (Event::Init, false),
            (Event::InitApply(node(&[("pool", "a")], "1")), true),
            (Event::InitDone, false),
            (Event::Apply(node(&[("pool", "a")], "2")), false),
            (Event::Apply(node(&[("pool", "a")], "3")), false),
            (Event::Apply(relabelled.clone()), true),
            (Event::Apply(node(&[("pool", "b")], "5")), false),
            (Event::Delete(relabelled), true),
            (Event::Apply(node(&[("pool", "b")], "6")), true),
        ];
        for (i, (event, wakes)) in table.into_iter().enumerate() {
            let _ = tx.unbounded_send(Ok(event));
            let out = filtered.next().now_or_never();
            assert_eq!(out.is_some(), wakes, "event {i}");
        }
    }

    #[test]
    fn a_node_is_kept_by_its_metadata_without_managed_fields() {
        let partial: PartialObjectMeta<Node> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "n1",
                "labels": { "pool": "a" },
                "annotations": { "a/b": "c" },
                "managedFields": [{ "manager": "kubelet", "operation": "Update" }],
            },
        }))
        .unwrap();
        let Event::Apply(n) = node_from_metadata(Event::Apply(partial)) else {
            panic!("not an Apply");
        };
        assert_eq!(n.name_any(), "n1");
        assert_eq!(n.labels().get("pool").map(String::as_str), Some("a"));
        assert_eq!(n.annotations().get("a/b").map(String::as_str), Some("c"));
        assert!(n.metadata.managed_fields.is_none());
        assert!(n.spec.is_none() && n.status.is_none());
    }
}
