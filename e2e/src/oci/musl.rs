//! The workspace binaries as the images ship them: static musl builds with the profile each
//! image uses (`release` for the operator, `agent` for the node agent), built the way
//! `images/Dockerfile` builds them (musl-gcc for ring's C parts), once per test process;
//! cargo's incremental build makes later runs cheap.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::E2eError;
use crate::binaries_local::{SHIPPED, cargo_build, profile_dir, shipped};

/// The musl target for the host's architecture, as the Dockerfile picks it.
pub fn musl_target() -> Result<String, E2eError> {
    match std::env::consts::ARCH {
        arch @ ("x86_64" | "aarch64") => Ok(format!("{arch}-unknown-linux-musl")),
        other => Err(E2eError::Binaries(format!(
            "no musl target known for {other}"
        ))),
    }
}

/// Path of `bin` (`multus-operator` or `multus-node-agent`) as its image ships it: a static
/// musl build with its shipped profile ("release" here means "the build that is released",
/// which for the node agent is the `agent` profile), checked to be statically linked. The
/// first call builds both.
pub fn musl_release_bin(bin: &str) -> Result<PathBuf, E2eError> {
    let wanted = shipped(bin)?;
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    let target = BUILT
        .get_or_init(|| build().map_err(|e| e.to_string()))
        .clone()
        .map_err(E2eError::Binaries)?;
    let path = profile_dir(Some(&target), wanted.profile).join(bin);
    check_static(&path)?;
    Ok(path)
}

/// Builds every shipped binary for the musl target, one cargo run per binary since their
/// profiles differ; returns the target.
fn build() -> Result<String, E2eError> {
    let target = musl_target()?;
    eprintln!("[multus-e2e] building static {target} binaries for the images (minutes when cold)");
    let cc = format!("CC_{}", target.replace('-', "_"));
    for shipped in SHIPPED {
        let args = [
            "--locked",
            "--target",
            &target,
            "--profile",
            shipped.profile,
            "-p",
            shipped.package,
            "--bin",
            shipped.bin,
        ];
        cargo_build(&args, &[(&cc, "musl-gcc")]).map_err(|e| {
            E2eError::Binaries(format!(
                "{e}; needs `rustup target add {target}` and musl-gcc (Debian: musl-tools)"
            ))
        })?;
    }
    Ok(target)
}

/// Fails unless `path` is an ELF file without shared-library dependencies (no NEEDED entry
/// in `readelf -d`, as the Dockerfile checks): the images carry no libc.
pub fn check_static(path: &Path) -> Result<(), E2eError> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| E2eError::Binaries(format!("cannot run readelf (binutils): {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    // readelf exits 0 for a static ELF without a dynamic section; an error means no ELF.
    if !out.status.success() || err.contains("Not an ELF") {
        return Err(E2eError::Binaries(format!(
            "{} is not an ELF file readelf can read: {}",
            path.display(),
            err.trim()
        )));
    }
    let needed: Vec<&str> = text.lines().filter(|l| l.contains("(NEEDED)")).collect();
    if needed.is_empty() {
        Ok(())
    } else {
        Err(E2eError::Binaries(format!(
            "{} is dynamically linked: {}",
            path.display(),
            needed.join("; ")
        )))
    }
}
