//! The trust boundary of a node: the agent runs as root with the host's CNI directories
//! mounted, so what it may write is fixed by its own command line (`--allowed-dir`, set by
//! the chart), never by the bundle. A bundle that names any other directory, a file name
//! that is a path, or a file mode wider than 0600 is refused before anything is planned.

use std::path::{Component, Path};

use multus_crds::bundle::{BundleManifest, PrimaryRule};

use crate::plan::Plan;

/// Directories used when no `--allowed-dir` is given: upstream Multus' defaults.
pub const DEFAULT_ALLOWED_DIRS: [&str; 2] = ["/etc/cni/net.d", "/etc/cni/multus/net.d"];

/// The widest file mode the agent writes: owner read and write (CIS asks for 0600).
pub const MAX_MODE: u32 = 0o600;

/// Why a bundle crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error(
        "refusing the bundle: {what} {path} is outside the directories this agent may write ({allowed}); widen --allowed-dir on the agent (the chart's paths values) or change the MultusConfig's paths"
    )]
    Outside {
        what: &'static str,
        path: String,
        allowed: String,
    },
    #[error("refusing the bundle: {what} {path:?} is not an absolute, normalised path")]
    NotNormal { what: &'static str, path: String },
    #[error("refusing the bundle: file name {name:?} in {dir} is not a plain file name")]
    BadName { dir: String, name: String },
    #[error("refusing the bundle: mode {mode:?} of {path} is not an octal mode within 0600")]
    Mode { path: String, mode: String },
}

/// Why a directory given on the command line (`--allowed-dir`, `--backup-dir`) cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    #[error("{0:?} is not an absolute, normalised path")]
    NotNormal(String),
    #[error(
        "{path} lies inside a directory this agent writes ({allowed}); choose one outside every CNI directory"
    )]
    Inside { path: String, allowed: String },
}

/// The directories this agent may write below (host paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedDirs(Vec<String>);

impl AllowedDirs {
    /// Normalises each directory (trailing slashes dropped); relative paths and `..` are
    /// refused, since they would make the boundary depend on the working directory.
    pub fn new<S: AsRef<str>>(dirs: &[S]) -> Result<Self, DirError> {
        let mut out = Vec::new();
        for dir in dirs {
            let dir = dir.as_ref();
            if !is_normal(dir) {
                return Err(DirError::NotNormal(dir.to_string()));
            }
            out.push(trimmed(dir).to_string());
        }
        Ok(Self(out))
    }

    /// Whether `path` is one of the directories or lies below one (by whole components).
    pub fn permits(&self, path: &str) -> bool {
        is_normal(path)
            && self
                .0
                .iter()
                .any(|d| Path::new(trimmed(path)).starts_with(Path::new(d)))
    }

    fn require(&self, what: &'static str, path: &str) -> Result<(), BoundsError> {
        if !is_normal(path) {
            return Err(BoundsError::NotNormal {
                what,
                path: path.to_string(),
            });
        }
        if self.permits(path) {
            Ok(())
        } else {
            Err(BoundsError::Outside {
                what,
                path: path.to_string(),
                allowed: self.0.join(", "),
            })
        }
    }

    /// Checks every place a bundle makes the agent write or read files.
    pub fn check_manifest(&self, manifest: &BundleManifest) -> Result<(), BoundsError> {
        for file in &manifest.files {
            self.require("directory", &file.dir)?;
            if !is_plain_name(&file.name) {
                return Err(BoundsError::BadName {
                    dir: file.dir.clone(),
                    name: file.name.clone(),
                });
            }
            let path = format!("{}/{}", trimmed(&file.dir), file.name);
            if file.mode.bits() & !MAX_MODE != 0 {
                return Err(BoundsError::Mode {
                    path,
                    mode: file.mode.to_string(),
                });
            }
        }
        if let Some(kubeconfig) = &manifest.kubeconfig {
            self.require("kubeconfig", &kubeconfig.path)?;
        }
        // The primary is read and embedded into the Multus config: it must come from a
        // directory the agent manages, not from anywhere on the host.
        match &manifest.primary {
            PrimaryRule::Auto { dir, .. } => self.require("primary directory", dir)?,
            PrimaryRule::File { dir, name } => {
                self.require("primary directory", dir)?;
                if !is_plain_name(name) {
                    return Err(BoundsError::BadName {
                        dir: dir.clone(),
                        name: name.clone(),
                    });
                }
            }
            PrimaryRule::NetworkAttachment { .. } => {}
        }
        Ok(())
    }

    /// Checks a plan's every write and removal (defence in depth: owned files recorded by
    /// an earlier run under other flags are not touched either).
    pub fn check_plan(&self, plan: &Plan) -> Result<(), BoundsError> {
        for step in &plan.steps {
            self.require("file", step.path())?;
        }
        Ok(())
    }

    /// The backup directory of taken-over files must lie outside every directory the agent
    /// writes: libcni would load a backed-up `00-multus.conf` from a CNI directory.
    pub fn check_backup_dir(&self, dir: &str) -> Result<(), DirError> {
        if !is_normal(dir) {
            return Err(DirError::NotNormal(dir.to_string()));
        }
        if self.permits(dir) {
            return Err(DirError::Inside {
                path: dir.to_string(),
                allowed: self.0.join(", "),
            });
        }
        Ok(())
    }
}

fn trimmed(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    }
}

/// Absolute, without `.`, `..` or empty components.
fn is_normal(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.split('/').any(|part| part == "." || part == "..")
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Step;
    use multus_crds::bundle::{BundleFile, FORMAT_VERSION, FileRole, KubeconfigSettings};
    use multus_crds::multus_config::{Mode, ServiceAccountRef};

    fn allowed() -> AllowedDirs {
        AllowedDirs::new(&DEFAULT_ALLOWED_DIRS).unwrap()
    }

    fn example() -> BundleManifest {
        BundleManifest {
            format_version: FORMAT_VERSION,
            multus_config: "default".into(),
            node: "n1".into(),
            mode: Mode::Thin,
            bundle_hash: String::new(),
            files: vec![],
            primary: PrimaryRule::Auto {
                dir: "/etc/cni/net.d".into(),
                exclude: vec![],
            },
            multus_path_prefix: String::new(),
            kubeconfig: Some(KubeconfigSettings {
                path: "/etc/cni/net.d/multus.d/multus.kubeconfig".into(),
                service_account: ServiceAccountRef {
                    namespace: "kube-system".into(),
                    name: "multus".into(),
                },
                expiration_seconds: 3600,
                refresh_before_expiry: multus_crds::contract::RefreshBefore::DEFAULT,
                audiences: vec![],
                server: None,
                certificate_authority: None,
            }),
            readiness_indicator_file: None,
        }
    }

    fn manifest(dir: &str, name: &str, mode: &str) -> BundleManifest {
        let mut m = example();
        m.files = vec![BundleFile {
            key: "a".into(),
            dir: dir.into(),
            name: name.into(),
            mode: mode.parse().unwrap(),
            sha256: String::new(),
            role: FileRole::Attachment,
            source: None,
        }];
        m
    }

    #[test]
    fn paths_inside_allowed_directories_pass_and_lookalikes_do_not() {
        let a = allowed();
        for (path, ok) in [
            ("/etc/cni/net.d", true),
            ("/etc/cni/net.d/", true),
            ("/etc/cni/net.d/00-multus.conf", true),
            ("/etc/cni/net.d/multus.d/multus.kubeconfig", true),
            ("/etc/cni/multus/net.d/a.conf", true),
            ("/etc/cni/net.d2/x.conf", false),
            ("/etc/cni/net.d/../../shadow", false),
            ("/etc/cni/net.d/./x", false),
            ("/etc/cni//net.d/x", false),
            ("etc/cni/net.d/x", false),
            ("/etc/passwd", false),
            ("/", false),
        ] {
            assert_eq!(a.permits(path), ok, "{path}");
        }
    }

    #[test]
    fn allowed_directories_must_be_absolute_and_normal() {
        assert!(AllowedDirs::new(&["relative/dir"]).is_err());
        assert!(AllowedDirs::new(&["/etc/cni/../x"]).is_err());
        assert_eq!(
            AllowedDirs::new(&["/etc/cni/net.d/"]).unwrap(),
            AllowedDirs::new(&["/etc/cni/net.d"]).unwrap()
        );
    }

    #[test]
    fn a_bundle_is_refused_for_any_file_outside_a_bad_name_or_a_wide_mode() {
        let a = allowed();
        let cases = [
            (manifest("/etc/cni/multus/net.d", "a.conf", "0600"), None),
            (manifest("/etc/cni/multus/net.d", "a.conf", "0400"), None),
            (
                manifest("/etc/systemd/system", "evil.service", "0600"),
                Some("outside"),
            ),
            (
                manifest("/etc/cni/net.d/../..", "x", "0600"),
                Some("not an absolute"),
            ),
            (
                manifest("/etc/cni/net.d", "../x", "0600"),
                Some("not a plain"),
            ),
            (manifest("/etc/cni/net.d", "", "0600"), Some("not a plain")),
            (
                manifest("/etc/cni/net.d", "a.conf", "0644"),
                Some("within 0600"),
            ),
            (
                manifest("/etc/cni/net.d", "a.conf", "4600"),
                Some("within 0600"),
            ),
            // A mode that is not octal text never gets this far: the manifest does not
            // decode (multus_crds::contract).
        ];
        for (m, want) in cases {
            let got = a.check_manifest(&m).err().map(|e| e.to_string());
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.contains(w) => {}
                _ => panic!("{:?}: got {got:?}, want {want:?}", m.files[0]),
            }
        }
    }

    #[test]
    fn the_kubeconfig_and_the_primary_directory_are_bounded_too() {
        let a = allowed();
        assert_eq!(a.check_manifest(&example()), Ok(()));
        let mut m = example();
        if let Some(k) = m.kubeconfig.as_mut() {
            k.path = "/root/.kube/config".into();
        }
        assert!(
            a.check_manifest(&m)
                .unwrap_err()
                .to_string()
                .contains("kubeconfig")
        );
        let mut m = example();
        m.primary = PrimaryRule::File {
            dir: "/etc".into(),
            name: "shadow".into(),
        };
        assert!(
            a.check_manifest(&m)
                .unwrap_err()
                .to_string()
                .contains("primary")
        );
    }

    #[test]
    fn a_plan_touching_a_path_outside_is_refused() {
        let a = allowed();
        let plan = Plan {
            steps: vec![Step::Remove {
                path: "/var/lib/kubelet/config.yaml".into(),
            }],
            state: multus_crds::bundle::AgentState::Removed,
            primary: None,
            message: None,
        };
        assert!(a.check_plan(&plan).is_err());
    }

    #[test]
    fn backups_must_lie_outside_every_allowed_directory() {
        let a = allowed();
        assert!(
            a.check_backup_dir("/var/lib/multus-node-agent/upstream-backup")
                .is_ok()
        );
        for inside in ["/etc/cni/net.d/backup", "/etc/cni/multus/net.d"] {
            assert!(
                matches!(a.check_backup_dir(inside), Err(DirError::Inside { .. })),
                "{inside}"
            );
        }
        assert!(matches!(
            a.check_backup_dir("var/lib/backup"),
            Err(DirError::NotNormal(_))
        ));
    }
}
