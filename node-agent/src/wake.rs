//! Which inotify events start a pass. Only changes that can alter what the agent owns or
//! reads count: a read (open, close without write) never does, so the agent's own reads of
//! its directories cannot wake it, and its own temp files are ignored.

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::fsops::is_temp_name;

/// What woke the agent loop; the label of `multus_node_agent_passes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A change on disk (inotify).
    Disk,
    /// The bundle ConfigMap changed (or appeared, or went).
    Bundle,
    /// The token is due for refresh or a retry.
    Token,
    /// The periodic full pass.
    Resync,
    /// A pass that failed on the disk (full, read-only) is retried with back-off.
    Retry,
}

impl Trigger {
    pub const ALL: [Trigger; 5] = [
        Trigger::Disk,
        Trigger::Bundle,
        Trigger::Token,
        Trigger::Resync,
        Trigger::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Disk => "disk",
            Trigger::Bundle => "bundle",
            Trigger::Token => "token",
            Trigger::Resync => "resync",
            Trigger::Retry => "retry",
        }
    }
}

/// The paths the last pass cared about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Watched directories: any CNI config file in them may be a primary candidate.
    pub dirs: BTreeSet<PathBuf>,
    /// Exact files (bundle targets, the kubeconfig, the readiness indicator file).
    pub files: BTreeSet<PathBuf>,
}

impl Interest {
    /// Whether an event of `kind` on `paths` can change what the next pass would do.
    /// A queue overflow (`Other`, with the rescan flag set by notify) always counts.
    pub fn wakes(&self, kind: &EventKind, paths: &[PathBuf], rescan: bool) -> bool {
        if rescan {
            return true;
        }
        let changes = matches!(
            kind,
            EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(_) | ModifyKind::Metadata(_))
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        changes && paths.iter().any(|p| self.cares_about(p))
    }

    /// Directories to watch: the CNI directories and the parent of every file of interest
    /// (the readiness indicator file may live elsewhere).
    pub fn watch_dirs(&self) -> BTreeSet<PathBuf> {
        let parents = self.files.iter().filter_map(|f| f.parent());
        self.dirs
            .iter()
            .cloned()
            .chain(parents.map(Path::to_path_buf))
            .collect()
    }

    /// Where to watch for `dir`: itself when it exists, else its nearest existing ancestor
    /// (whose events say when the missing part appears). `exists` is the file system probe.
    pub fn watch_point(dir: &Path, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        dir.ancestors().find(|d| exists(d)).map(Path::to_path_buf)
    }

    fn cares_about(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if is_temp_name(&name) {
            return false;
        }
        if self.files.contains(path) || self.dirs.contains(path) {
            return true;
        }
        // A missing directory on the way to a file of interest appeared (or went): the
        // agent must watch it now, so that the file's creation is seen as it happens.
        if self
            .files
            .iter()
            .chain(self.dirs.iter())
            .any(|f| f != path && f.starts_with(path))
        {
            return true;
        }
        let in_watched_dir = path.parent().is_some_and(|d| self.dirs.contains(d));
        in_watched_dir && is_cni_config_name(&name)
    }
}

/// The extensions libcni loads.
fn is_cni_config_name(name: &str) -> bool {
    [".conf", ".conflist", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    fn interest() -> Interest {
        Interest {
            dirs: ["/h/etc/cni/net.d", "/h/etc/cni/net.d/multus.d"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            files: [
                "/h/etc/cni/net.d/multus.d/multus.kubeconfig",
                "/h/run/ready",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
        }
    }

    #[test]
    fn reads_never_wake_the_agent_and_writes_do() {
        let i = interest();
        let conf = [PathBuf::from("/h/etc/cni/net.d/10-calico.conflist")];
        let ignored = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            // A write still in progress: its close, or the rename onto the target, follows.
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        ];
        let changes = [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ];
        for kind in ignored {
            assert!(!i.wakes(&kind, &conf, false), "{kind:?} on {conf:?}");
        }
        for kind in changes {
            assert!(i.wakes(&kind, &conf, false), "{kind:?} on {conf:?}");
        }
        // A watched directory itself: listing it is a read, removing it a change.
        let dir = [PathBuf::from("/h/etc/cni/net.d")];
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!i.wakes(&open, &dir, false));
        assert!(i.wakes(&EventKind::Remove(RemoveKind::Folder), &dir, false));
    }

    #[test]
    fn a_missing_directory_is_watched_through_its_nearest_ancestor() {
        let existing = ["/h", "/h/run"];
        let exists = |p: &Path| existing.iter().any(|e| Path::new(e) == p);
        assert_eq!(
            Interest::watch_point(Path::new("/h/run/calico"), exists),
            Some(PathBuf::from("/h/run"))
        );
        assert_eq!(
            Interest::watch_point(Path::new("/h/run"), exists),
            Some(PathBuf::from("/h/run"))
        );
        let mut i = interest();
        i.files.insert(PathBuf::from("/h/run/calico/ready"));
        let create = EventKind::Create(CreateKind::Folder);
        // The directory on the way to the readiness file appears.
        assert!(i.wakes(&create, &[PathBuf::from("/h/run/calico")], false));
        assert!(!i.wakes(&create, &[PathBuf::from("/h/run/cilium")], false));
    }

    #[test]
    fn only_paths_the_agent_cares_about_wake_it() {
        let i = interest();
        let create = EventKind::Create(CreateKind::File);
        let table = [
            ("/h/etc/cni/net.d/05-cilium.conf", true),
            ("/h/etc/cni/net.d/foo.json", true),
            ("/h/etc/cni/net.d/calico-kubeconfig", false),
            ("/h/etc/cni/net.d/.multus-agent-00-multus.conf.tmp", false),
            ("/h/etc/cni/net.d/multus.d/multus.kubeconfig", true),
            (
                "/h/etc/cni/net.d/multus.d/.multus-agent-multus.kubeconfig.tmp",
                false,
            ),
            ("/h/run/ready", true),
            ("/h/run/other", false),
            ("/h/tmp/x.conf", false),
        ];
        for (path, want) in table {
            assert_eq!(
                i.wakes(&create, &[PathBuf::from(path)], false),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn a_rename_from_a_temp_file_onto_a_target_wakes_once_by_its_target() {
        let i = interest();
        let kind = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let paths = vec![
            PathBuf::from("/h/etc/cni/net.d/.multus-agent-00-multus.conf.tmp"),
            PathBuf::from("/h/etc/cni/net.d/00-multus.conf"),
        ];
        assert!(i.wakes(&kind, &paths, false));
        assert!(!i.wakes(&kind, &paths[..1], false));
    }

    #[test]
    fn a_lost_event_queue_always_wakes_the_agent() {
        assert!(Interest::default().wakes(&EventKind::Other, &[], true));
        assert!(!Interest::default().wakes(&EventKind::Other, &[], false));
    }
}
