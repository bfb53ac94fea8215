//! `multus-operator uninstall`: the chart's pre-delete step. Deletes every MultusConfig and
//! waits until they are gone, which the operator's finalizer allows only once every agent
//! has reported its files removed (or the operator's cleanup timeout gave a node up, which
//! it reports in a `CleanupTimedOut` Event). Progress goes to `out`, one line per change.

use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use multus_crds::MultusConfig;

use super::CliError;

/// How often the remaining MultusConfigs are listed.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// The operator's namespace (printed in the report; the node ConfigMaps live there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "multus-system")]
    pub namespace: String,
    /// How long to wait for every agent's confirmation, as seconds (`360`) or with a unit
    /// (`360s`, `6m`). Keep it above the operator's --cleanup-timeout-seconds.
    #[arg(long, default_value = "360s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Delete only MultusConfigs matching this label selector (the operator's own
    /// --multusconfig-selector). Empty: all.
    #[arg(long = "multusconfig-selector")]
    pub multusconfig_selector: Option<String>,
}

/// Parses `<n>`, `<n>s`, `<n>m` or `<n>h`.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 360s or 6m"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{text:?} is not a duration such as 360s or 6m")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Runs the command on its own runtime.
pub fn uninstall(args: UninstallArgs, out: &mut dyn Write) -> Result<(), CliError> {
    super::with_client(|client| delete_and_wait(client, &args, out))
}

/// Deletes every MultusConfig, then waits until none is left or `args.timeout` passes.
pub async fn delete_and_wait(
    client: Client,
    args: &UninstallArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api: Api<MultusConfig> = Api::all(client);
    let kube = |what: &'static str| move |source| CliError::Kube { what, source };
    let selected = match &args.multusconfig_selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let configs = api
        .list(&selected)
        .await
        .map_err(kube("list MultusConfigs"))?;
    if configs.items.is_empty() {
        writeln!(out, "no MultusConfig to delete")?;
        return Ok(());
    }
    for config in &configs.items {
        let name = config.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => writeln!(out, "deleting MultusConfig {name}")?,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(CliError::Kube {
                    what: "delete a MultusConfig",
                    source,
                });
            }
        }
    }
    writeln!(
        out,
        "waiting up to {}s for the node agents to remove their files (bundles in {})",
        args.timeout.as_secs(),
        args.namespace
    )?;
    let deadline = Instant::now() + args.timeout;
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let left: BTreeMap<String, String> = api
            .list(&selected)
            .await
            .map_err(kube("list MultusConfigs"))?
            .items
            .into_iter()
            .map(|c| {
                let name = c.name_any();
                (name, c.status.map(|s| s.message).unwrap_or_default())
            })
            .collect();
        if left.is_empty() {
            writeln!(out, "every MultusConfig is gone: node files removed")?;
            return Ok(());
        }
        if left != last {
            for (name, message) in &left {
                writeln!(out, "  {name}: {message}")?;
            }
            last = left.clone();
        }
        if Instant::now() >= deadline {
            return Err(CliError::UninstallTimeout {
                seconds: args.timeout.as_secs(),
                left: left
                    .iter()
                    .map(|(n, m)| format!("{n} ({m})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_timeout;
    use std::time::Duration;

    #[test]
    fn timeouts_take_seconds_minutes_hours_or_a_bare_number() {
        assert_eq!(parse_timeout("360s"), Ok(Duration::from_secs(360)));
        assert_eq!(parse_timeout("360"), Ok(Duration::from_secs(360)));
        assert_eq!(parse_timeout("6m"), Ok(Duration::from_secs(360)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "6d", "-1s", "1.5m"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
