//! This workspace's own binaries, built on demand for tests and benchmarks that run them as
//! processes: debug builds, or the builds that ship.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::E2eError;

/// A binary that ships in an image, with the cargo profile its image is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shipped {
    pub package: &'static str,
    pub bin: &'static str,
    /// `release`, or the binary's own profile from the root Cargo.toml.
    pub profile: &'static str,
}

/// The binaries `images/Dockerfile` builds, as it builds them. The node agent has its own
/// profile, `agent`: smaller code, and so less resident memory on every node, for a longer
/// build (the root Cargo.toml gives the figures). The operator ships from `release`.
pub const SHIPPED: [Shipped; 2] = [
    Shipped {
        package: "multus-operator",
        bin: "multus-operator",
        profile: "release",
    },
    Shipped {
        package: "multus-node-agent",
        bin: "multus-node-agent",
        profile: "agent",
    },
];

/// The shipped binary called `bin`.
pub fn shipped(bin: &str) -> Result<Shipped, E2eError> {
    shipped_at(bin).map(|(_, s)| s)
}

/// The shipped binary called `bin` and its place in [`SHIPPED`].
fn shipped_at(bin: &str) -> Result<(usize, Shipped), E2eError> {
    SHIPPED
        .iter()
        .copied()
        .enumerate()
        .find(|(_, s)| s.bin == bin)
        .ok_or_else(|| E2eError::Binaries(format!("{bin} is not one of the shipped binaries")))
}

/// The directory cargo writes a `profile` build to, under the target's triple when
/// `target` is given (`dev` builds go to `debug`, other profiles to their own name).
pub fn profile_dir(target: Option<&str>, profile: &str) -> PathBuf {
    let mut dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    if let Some(target) = target {
        dir.push(target);
    }
    dir.push(if profile == "dev" { "debug" } else { profile });
    dir
}

/// Path of a debug binary of this workspace (`multus-operator`, `multus-node-agent`), built
/// first with the cargo running the tests.
pub fn workspace_bin(bin: &str) -> Result<PathBuf, E2eError> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let args = ["-p", "multus-operator", "-p", "multus-node-agent", "--bins"];
    build_once(&BUILT, &args)?;
    existing(profile_dir(None, "dev").join(bin))
}

/// Path of `bin` built as it ships (its profile in [`SHIPPED`]: `agent` for the node agent,
/// `release` for the operator), for this host rather than musl, so that benchmarks measure
/// the code that ships. `MULTUS_E2E_WORKSPACE_BINS`, when set, names a directory whose
/// binaries are used instead, unbuilt (to measure another build, such as an earlier
/// release, with the same benchmark).
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
    static BUILT: [OnceLock<Result<(), String>>; SHIPPED.len()] =
        [const { OnceLock::new() }; SHIPPED.len()];
    let (index, wanted) = shipped_at(bin)?;
    let args = [
        "--profile",
        wanted.profile,
        "-p",
        wanted.package,
        "--bin",
        wanted.bin,
    ];
    build_once(&BUILT[index], &args)?;
    existing(profile_dir(None, wanted.profile).join(bin))
}

/// Runs [`cargo_build`] the first time `built` is asked, and gives its outcome every time.
fn build_once(built: &OnceLock<Result<(), String>>, args: &[&str]) -> Result<(), E2eError> {
    built
        .get_or_init(|| cargo_build(args, &[]))
        .clone()
        .map_err(E2eError::Binaries)
}

/// `cargo build -q <args>` in this workspace, with the cargo running the tests and `env`
/// added to its environment.
pub(crate) fn cargo_build(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "-q"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build {} failed: {status}", args.join(" ")))
    }
}

fn existing(path: PathBuf) -> Result<PathBuf, E2eError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(E2eError::Binaries(format!(
            "{} was not built",
            path.display()
        )))
    }
}
