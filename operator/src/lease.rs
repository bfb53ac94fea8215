//! Leader election through a coordination.k8s.io Lease, so that only one replica writes.
//! A replica that loses its lease stops; its Deployment restarts it as a standby.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;

/// A Lease held (or wanted) by one identity.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// Why the lease was lost.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {name} is now held by {holder}")]
    Lost { name: String, holder: String },
    #[error("lease {name} could not be renewed within its duration: {source}")]
    RenewFailed {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    /// Waits until this identity holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return;
                }
                Ok(false) => tracing::debug!(lease = %self.name, "lease held by another replica"),
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "lease request failed"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the lease until it is lost; returns why.
    pub async fn hold(&self) -> LeaseError {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    let holder = self.holder().await.unwrap_or_default();
                    return LeaseError::Lost {
                        name: self.name.clone(),
                        holder,
                    };
                }
                Err(source) if last_renewal.elapsed() >= self.duration => {
                    return LeaseError::RenewFailed {
                        name: self.name.clone(),
                        source,
                    };
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "lease renewal failed; retrying")
                }
            }
        }
    }

    /// Gives the lease up when this identity holds it, so that a standby takes over at once
    /// instead of after the lease duration. Best effort: an error leaves the lease to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released leadership"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "could not release the lease; it expires on its own")
            }
        }
    }

    async fn holder(&self) -> Option<String> {
        let lease = self.api.get_opt(&self.name).await.ok()??;
        lease.spec?.holder_identity
    }

    /// Takes or renews the lease when it is free, expired or ours.
    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let released = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = released
            || match (&spec.renew_time, spec.lease_duration_seconds) {
                (Some(renewed), Some(secs)) => {
                    now.0.duration_since(renewed.0).as_secs_f64() > f64::from(secs)
                }
                _ => true,
            };
        if !ours && !expired {
            return Ok(false);
        }
        let mut next = spec;
        if !ours {
            next.holder_identity = Some(self.identity.clone());
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
        }
        next.lease_duration_seconds = Some(seconds);
        next.renew_time = Some(now);
        lease.spec = Some(next);
        // replace() carries the resourceVersion we read: a concurrent writer makes it fail.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
