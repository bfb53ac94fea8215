//! OCI images as image-layout tar archives that `ctr images import` takes, written without a
//! container engine: layers from host files, directories and symlinks, an image config, and
//! an index that names the image. [`images`] builds the images the real-node tests run.
//!
//! Output is deterministic: entries are sorted, every mtime is the epoch and owners are
//! numeric, so the same inputs give the same digests.

pub mod images;
mod layout;
pub mod musl;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::E2eError;

pub use layout::write_archive;

/// The containerd namespace the CRI plugin (and so the kubelet) sees images in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// An image to write: its full reference, config and layers (bottom first).
#[derive(Debug, Clone)]
pub struct Image {
    /// Full reference with a tag, such as `localhost/multus-e2e/pause:test`; containerd
    /// stores the image under exactly this name.
    pub reference: String,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
}

/// The runtime part of the image config (the `config` object of the OCI image config).
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// `uid`, `uid:gid` or a name from the image's /etc/passwd; `None`: root.
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A written archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    /// The name containerd gives the image on import.
    pub reference: String,
    pub path: PathBuf,
    /// `sha256:<hex>` of the manifest (the DIGEST column of `ctr images ls`).
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config: the image ID the CRI reports.
    pub config_digest: String,
    /// Size of the archive in bytes.
    pub size: u64,
}

/// One layer: paths inside the image (absolute or relative to `/`, the same) and what they
/// hold. Missing parent directories are added as root-owned 0755 directories.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    Dir(Meta),
    File { meta: Meta, source: Source },
    Symlink { target: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
}

impl Meta {
    fn root(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

#[derive(Debug, Clone)]
enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    /// A root-owned directory.
    pub fn dir(self, path: &str, mode: u32) -> Layer {
        self.dir_owned(path, mode, 0, 0)
    }

    /// A directory owned by `uid:gid`.
    pub fn dir_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Layer {
        self.entries
            .insert(key(path), Entry::Dir(Meta { mode, uid, gid }));
        self
    }

    /// A root-owned copy of the host file `host`, read when the archive is written.
    pub fn file(mut self, path: &str, host: &Path, mode: u32) -> Layer {
        let entry = Entry::File {
            meta: Meta::root(mode),
            source: Source::Host(host.to_path_buf()),
        };
        self.entries.insert(key(path), entry);
        self
    }

    /// A root-owned file holding `contents`.
    pub fn contents(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Layer {
        let entry = Entry::File {
            meta: Meta::root(mode),
            source: Source::Bytes(contents.into()),
        };
        self.entries.insert(key(path), entry);
        self
    }

    /// A symbolic link to `target` (kept as given, absolute or relative).
    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        let entry = Entry::Symlink {
            target: target.to_string(),
        };
        self.entries.insert(key(path), entry);
        self
    }
}

/// Paths are stored relative to the image root; validation happens when writing.
fn key(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// The OCI name of the host's architecture: images hold host binaries.
pub fn host_architecture() -> Result<&'static str, E2eError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => Err(E2eError::Io(format!(
            "no OCI architecture name known for {other}"
        ))),
    }
}

/// Imports `archive` into the [`CRI_NAMESPACE`] of the containerd at `containerd_socket`.
/// `ctr images import` unpacks it for ctr's default snapshotter (overlayfs, the CRI
/// plugin's default too), so the kubelet can start containers from it without a pull.
pub fn import(ctr: &Path, containerd_socket: &Path, archive: &Path) -> Result<(), E2eError> {
    let out = Command::new(ctr)
        .arg("--address")
        .arg(containerd_socket)
        .args(["--namespace", CRI_NAMESPACE, "images", "import"])
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| E2eError::Io(format!("cannot run {}: {e}", ctr.display())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(E2eError::Io(format!(
        "ctr images import {} ({}) failed: {}\nstderr: {}\nstdout: {}",
        archive.display(),
        containerd_socket.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )))
}
