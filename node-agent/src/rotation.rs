//! Keeps the host kubeconfig's token fresh: takes over the token an earlier run wrote,
//! requests a new one when the refresh point comes or the bundle asks for another account,
//! audience or lifetime, and retries no faster than the floor when requests fail. The valid
//! token stays in use meanwhile.

use kube::{Client, Config};

use multus_crds::bundle::KubeconfigSettings;

use crate::metrics::Metrics;
use crate::token::{self, ApiEndpoint, Token};

/// Where tokens come from.
pub struct TokenSource<'a> {
    pub client: &'a Client,
    pub kube_config: &'a Config,
    pub node: &'a str,
}

/// The token in use and when to act next.
pub struct Rotation {
    token: Option<Token>,
    /// Unix seconds before which no new request is made (after a failure); 0 when the last
    /// request succeeded.
    retry_at: i64,
    /// Whether the kubeconfig of an earlier run was looked at.
    adoption_tried: bool,
    /// In [0, 1): where in the jitter window this token is replaced.
    jitter: f64,
    /// Failed requests in a row.
    failures: u32,
    /// Unix seconds of the last check that the token in use still authenticates.
    checked_at: i64,
}

/// How often the token in use is checked with a SelfSubjectReview: a token can stop
/// authenticating long before it expires (its ServiceAccount deleted and recreated), and
/// Multus would then fail every pod until the next refresh.
pub const RECHECK_SECONDS: i64 = 30;

/// Longest wait between two requests while they keep failing.
const RETRY_CEILING: i64 = 300;

/// Seconds to wait after `failures` failed requests in a row: doubling from the floor up to
/// five minutes, but back at the floor when the token in use expires within that wait (or
/// there is none), so a token is never left to expire for want of a retry.
pub fn retry_delay(failures: u32, expires_in: Option<i64>) -> i64 {
    let floor = token::RETRY_FLOOR.as_secs() as i64;
    let doubled = floor.saturating_mul(1_i64 << failures.saturating_sub(1).min(16));
    let delay = doubled.min(RETRY_CEILING);
    match expires_in {
        Some(left) if left > 2 * delay => delay,
        _ => floor,
    }
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            token: None,
            retry_at: 0,
            adoption_tried: false,
            jitter: fastrand::f64(),
            failures: 0,
            checked_at: 0,
        }
    }
}

impl Rotation {
    /// Expiry of the token in use (Unix seconds).
    pub fn expiry(&self) -> Option<i64> {
        self.token.as_ref().map(|t| t.expires_at)
    }

    /// Whether the last request failed (a retry is scheduled).
    pub fn failing(&self) -> bool {
        self.retry_at > 0
    }

    /// Whether an existing kubeconfig should be offered to [`Self::adopt`].
    pub fn wants_adoption(&self) -> bool {
        self.token.is_none() && !self.adoption_tried
    }

    /// When the token needs attention under `settings` (Unix seconds).
    pub fn due_at(&self, settings: &KubeconfigSettings) -> i64 {
        match &self.token {
            Some(t) if t.issued_for == token::issuance(settings) => {
                token::refresh_at(t, settings.refresh_before_expiry, self.jitter).max(self.retry_at)
            }
            _ => self.retry_at,
        }
    }

    /// Takes over the token of a kubeconfig an earlier run wrote, if it still
    /// authenticates as the configured account. Tried once per run.
    pub async fn adopt(
        &mut self,
        source: &TokenSource<'_>,
        settings: &KubeconfigSettings,
        kubeconfig_text: Option<String>,
        metrics: &Metrics,
    ) {
        self.adoption_tried = true;
        let Some(text) = kubeconfig_text else {
            return;
        };
        if let Some(t) = token::adopt(source.kube_config, settings, &text).await {
            tracing::info!(
                expires_at = t.expires_at,
                "kept the token of the existing kubeconfig"
            );
            metrics.token_expiry.set(t.expires_at);
            self.token = Some(t);
        }
    }

    /// When the token in use is next checked, if one is in use for `settings`.
    pub fn recheck_at(&self, settings: &KubeconfigSettings) -> Option<i64> {
        self.token
            .as_ref()
            .filter(|t| t.issued_for == token::issuance(settings))
            .map(|_| self.checked_at + RECHECK_SECONDS)
    }

    /// Asks whether the token in use still authenticates, and drops it when not, so that
    /// the next pass requests a new one. Returns whether it was dropped. No pass is needed
    /// otherwise: the check runs off the agent's pass loop.
    pub async fn recheck(
        &mut self,
        source: &TokenSource<'_>,
        settings: &KubeconfigSettings,
        now: i64,
    ) -> bool {
        let Some(t) = &self.token else { return false };
        if now < self.checked_at + RECHECK_SECONDS || t.issued_for != token::issuance(settings) {
            return false;
        }
        self.checked_at = now;
        match token::authenticates(source.kube_config, settings, t).await {
            Ok(true) => false,
            Ok(false) => {
                tracing::warn!(
                    "the token in use no longer authenticates (its ServiceAccount replaced?); requesting a new one"
                );
                self.token = None;
                self.retry_at = 0;
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot check the token in use; keeping it");
                false
            }
        }
    }

    /// The kubeconfig text with a valid token, requesting a new token when due.
    pub async fn kubeconfig(
        &mut self,
        source: &TokenSource<'_>,
        settings: &KubeconfigSettings,
        now: i64,
        metrics: &Metrics,
    ) -> Option<String> {
        if now >= self.due_at(settings) {
            match token::request(source.client, source.kube_config, source.node, settings).await {
                Ok(t) => {
                    tracing::info!(
                        expires_at = t.expires_at,
                        "new ServiceAccount token verified"
                    );
                    metrics.token_rotations.inc();
                    metrics.token_expiry.set(t.expires_at);
                    self.token = Some(t);
                    self.jitter = fastrand::f64();
                    self.retry_at = 0;
                    self.failures = 0;
                    self.checked_at = now;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "token request failed; keeping the current token");
                    metrics.rotation_failures.inc();
                    self.failures = self.failures.saturating_add(1);
                    let expires_in = self.token.as_ref().map(|t| t.expires_at - now);
                    self.retry_at = now + retry_delay(self.failures, expires_in);
                }
            }
        }
        // A token for other settings (another account, say) is never written: the plan then
        // fails visibly and the kubeconfig on disk stays as it was until a request succeeds.
        let wanted = token::issuance(settings);
        let token = self
            .token
            .as_ref()
            .filter(|t| t.expires_at > now && t.issued_for == wanted)?;
        let endpoint = ApiEndpoint::resolve(source.kube_config, settings);
        token::render_kubeconfig(&endpoint, token)
            .inspect_err(|e| tracing::error!(error = %e, "cannot serialize the host kubeconfig"))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::retry_delay;

    #[test]
    fn retries_back_off_but_return_to_the_floor_near_expiry() {
        let far = Some(3600);
        let delays: Vec<i64> = (1..=8).map(|n| retry_delay(n, far)).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        // A token expiring soon, or none at all: every floor interval.
        assert_eq!(retry_delay(6, Some(200)), 5);
        assert_eq!(retry_delay(6, Some(0)), 5);
        assert_eq!(retry_delay(6, None), 5);
        assert_eq!(retry_delay(u32::MAX, far), 300);
    }
}
