//! What every simulated node that runs pods holds, ours ([`crate::agent_node::AgentNode`])
//! and upstream's ([`crate::upstream_node::UpstreamNode`]) alike: the admin client, the
//! test's namespace, the Node's name and the host that gives pods their network namespaces;
//! and the pods it creates. What only one kind of node holds is `K`, reached through
//! `Deref`.

use kube::Client;
use std::ops::{Deref, DerefMut};

use crate::E2eError;
use crate::podnet::{PodHost, PodRef};

/// A simulated node that runs pods, with what only its kind holds (`K`).
pub struct PodNode<K> {
    /// First, so that it drops (and stops what the node runs) before the host goes.
    kind: K,
    /// Admin, to set the scenario up and check results.
    pub client: Client,
    pub ns: String,
    pub node: String,
    pub host: PodHost,
}

impl<K> PodNode<K> {
    pub(crate) fn from_parts(
        client: Client,
        ns: String,
        node: String,
        host: PodHost,
        kind: K,
    ) -> PodNode<K> {
        PodNode {
            kind,
            client,
            ns,
            node,
            host,
        }
    }

    /// A pod on this node asking for `networks`, with its network namespace.
    pub async fn pod(&mut self, name: &str, networks: &str) -> Result<PodRef, E2eError> {
        PodRef::create(
            &self.client,
            &mut self.host,
            &self.ns,
            name,
            &self.node,
            networks,
        )
        .await
    }
}

impl<K> Deref for PodNode<K> {
    type Target = K;
    fn deref(&self) -> &K {
        &self.kind
    }
}

impl<K> DerefMut for PodNode<K> {
    fn deref_mut(&mut self) -> &mut K {
        &mut self.kind
    }
}
