//! The Helm chart in tests: helm run offline (its homes in a temp dir), the documents it
//! renders, and waiting until the API server enforces rendered RBAC. The identities built
//! from them are in [`crate::identities`].

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::binaries::bin;
use crate::operator::eventually;
use crate::{ControlPlane, E2eError};

/// The chart's directory.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/multus-operator");

/// Kinds that make up the chart's identities and trust boundary.
pub const BOUNDARY_KINDS: &[&str] = &[
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// How long the API server may take to load new RBAC bindings or policies.
const LOAD_WAIT: Duration = Duration::from_secs(60);

/// helm with its cache, config and data homes in a temporary directory, so that it writes
/// nothing under $HOME, and no cluster unless a command gets one explicitly.
pub struct Helm {
    home: tempfile::TempDir,
}

impl Helm {
    pub fn new() -> Result<Helm, E2eError> {
        Ok(Helm {
            home: tempfile::tempdir().map_err(|e| E2eError::Io(format!("helm home: {e}")))?,
        })
    }

    /// Runs helm with `args`; `kubeconfig` gives it a cluster.
    pub fn run_with(
        &self,
        args: &[&str],
        kubeconfig: Option<&std::path::Path>,
    ) -> Result<Output, E2eError> {
        let home = self.home.path();
        Command::new(bin("helm")?)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env(
                "KUBECONFIG",
                kubeconfig.map_or_else(|| home.join("no-kubeconfig"), PathBuf::from),
            )
            .stdin(Stdio::null())
            .output()
            .map_err(|e| E2eError::Io(format!("run helm: {e}")))
    }

    /// Runs helm offline.
    pub fn run(&self, args: &[&str]) -> Result<Output, E2eError> {
        self.run_with(args, None)
    }

    /// `helm template <release> <chart> -n <namespace> <extra>`.
    pub fn template(
        &self,
        release: &str,
        namespace: &str,
        extra: &[&str],
    ) -> Result<String, E2eError> {
        let mut args = vec!["template", release, CHART, "--namespace", namespace];
        args.extend_from_slice(extra);
        let out = self.run(&args)?;
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(E2eError::Io(format!(
                "helm {args:?} failed:\n{}",
                text(&out.stderr)
            )))
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// kubectl with the admin kubeconfig, `input` on its stdin.
pub fn kubectl_with_input(
    cp: &ControlPlane,
    args: &[&str],
    input: &str,
) -> Result<Output, E2eError> {
    let io = |what: &'static str| move |e: std::io::Error| E2eError::Io(format!("{what}: {e}"));
    let mut child = Command::new(bin("kubectl")?)
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("run kubectl"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| E2eError::Io("kubectl has no stdin".into()))?;
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(io("kubectl output"))?;
    writer
        .join()
        .map_err(|_| E2eError::Io("stdin writer panicked".into()))?
        .map_err(io("write kubectl stdin"))?;
    Ok(out)
}

/// The rendered documents (those with nothing but comments dropped), as JSON values.
pub fn documents(rendered: &str) -> Result<Vec<Value>, E2eError> {
    let mut docs = vec![String::new()];
    for line in rendered.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|doc| {
            serde_saphyr::from_str(doc)
                .map_err(|e| E2eError::Io(format!("helm rendered invalid YAML: {e}")))
        })
        .collect()
}

pub fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

/// The documents of the given kinds, and the same as one YAML stream for kubectl.
pub fn only_kinds(rendered: &str, kinds: &[&str]) -> Result<(String, Vec<Value>), E2eError> {
    let docs: Vec<Value> = documents(rendered)?
        .into_iter()
        .filter(|doc| kinds.contains(&kind_of(doc)))
        .collect();
    let mut stream = Vec::new();
    for doc in &docs {
        stream.push(
            serde_saphyr::to_string(doc).map_err(|e| E2eError::Io(format!("serialise: {e}")))?,
        );
    }
    Ok((stream.join("---\n"), docs))
}

/// The chart's resource name prefix for a release (default values).
pub fn fullname(release: &str) -> String {
    format!("{release}-multus-operator")
}

/// Waits until the API server's authorizer has loaded every binding of `docs`: for each
/// ServiceAccount subject, the first rule of the bound role is allowed.
pub async fn wait_for_rbac(admin: &Client, ns: &str, docs: &[Value]) -> Result<(), E2eError> {
    let reviews = Api::<SubjectAccessReview>::all(admin.clone());
    for binding in docs
        .iter()
        .filter(|d| matches!(kind_of(d), "RoleBinding" | "ClusterRoleBinding"))
    {
        let binding_ns = binding["metadata"]["namespace"].as_str();
        let Some(role) = docs.iter().find(|d| {
            kind_of(d) == binding["roleRef"]["kind"]
                && d["metadata"]["name"] == binding["roleRef"]["name"]
        }) else {
            return Err(E2eError::Kube(format!(
                "binding {} has no rendered role",
                binding["metadata"]["name"]
            )));
        };
        let rule = &role["rules"][0];
        let resource = rule["resources"][0].as_str().unwrap_or_default();
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r.to_string(), Some(s.to_string())),
            None => (resource.to_string(), None),
        };
        for subject in binding["subjects"].as_array().into_iter().flatten() {
            let user = format!(
                "system:serviceaccount:{}:{}",
                subject["namespace"].as_str().unwrap_or(ns),
                subject["name"].as_str().unwrap_or_default()
            );
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: binding_ns.map(str::to_string),
                        verb: rule["verbs"][0].as_str().map(str::to_string),
                        group: rule["apiGroups"][0].as_str().map(str::to_string),
                        resource: Some(resource.clone()),
                        subresource: subresource.clone(),
                        name: rule["resourceNames"][0].as_str().map(str::to_string),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let what = format!(
                "{user} to be allowed the first rule of {}",
                binding["roleRef"]["name"]
            );
            eventually(&what, LOAD_WAIT, || async {
                let answer = reviews
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| e.to_string())?;
                match answer.status {
                    Some(s) if s.allowed => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
    }
    Ok(())
}
