//! The Helm chart installed on a real node ([`crate::node::RealNode`]) with the real helm and
//! the test images, for the tests and benches that run it there: [`Release`] installs a
//! release in its own namespace and uninstalls it when dropped, and the kubectl helpers
//! around it run as the cluster admin, to set scenarios up and to watch them. Everything
//! here panics with the command's output on failure: its callers are tests and benches.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::chart::{CHART, Helm, kubectl_with_input, text};
use crate::node::RealNode;
use crate::process::expect_success;
use crate::{ControlPlane, oci, unique_name};

/// From creation to Running for a test pod: scheduling, two or three CNI ADDs through
/// Multus, the projected token and the container; about 2 s on an idle 2-core VM, far more
/// when a build or another test binary shares the cores.
pub const POD_RUNNING: Duration = Duration::from_secs(180);
/// `helm install --wait` and `helm upgrade --wait` up to Ready workloads: image unpacking,
/// the init container, probes (readiness every 10 s) and the operator's first reconcile;
/// under 30 s idle, bounded by helm's own timeout here.
pub const HELM_TIMEOUT: &str = "10m";
/// What the operator and the agents do after a change (a NAD, a MultusConfig): about a
/// second idle, 60 s as everywhere in this suite (README, "Run the tests"), doubled for a
/// real node whose agent also competes with the kubelet and containerd.
pub const CONVERGE: Duration = Duration::from_secs(120);

/// Polls `check` every second (each poll runs kubectl, which costs CPU) until it returns
/// `Ok`, or panics after `timeout` with the last observation.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// kubectl as the cluster admin; panics when it fails.
pub fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl(args).expect("run kubectl");
    expect_success(&out, &format!("kubectl {args:?}"))
}

/// kubectl applying `doc`.
pub fn apply(cp: &ControlPlane, doc: &Value) {
    let out = kubectl_with_input(cp, &["apply", "-f", "-"], &doc.to_string()).expect("kubectl");
    expect_success(&out, &format!("kubectl apply {doc}"));
}

/// An installed release of the chart in its own namespace, with its own MultusConfig (named
/// like the release) selecting NADs of namespaces labelled for it. Dropping it uninstalls.
pub struct Release {
    pub cp: &'static ControlPlane,
    helm: Helm,
    pub name: String,
    pub ns: String,
    values: tempfile::NamedTempFile,
    installed: bool,
    /// The node's Multus directories, emptied after a failed test.
    node_dirs: Vec<PathBuf>,
}

/// The label that makes a namespace's NADs attachments of `release`'s MultusConfig.
pub fn attachments_label(release: &str) -> (String, String) {
    ("multus-e2e/attachments".into(), release.into())
}

impl Release {
    /// `helm install --wait` in a new privileged namespace (`sets`: more `--set` values),
    /// then `kubectl wait` until the MultusConfig is Ready; returns the release and the time
    /// both took.
    pub fn install(
        cp: &'static ControlPlane,
        node: &RealNode,
        mode: &'static str,
        sets: &[&str],
    ) -> (Release, Duration) {
        let name = unique_name(&format!("rnc-{mode}"));
        let ns = name.clone();
        let (host, port) = cp.api_host_port();
        let image = |reference: &str| {
            let (repository, tag) = reference.rsplit_once(':').expect("tagged reference");
            json!({ "repository": repository, "tag": tag, "pullPolicy": "Never" })
        };
        let (key, value) = attachments_label(&name);
        let values = json!({
            "mode": mode,
            "apiServer": { "host": host, "port": port },
            "operator": { "image": image(oci::images::OPERATOR) },
            "agent": { "image": image(oci::images::NODE_AGENT) },
            "multus": { "image": image(oci::images::MULTUS) },
            // The control plane has both CRDs already (it installs them at start); Helm
            // refuses to adopt an object another manager made.
            "networkAttachmentDefinitionCrd": { "install": false },
            "defaultConfig": {
                "enabled": true,
                "name": name,
                "spec": {
                    "primary": { "auto": {} },
                    // Multus' and multus-daemon's log in the container logs, for failures.
                    "multus": { "logLevel": "verbose", "logToStderr": true },
                    "attachments": {
                        "namespaceSelector": { "matchLabels": { key: value } },
                    },
                },
            },
        });
        let file = tempfile::NamedTempFile::new().expect("values file");
        std::fs::write(file.path(), values.to_string()).expect("write values");
        kubectl(cp, &["create", "namespace", &ns]);
        kubectl(
            cp,
            &[
                "label",
                "namespace",
                &ns,
                "pod-security.kubernetes.io/enforce=privileged",
            ],
        );
        let mut release = Release {
            cp,
            helm: Helm::new().expect("helm"),
            name,
            ns,
            values: file,
            installed: false,
            node_dirs: [
                "/etc/cni/net.d/multus.d",
                "/etc/cni/multus/net.d",
                "/var/lib/multus-node-agent",
            ]
            .iter()
            .map(|d| node.host_path(d).expect("host path"))
            .collect(),
        };
        let began = Instant::now();
        let values_path = release.values.path().display().to_string();
        let mut args = vec![
            "install",
            &release.name,
            CHART,
            "--namespace",
            &release.ns,
            "--values",
            &values_path,
            "--wait",
            "--timeout",
            HELM_TIMEOUT,
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        release.helm(&args);
        release.installed = true;
        release.wait_rolled_out();
        release.wait_ready();
        (release, began.elapsed())
    }

    /// Every pod of the operator Deployment and the node DaemonSet updated and Ready. Not
    /// `kubectl rollout status` nor `helm --wait`: both accept a DaemonSet whose controller
    /// has not counted the node yet (0 of 0 desired), and helm also one with
    /// `maxUnavailable` pods not Ready, here all of them.
    pub fn wait_rolled_out(&self) {
        let prefix = format!("{}-multus-operator", self.name);
        let status = "jsonpath={.metadata.generation} {.status.observedGeneration} \
                      {.status.replicas}{.status.desiredNumberScheduled} \
                      {.status.updatedReplicas}{.status.updatedNumberScheduled} \
                      {.status.readyReplicas}{.status.numberReady}";
        for object in [
            format!("deploy/{prefix}-operator"),
            format!("ds/{prefix}-node"),
        ] {
            // The agent's readiness probe runs every 10 s; old pods stop within their grace
            // period (30 s).
            wait_for(&format!("{object} to roll out"), CONVERGE, || {
                let out = self
                    .cp
                    .kubectl(&["get", "-n", &self.ns, &object, "-o", status])
                    .map_err(|e| e.to_string())?;
                let shown = text(&out.stdout);
                let fields: Vec<&str> = shown.split_whitespace().collect();
                match fields[..] {
                    [generation, observed, desired, updated, ready]
                        if generation == observed
                            && desired != "0"
                            && updated == desired
                            && ready == desired =>
                    {
                        Ok(())
                    }
                    _ => Err(format!("{shown} {}", text(&out.stderr))),
                }
            });
        }
    }

    /// Runs helm against the cluster; panics with its output and the release's pods when
    /// it fails.
    pub fn helm(&self, args: &[&str]) -> String {
        let out = self
            .helm
            .run_with(args, Some(&self.cp.kubeconfig))
            .expect("run helm");
        if !out.status.success() {
            panic!(
                "helm {args:?} failed: {}{}\n{}",
                text(&out.stdout),
                text(&out.stderr),
                self.diagnostics()
            );
        }
        text(&out.stdout)
    }

    /// `kubectl wait --for=condition=Ready mcfg/<name>`, as a cluster admin would.
    pub fn wait_ready(&self) {
        let mcfg = format!("mcfg/{}", self.name);
        // kubectl's own deadline: the operator and the agent converge in about a second.
        let timeout = format!("--timeout={}s", CONVERGE.as_secs());
        let out = self
            .cp
            .kubectl(&["wait", "--for=condition=Ready", &mcfg, &timeout])
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl wait {mcfg}: {}\n{}",
            text(&out.stderr),
            self.diagnostics()
        );
    }

    /// The pods of the release and their logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let cp = self.cp;
        let mut report = String::new();
        // The node pods' logs, of the running containers and of the ones before them.
        let node_logs = |previous: &'static str| {
            let ns: &str = &self.ns;
            [
                "logs",
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/component=node",
                "--all-containers",
                previous,
                "--tail=40",
            ]
        };
        let (current, previous) = (node_logs("--previous=false"), node_logs("--previous"));
        for args in [
            &["get", "pods,jobs,ds,deploy", "-n", &self.ns, "-o", "wide"][..],
            &["get", "mcfg", "-o", "yaml"],
            &["describe", "pods", "-n", &self.ns],
            &current,
            &previous,
            &[
                "logs",
                "-n",
                &self.ns,
                "-l",
                "app.kubernetes.io/component=operator",
                "--tail=40",
            ],
        ] {
            if let Ok(out) = cp.kubectl(args) {
                report.push_str(&format!(
                    "--- kubectl {}\n{}{}\n",
                    args.join(" "),
                    text(&out.stdout),
                    text(&out.stderr)
                ));
            }
        }
        report
    }

    /// The node pod of this release.
    pub fn node_pod(&self) -> String {
        kubectl(
            self.cp,
            &[
                "get",
                "pods",
                "-n",
                &self.ns,
                "-l",
                "app.kubernetes.io/component=node",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        )
    }

    /// `helm uninstall --wait` (the pre-delete Job removes the node files first), then the
    /// namespace.
    pub fn uninstall(&mut self) {
        if std::mem::take(&mut self.installed) {
            self.helm(&[
                "uninstall",
                &self.name,
                "--namespace",
                &self.ns,
                "--wait",
                "--timeout",
                HELM_TIMEOUT,
            ]);
        }
        let _ = self
            .cp
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
            // Without the pre-delete Job, whose pod may need the very Multus that failed,
            // and without the node files, so that the next test finds the node clean.
            let _ = self.helm.run_with(
                &[
                    "uninstall",
                    &self.name,
                    "-n",
                    &self.ns,
                    "--no-hooks",
                    "--wait",
                ],
                Some(&self.cp.kubeconfig),
            );
            self.installed = false;
            // Their contents only: /var/lib/multus-node-agent is a mount point on the node.
            for entry in self
                .node_dirs
                .iter()
                .flat_map(std::fs::read_dir)
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir_all(entry.path())
                    .or_else(|_| std::fs::remove_file(entry.path()));
            }
            if let Some(conf_dir) = self.node_dirs.first().and_then(|d| d.parent()) {
                for name in ["00-multus.conf", "00-multus.conflist"] {
                    let _ = std::fs::remove_file(conf_dir.join(name));
                }
            }
        }
        self.uninstall();
    }
}
