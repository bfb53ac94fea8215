//! What the benches that count API requests start from: a control plane of their own with
//! an audit log, the bench's namespace, and the chart's identities (thin mode) in it.

use kube::Client;
use std::path::PathBuf;

use crate::identities::Identities;
use crate::{ControlPlane, E2eError, fixtures};

/// The bench's cluster. Its fields drop in their order: the identities' cluster-scoped
/// objects are deleted while the control plane still runs.
pub struct BenchCluster {
    /// The chart's identities in the bench's namespace.
    pub identities: Identities,
    /// Admin.
    pub admin: Client,
    pub cp: ControlPlane,
}

impl BenchCluster {
    /// Starts the control plane (on a blocking thread: it waits for its processes), creates
    /// `namespace` and applies the chart's identities there.
    pub async fn start(namespace: &str) -> Result<BenchCluster, E2eError> {
        let cp = tokio::task::spawn_blocking(ControlPlane::start_with_audit)
            .await
            .map_err(|e| E2eError::Io(format!("control plane thread: {e}")))??;
        let admin = cp.client().await?;
        fixtures::namespace(&admin, namespace).await?;
        let identities = Identities::apply(&cp, namespace, "thin").await?;
        Ok(BenchCluster {
            identities,
            admin,
            cp,
        })
    }

    /// The API server's audit log (see [`crate::audit`]).
    pub fn audit_log(&self) -> PathBuf {
        self.cp.dir.join("audit.log")
    }

    /// Deletes the identities' cluster-scoped objects, then stops the control plane on a
    /// blocking thread.
    pub async fn stop(self) {
        let BenchCluster { identities, cp, .. } = self;
        drop(identities);
        let _ = tokio::task::spawn_blocking(move || drop(cp)).await;
    }
}
