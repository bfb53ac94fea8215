//! Host paths under `--host-root`: absolute, no `..`, and no symlink anywhere on the way,
//! so a file planted in a target directory cannot redirect a write.

use std::path::{Component, Path, PathBuf};

/// A host path that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{0} is not an absolute path")]
    NotAbsolute(String),
    #[error("{0} contains '..' or other non-normal components")]
    NotNormal(String),
    #[error("{path} goes through a symlink at {link}; refusing to follow it")]
    Symlink { path: String, link: PathBuf },
    #[error("cannot inspect {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The host root every host path is resolved under.
#[derive(Clone, Debug)]
pub struct HostRoot(PathBuf);

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Joins a host path (`/etc/cni/net.d/x`) under the root, refusing relative paths,
    /// `..`, and symlinks on any existing component below the root.
    pub fn resolve(&self, host_path: &str) -> Result<PathBuf, PathError> {
        let path = Path::new(host_path);
        if !path.is_absolute() {
            return Err(PathError::NotAbsolute(host_path.into()));
        }
        let mut out = self.0.clone();
        for component in path.components() {
            match component {
                Component::RootDir => {}
                Component::Normal(part) => {
                    out.push(part);
                    match std::fs::symlink_metadata(&out) {
                        Ok(meta) if meta.file_type().is_symlink() => {
                            return Err(PathError::Symlink {
                                path: host_path.into(),
                                link: out,
                            });
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(PathError::Io { path: out, source }),
                    }
                }
                _ => return Err(PathError::NotNormal(host_path.into())),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_root_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        assert_eq!(
            root.resolve("/etc/cni/net.d/00-multus.conf").unwrap(),
            dir.path().join("etc/cni/net.d/00-multus.conf")
        );
        assert!(matches!(
            root.resolve("etc/x"),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            root.resolve("/etc/../x"),
            Err(PathError::NotNormal(_))
        ));
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/cni")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("elsewhere"),
            dir.path().join("etc/cni/net.d"),
        )
        .unwrap();
        let root = HostRoot::new(dir.path());
        assert!(matches!(
            root.resolve("/etc/cni/net.d/00-multus.conf"),
            Err(PathError::Symlink { .. })
        ));
    }
}
