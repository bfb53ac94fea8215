//! Leader election through a coordination.k8s.io Lease, so that only one replica writes.
//! Expiry is judged by each replica's own monotonic clock, never by comparing its clock with
//! the renewTime another replica wrote (see [`election`] for the timings). A leader whose
//! renewals lapse stops writing at once (its [`LeaderGuard`] fences the client) and steps
//! down, before any standby may take the Lease.

pub mod election;
pub mod fence;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::time::Instant;

pub use election::{Decision, LeaderGuard, Record, Standby, Timings};

/// A Lease held (or wanted) by one identity.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    guard: LeaderGuard,
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {name} is now held by {holder}")]
    Lost { name: String, holder: String },
    #[error(
        "lease {name} was not renewed within {window:?} of the last renewal; stopped writing before a standby may take it"
    )]
    Expired { name: String, window: Duration },
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
            timings: Timings::new(duration),
            guard: LeaderGuard::elected(),
        }
    }

    /// The guard that holds while this lock may write; give it to every write path.
    pub fn guard(&self) -> LeaderGuard {
        self.guard.clone()
    }

    /// Waits until this identity holds the lease, and arms the guard.
    pub async fn acquire(&self) {
        let mut standby = Standby::default();
        loop {
            let sent = Instant::now();
            match self.try_acquire(&mut standby).await {
                Ok(true) => {
                    self.guard
                        .arm((sent + self.timings.write_window()).into_std());
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return;
                }
                Ok(false) => tracing::debug!(lease = %self.name, "lease held by another replica"),
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "lease request failed"),
            }
            tokio::time::sleep(self.timings.standby_poll()).await;
        }
    }

    /// Renews the lease until it is lost or lapses; disarms the guard and returns why. It
    /// never renews past the guard's deadline: a leader that was frozen or cut off longer
    /// than its write window gives up instead of writing on.
    pub async fn hold(&self) -> LeaseError {
        let mut next = Instant::now() + self.timings.renew_every();
        loop {
            let Some(deadline) = self.guard.deadline().map(Instant::from_std) else {
                return self.expired();
            };
            tokio::time::sleep_until(next.min(deadline)).await;
            let sent = Instant::now();
            if sent >= deadline {
                return self.expired();
            }
            match tokio::time::timeout_at(deadline, self.renew()).await {
                Err(_) => return self.expired(),
                Ok(Ok(None)) => {
                    if Instant::now() >= deadline {
                        return self.expired();
                    }
                    self.guard
                        .arm((sent + self.timings.write_window()).into_std());
                    next = sent + self.timings.renew_every();
                }
                Ok(Ok(Some(holder))) => {
                    self.guard.disarm();
                    return LeaseError::Lost {
                        name: self.name.clone(),
                        holder,
                    };
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "lease renewal failed; retrying");
                    next = Instant::now() + self.timings.retry_every();
                }
            }
        }
    }

    fn expired(&self) -> LeaseError {
        self.guard.disarm();
        LeaseError::Expired {
            name: self.name.clone(),
            window: self.timings.write_window(),
        }
    }

    /// Gives the lease up when this identity holds it, so that a standby takes over at once
    /// instead of after the lease duration. Best effort: an error leaves the lease to expire.
    pub async fn release(&self) {
        self.guard.disarm();
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

    fn seconds(&self) -> i32 {
        i32::try_from(self.timings.duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Renews the lease when it is still ours. `Some(holder)` when it is not.
    async fn renew(&self) -> Result<Option<String>, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(Some(String::new()));
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(Some(spec.holder_identity.unwrap_or_default()));
        }
        lease.spec = Some(LeaseSpec {
            lease_duration_seconds: Some(self.seconds()),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            ..spec
        });
        // replace() carries the resourceVersion we read: a concurrent writer makes it fail.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some(self.holder().await)),
            Err(e) => Err(e),
        }
    }

    async fn holder(&self) -> String {
        match self.api.get_opt(&self.name).await {
            Ok(Some(lease)) => lease.spec.and_then(|s| s.holder_identity),
            _ => None,
        }
        .unwrap_or_default()
    }

    /// Takes the lease when it is missing, free, ours, or unchanged for its whole duration
    /// by this replica's clock.
    async fn try_acquire(&self, standby: &mut Standby) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let current = self.api.get_opt(&self.name).await?;
        let record = current.as_ref().map(|lease| {
            let spec = lease.spec.as_ref();
            Record {
                holder: spec.and_then(|s| s.holder_identity.as_deref()),
                version: lease
                    .metadata
                    .resource_version
                    .as_deref()
                    .unwrap_or_default(),
                duration: spec
                    .and_then(|s| s.lease_duration_seconds)
                    .and_then(|s| u64::try_from(s).ok())
                    .map(Duration::from_secs),
            }
        });
        let decision = standby.judge(
            record,
            &self.identity,
            std::time::Instant::now(),
            self.timings.duration,
        );
        let result = match (decision, current) {
            (Decision::Wait, _) => return Ok(false),
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(self.seconds()),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Take, Some(mut lease)) => {
                let mut next = lease.spec.clone().unwrap_or_default();
                if next.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    next.holder_identity = Some(self.identity.clone());
                    next.acquire_time = Some(now.clone());
                    next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
                }
                next.lease_duration_seconds = Some(self.seconds());
                next.renew_time = Some(now);
                lease.spec = Some(next);
                // Conditional on the resourceVersion read: a concurrent change fails it.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
