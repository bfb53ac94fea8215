//! What the chart tests on a real node share: one node per test binary (taken in turn, since
//! every test changes its CNI files). Releases and the kubectl helpers are
//! `multus_e2e::release`'s.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use multus_e2e::node::{NodeOptions, RealNode};
use multus_e2e::process::MARKER;
pub use multus_e2e::release::{
    CONVERGE, HELM_TIMEOUT, POD_RUNNING, Release, apply, attachments_label, kubectl, wait_for,
};
use multus_e2e::{ControlPlane, oci, unique_name};

/// The node every test of this binary uses, and what the first start cost.
pub struct Env {
    pub cp: &'static ControlPlane,
    pub node: RealNode,
    /// The image archives, imported again into a replacement node.
    pub images: Vec<PathBuf>,
    _image_dir: tempfile::TempDir,
    /// Writing the image archives (the musl builds included) in this process.
    pub image_build: Duration,
    /// The first `helm install` to Ready of this process.
    pub cold_install: Option<Duration>,
}

static ENV: Mutex<Option<Env>> = Mutex::new(None);

/// The shared node, started on first use, held by the calling test until the guard drops.
pub fn env() -> MutexGuard<'static, Option<Env>> {
    let mut guard = ENV.lock().unwrap_or_else(PoisonError::into_inner);
    if guard.is_none() {
        let cp = ControlPlane::shared_for_real_nodes();
        let began = Instant::now();
        // Named like every state directory (`multus-e2e-<pid>-`): the static holding it is
        // never dropped, and the last test binary removes it.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{MARKER}{}-images-", std::process::id()))
            .tempdir()
            .expect("image dir");
        let images: Vec<PathBuf> = oci::images::all(dir.path())
            .expect("images")
            .into_iter()
            .filter(|i| i.reference != oci::images::PAUSE)
            .map(|i| i.path)
            .collect();
        let image_build = began.elapsed();
        let node = start_node(cp, &images);
        *guard = Some(Env {
            cp,
            node,
            images,
            _image_dir: dir,
            image_build,
            cold_install: None,
        });
    }
    guard
}

pub fn start_node(cp: &ControlPlane, images: &[PathBuf]) -> RealNode {
    let options = NodeOptions {
        images: images.to_vec(),
        ..NodeOptions::default()
    };
    RealNode::start(cp, &unique_name("rnc"), &options).expect("node start")
}
