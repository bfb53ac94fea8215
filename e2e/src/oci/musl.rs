//! The workspace binaries as the images ship them: static musl release builds, built the
//! way `images/Dockerfile` builds them (musl-gcc for ring's C parts), once per test
//! process; cargo's incremental build makes later runs cheap.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::E2eError;

/// The binaries built for the images.
const BINS: [(&str, &str); 2] = [
    ("multus-operator", "multus-operator"),
    ("multus-node-agent", "multus-node-agent"),
];

/// The musl target for the host's architecture, as the Dockerfile picks it.
pub fn musl_target() -> Result<String, E2eError> {
    match std::env::consts::ARCH {
        arch @ ("x86_64" | "aarch64") => Ok(format!("{arch}-unknown-linux-musl")),
        other => Err(E2eError::Binaries(format!(
            "no musl target known for {other}"
        ))),
    }
}

/// Path of a static musl release build of `bin` (`multus-operator` or `multus-node-agent`),
/// checked to be statically linked. The first call builds both.
pub fn musl_release_bin(bin: &str) -> Result<PathBuf, E2eError> {
    if !BINS.iter().any(|(_, b)| *b == bin) {
        return Err(E2eError::Binaries(format!(
            "{bin} is not one of the image binaries"
        )));
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| build().map_err(|e| e.to_string()))
        .clone()
        .map_err(E2eError::Binaries)?;
    let path = dir.join(bin);
    check_static(&path)?;
    Ok(path)
}

fn build() -> Result<PathBuf, E2eError> {
    let target = musl_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-q", "--release", "--locked", "--target", &target]);
    for (package, bin) in BINS {
        cmd.args(["-p", package, "--bin", bin]);
    }
    eprintln!(
        "[multus-e2e] building static {target} release binaries for the images (minutes when cold)"
    );
    let status = cmd
        .env(format!("CC_{}", target.replace('-', "_")), "musl-gcc")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| E2eError::Binaries(format!("cannot run {cargo}: {e}")))?;
    if !status.success() {
        return Err(E2eError::Binaries(format!(
            "cargo build --release --target {target} failed ({status}); needs `rustup target add {target}` and musl-gcc (Debian: musl-tools)"
        )));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target_dir.join(target).join("release"))
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
