//! The e2e images in a real containerd (its own, thrown away at the end): every archive
//! imports under its reference and unpacked, busybox runs a shell command, the operator and
//! node agent print their usage, install_multus finds everything it copies, and pause
//! exits 0 on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use multus_e2e::oci::{self, CRI_NAMESPACE, images};
use multus_e2e::process::{MARKER, Supervised, expect_success, wait_until};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A containerd with its own root, state, socket and config under `dir`. Dropping it
/// removes its tasks, stops it, and removes `dir`.
struct TestContainerd {
    dir: PathBuf,
    socket: PathBuf,
    ctr: PathBuf,
    process: Option<Supervised>,
}

impl TestContainerd {
    fn start(dir: &Path) -> TestContainerd {
        let containerd = in_path("containerd");
        let ctr = in_path("ctr");
        for tool in ["runc", "containerd-shim-runc-v2"] {
            in_path(tool);
        }
        std::fs::create_dir_all(dir).expect("create the containerd dir");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        // No CRI plugin: this containerd only imports and runs images with ctr (the
        // kubelet's containerd is crate::node's). Runtime: io.containerd.runc.v2, the
        // default, with runc's cgroupfs driver.
        let toml = format!(
            "version = 2\n\
             root = \"{d}/root\"\n\
             state = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{s}\"\n\
             [ttrpc]\n  address = \"{s}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
            d = dir.display(),
            s = socket.display()
        );
        std::fs::write(&config, toml).expect("write containerd config");
        let process = Supervised::start(
            "containerd",
            &containerd,
            &["--config".into(), config.display().to_string()],
            &dir.join("containerd.log"),
        )
        .expect("start containerd");
        let mut running = TestContainerd {
            dir: dir.to_path_buf(),
            socket,
            ctr,
            process: Some(process),
        };
        let ready = wait_until(READY_TIMEOUT, || {
            let alive = running.process.as_mut().is_some_and(Supervised::running);
            !alive || running.ctr(&["version"]).status.success()
        });
        let log = running.process.as_ref().map(Supervised::log_tail);
        let alive = running.process.as_mut().is_some_and(Supervised::running);
        assert!(
            ready && alive,
            "containerd did not answer within {READY_TIMEOUT:?}; log:\n{}",
            log.unwrap_or_default()
        );
        running
    }

    /// `ctr --address <socket> --namespace k8s.io <args>`.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", CRI_NAMESPACE])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ctr")
    }

    /// `ctr run --rm <image> <id> <args>`, with the FIFOs, runc state and cgroups of the
    /// container under this containerd's own names instead of ctr's shared defaults
    /// (/run/containerd/fifo, /run/containerd/runc, /<namespace>).
    fn run(&self, image: &str, id: &str, args: &[&str]) -> Command {
        let fifo = self.dir.join("fifo");
        let runc = self.dir.join("runc");
        let cgroup = format!("{}/{id}", self.cgroup_parent());
        let mut cmd = self.command(&["run", "--rm"]);
        cmd.arg("--fifo-dir")
            .arg(fifo)
            .arg("--runc-root")
            .arg(runc)
            .args(["--cgroup", &cgroup, image, id])
            .args(args);
        cmd
    }

    /// Runs `args` in a new container of `image` and returns its stdout; fails the test
    /// unless it exits 0.
    fn run_ok(&self, image: &str, id: &str, args: &[&str]) -> String {
        let out = self.run(image, id, args).output().expect("ctr run");
        expect_success(&out, &format!("ctr run {image} {args:?}"))
    }

    /// The cgroup every container of this containerd goes under (named like the state
    /// directories, so a leftover shows whose it was).
    fn cgroup_parent(&self) -> String {
        format!("{MARKER}{}-oci", std::process::id())
    }

    /// Runs `args` to completion and returns its stdout; fails the test on a non-zero exit.
    fn ok(&self, args: &[&str]) -> String {
        expect_success(&self.ctr(args), &format!("ctr {args:?}"))
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        // Tasks left by a failed step: their shims would outlive containerd.
        let tasks = String::from_utf8_lossy(&self.ctr(&["tasks", "ls", "-q"]).stdout).into_owned();
        for id in tasks.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["tasks", "delete", "--force", id]);
        }
        let containers =
            String::from_utf8_lossy(&self.ctr(&["containers", "ls", "-q"]).stdout).into_owned();
        for id in containers.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["containers", "delete", id]);
        }
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
        // A rootfs still mounted (a task that could not be deleted) would make removal fail.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.reverse();
        for mount in mounts {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
        // The containers' cgroups are gone with them; their parent stays until removed (one
        // per controller on cgroup v1). rmdir only removes it when empty.
        let parent = self.cgroup_parent();
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&parent));
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for controller in controllers.flatten() {
                let _ = std::fs::remove_dir(controller.path().join(&parent));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Removes the test's directory when the test ends, whatever way.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where `tool` is on PATH; fails the test naming the Debian packages otherwise.
fn in_path(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} is not on PATH; install it with `apt-get install -y containerd runc`")
        })
}

#[multus_e2e::test]
fn every_image_imports_into_containerd_and_runs() {
    multus_e2e::process::remove_stale_state_dirs();
    let dir = std::env::temp_dir().join(format!("{MARKER}{}-oci", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let image_dir = dir.join("images");
    std::fs::create_dir_all(&image_dir).unwrap();
    // Declared before the containerd guard, so dropped after it.
    let _remove = RemoveOnDrop(dir.clone());

    let started = Instant::now();
    let archives = images::all(&image_dir).expect("write the images");
    eprintln!("wrote {} images in {:?}", archives.len(), started.elapsed());
    for a in &archives {
        eprintln!("  {} {} bytes {}", a.reference, a.size, a.manifest_digest);
    }

    let containerd = TestContainerd::start(&dir.join("containerd"));
    for a in &archives {
        let started = Instant::now();
        oci::import(&containerd.ctr, &containerd.socket, &a.path).expect("import");
        eprintln!("imported {} in {:?}", a.reference, started.elapsed());
    }
    let listed = containerd.ok(&["images", "ls", "-q"]);
    let checked = containerd.ok(&["images", "check"]);
    for a in &archives {
        assert!(
            listed.lines().any(|l| l.trim() == a.reference),
            "{} not in `ctr images ls`:\n{listed}",
            a.reference
        );
        // REF TYPE DIGEST STATUS SIZE UNPACKED: complete and unpacked for the snapshotter.
        let line = checked
            .lines()
            .find(|l| l.starts_with(&format!("{} ", a.reference)))
            .unwrap_or_else(|| panic!("{} not in `ctr images check`:\n{checked}", a.reference));
        assert!(line.contains("complete"), "{line}");
        assert!(line.trim_end().ends_with("true"), "not unpacked: {line}");
    }

    let hello = containerd.run_ok(
        images::BUSYBOX,
        "oci-busybox",
        &["/bin/sh", "-c", "echo hello from $(id -u)"],
    );
    assert_eq!(hello, "hello from 0\n");

    let usage = containerd.run_ok(
        images::OPERATOR,
        "oci-operator",
        &["/usr/local/bin/multus-operator", "--help"],
    );
    assert!(usage.contains("Usage: multus-operator"), "{usage}");
    let usage = containerd.run_ok(
        images::NODE_AGENT,
        "oci-node-agent",
        &["/usr/local/bin/multus-node-agent", "--help"],
    );
    assert!(usage.contains("Usage: multus-node-agent"), "{usage}");

    // The chart's init container command, then the shell and applets of the daemon wrapper.
    let installed = containerd.run_ok(
        images::MULTUS,
        "oci-multus",
        &[
            "/bin/sh",
            "-c",
            "/usr/src/multus-cni/bin/install_multus -d /tmp -t thick && cksum < /tmp/passthru > /dev/null && sleep 0 && ls /tmp",
        ],
    );
    assert!(
        installed.contains("multus multus-shim copy succeeded!"),
        "{installed}"
    );
    assert!(installed.contains("passthru cni"), "{installed}");
    assert!(
        installed.ends_with("multus-shim\npassthru\n"),
        "{installed}"
    );

    pause_exits_zero_on_sigterm(&containerd);
}

/// Runs pause in the foreground (`ctr run` exits with the task's status), stops it with
/// SIGTERM once it runs, and expects exit status 0.
fn pause_exits_zero_on_sigterm(containerd: &TestContainerd) {
    let mut run = containerd
        .run(images::PAUSE, "oci-pause", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run pause");
    let running = wait_until(RUN_TIMEOUT, || {
        let tasks = containerd.ctr(&["tasks", "ls"]);
        String::from_utf8_lossy(&tasks.stdout)
            .lines()
            .any(|l| l.starts_with("oci-pause ") && l.contains("RUNNING"))
    });
    if !running {
        let _ = run.kill();
        let out = run.wait_with_output().expect("ctr run output");
        panic!(
            "pause never ran; ctr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    containerd.ok(&["tasks", "kill", "--signal", "SIGTERM", "oci-pause"]);
    let exited = wait_until(RUN_TIMEOUT, || matches!(run.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = run.kill();
    }
    let out = run.wait_with_output().expect("ctr run output");
    assert!(exited, "pause did not stop on SIGTERM");
    assert!(
        out.status.success(),
        "pause exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
