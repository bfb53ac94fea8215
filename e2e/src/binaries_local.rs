//! This workspace's own binaries, built on demand for tests that run them as processes.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::E2eError;

/// Path of a debug binary of this workspace (`multus-operator`, `multus-node-agent`), built
/// first with the cargo running the tests.
pub fn workspace_bin(bin: &str) -> Result<PathBuf, E2eError> {
    built_bin(bin, false)
}

/// Like [`workspace_bin`], optimized (for benchmarks). `MULTUS_E2E_WORKSPACE_BINS`, when
/// set, names a directory whose binaries are used instead, unbuilt (to measure another
/// build, such as an earlier release, with the same benchmark).
pub fn workspace_release_bin(bin: &str) -> Result<PathBuf, E2eError> {
    if let Some(dir) = std::env::var_os("MULTUS_E2E_WORKSPACE_BINS") {
        let path = PathBuf::from(dir).join(bin);
        return if path.exists() {
            Ok(path)
        } else {
            Err(E2eError::Binaries(format!(
                "{} does not exist (MULTUS_E2E_WORKSPACE_BINS)",
                path.display()
            )))
        };
    }
    built_bin(bin, true)
}

fn built_bin(bin: &str, release: bool) -> Result<PathBuf, E2eError> {
    static DEBUG: OnceLock<Result<(), String>> = OnceLock::new();
    static RELEASE: OnceLock<Result<(), String>> = OnceLock::new();
    let once = if release { &RELEASE } else { &DEBUG };
    let built = once.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut args = vec![
            "build",
            "-q",
            "-p",
            "multus-operator",
            "-p",
            "multus-node-agent",
            "--bins",
        ];
        if release {
            args.push("--release");
        }
        let status = Command::new(cargo)
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "cargo build of the workspace binaries failed: {status}"
            ))
        }
    });
    built.clone().map_err(E2eError::Binaries)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target
        .join(if release { "release" } else { "debug" })
        .join(bin);
    if path.exists() {
        Ok(path)
    } else {
        Err(E2eError::Binaries(format!(
            "{} was not built",
            path.display()
        )))
    }
}
