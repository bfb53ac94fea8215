//! Where the upstream binaries are: built on first use by `e2e/testenv/build.sh`, which
//! caches them by the hash of its go.mod/go.sum files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::E2eError;

/// Set to a directory holding the binaries to skip the build entirely.
pub const BIN_DIR_ENV: &str = "MULTUS_E2E_BIN_DIR";

/// The directory holding kube-apiserver, etcd, multus, `cni/` and the rest. Builds them the
/// first time (progress on stderr; several minutes on a cold machine).
pub fn bin_dir() -> Result<&'static Path, E2eError> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| locate().map_err(|e| e.to_string()))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| E2eError::Binaries(e.clone()))
}

/// Path of one binary.
pub fn bin(name: &str) -> Result<PathBuf, E2eError> {
    let path = bin_dir()?.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(E2eError::Binaries(format!("{} is missing", path.display())))
    }
}

fn locate() -> Result<PathBuf, E2eError> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testenv/build.sh");
    eprintln!(
        "[multus-e2e] locating upstream binaries with {} (the first run builds them from the Go module proxy and takes several minutes)",
        script.display()
    );
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| E2eError::Binaries(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(E2eError::Binaries(format!(
            "{} failed ({}); see its output above",
            script.display(),
            out.status
        )));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err(E2eError::Binaries("build.sh printed no directory".into()));
    }
    Ok(PathBuf::from(dir))
}
