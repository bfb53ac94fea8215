//! Keeps the host kubeconfig's token fresh: takes over the token an earlier run wrote,
//! requests a new one when the refresh point comes or the bundle asks for another account,
//! audience or lifetime, and retries no faster than the floor when requests fail. The valid
//! token stays in use meanwhile. This holds the state; when to act is decided by the pure
//! functions of [`crate::token::schedule`].

use kube::{Client, Config};

use multus_crds::bundle::KubeconfigSettings;

use crate::metrics::Metrics;
use crate::token::{self, ApiEndpoint, Token, schedule};

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

    /// When the token needs attention under `settings` (Unix seconds), on a clock that
    /// reads `now`. A retry scheduled further ahead than the longest back-off means the
    /// clock went back since: it is due at once rather than an hour late.
    pub fn due_at(&self, settings: &KubeconfigSettings, now: i64) -> i64 {
        let refresh = self
            .token
            .as_ref()
            .filter(|t| t.issued_for == token::issuance(settings))
            .map(|t| schedule::refresh_at(t, settings.refresh_before_expiry, self.jitter));
        schedule::due_at(refresh, self.retry_at, now)
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
    pub fn recheck_at(&self, settings: &KubeconfigSettings, now: i64) -> Option<i64> {
        self.token
            .as_ref()
            .filter(|t| t.issued_for == token::issuance(settings))
            .map(|_| schedule::recheck_at(self.checked_at, now))
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
        if now < schedule::recheck_at(self.checked_at, now)
            || t.issued_for != token::issuance(settings)
        {
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
        if now >= self.due_at(settings, now) {
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
                    self.retry_at = now + schedule::retry_delay(self.failures, expires_in);
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
    use super::*;
    use multus_crds::contract::RefreshBefore;
    use multus_crds::multus_config::ServiceAccountRef;

    /// The clock is injected (`now`); the API server is unreachable, so every token
    /// request fails at once and the test sees what the agent would write meanwhile.
    #[tokio::test]
    async fn a_clock_jumping_an_hour_forward_and_back_around_the_refresh_point() {
        let config = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config.clone()).unwrap();
        let source = TokenSource {
            client: &client,
            kube_config: &config,
            node: "n1",
        };
        let settings = KubeconfigSettings {
            path: "/etc/cni/net.d/multus.d/multus.kubeconfig".into(),
            service_account: ServiceAccountRef {
                namespace: "kube-system".into(),
                name: "multus".into(),
            },
            expiration_seconds: 3600,
            refresh_before_expiry: RefreshBefore::DEFAULT,
            audiences: vec![],
            server: Some("https://10.0.0.1:6443".into()),
            certificate_authority: Some("-----BEGIN CERTIFICATE-----\n".into()),
        };
        let metrics = Metrics::default();
        let issued = 1_000_000;
        let mut rotation = Rotation {
            token: Some(token::Token::new(
                "s3cr3t".into(),
                issued,
                issued + 3600,
                token::issuance(&settings),
            )),
            jitter: 0.0,
            checked_at: issued,
            adoption_tried: true,
            ..Rotation::default()
        };
        let refresh = issued + 2880;
        let failures = || metrics.rotation_failures.get();

        // Just before the refresh point: no request, the token is written.
        let before = rotation
            .kubeconfig(&source, &settings, refresh - 1, &metrics)
            .await;
        assert!(before.is_some_and(|k| k.contains("s3cr3t")));
        assert_eq!(failures(), 0);

        // An hour forward: past the refresh point and past expiry by this clock. A new token
        // is requested (and fails here); an expired one is never written.
        let ahead = rotation
            .kubeconfig(&source, &settings, refresh - 1 + 3600, &metrics)
            .await;
        assert!(ahead.is_none());
        assert_eq!(failures(), 1);
        // The periodic check runs on the fast clock too (and cannot reach the API server:
        // the token is kept).
        assert!(
            !rotation
                .recheck(&source, &settings, refresh - 1 + 3600)
                .await
        );

        // Back an hour: the token is valid again and written; neither the retry nor the
        // check scheduled on the fast clock is held back by an hour.
        let back = rotation
            .kubeconfig(&source, &settings, refresh - 1, &metrics)
            .await;
        assert!(back.is_some_and(|k| k.contains("s3cr3t")));
        assert_eq!(rotation.due_at(&settings, refresh - 1), refresh);
        assert_eq!(
            rotation.recheck_at(&settings, refresh - 1),
            Some(refresh - 1 + schedule::RECHECK_SECONDS)
        );

        // At the refresh point the request is made (and fails): the token stays in use
        // while it lasts, and retries follow every few seconds.
        let at = rotation
            .kubeconfig(&source, &settings, refresh, &metrics)
            .await;
        assert!(at.is_some_and(|k| k.contains("s3cr3t")));
        assert_eq!(failures(), 2);
        assert!(rotation.due_at(&settings, refresh) <= refresh + 10);
    }
}
