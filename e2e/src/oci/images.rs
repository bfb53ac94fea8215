//! The images a real node runs in the e2e tests, built from what is on this machine: our
//! own pause, Debian's static busybox, static musl builds of the operator and node agent
//! on a distroless-like base, and the upstream Multus binaries from `e2e/testenv`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::musl::{check_static, musl_release_bin};
use super::{Image, ImageArchive, ImageConfig, Layer, write_archive};
use crate::E2eError;
use crate::binaries::bin;

pub const PAUSE: &str = "localhost/multus-e2e/pause:test";
pub const BUSYBOX: &str = "localhost/multus-e2e/busybox:test";
pub const OPERATOR: &str = "localhost/multus-e2e/multus-operator:test";
pub const NODE_AGENT: &str = "localhost/multus-e2e/multus-node-agent:test";
/// Stands in for ghcr.io/k8snetworkplumbingwg/multus-cni in both modes: it has the thin
/// image's files and the thick image's shell.
pub const MULTUS: &str = "localhost/multus-e2e/multus-cni:test";

/// Debian's busybox-static.
const HOST_BUSYBOX: &str = "/bin/busybox";
/// Where the chart's commands expect the upstream binaries (both upstream images).
const MULTUS_BIN_DIR: &str = "usr/src/multus-cni/bin";
/// Everything `e2e/testenv/build.sh` builds from multus-cni, as upstream's
/// `hack/build-go.sh` names it; install_multus copies `passthru` next to multus.
const MULTUS_BINS: [&str; 7] = [
    "multus",
    "multus-shim",
    "multus-daemon",
    "install_multus",
    "thin_entrypoint",
    "kubeconfig_generator",
    "passthru",
];
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Writes every image into `dir`: pause, busybox, operator, node agent, Multus.
pub fn all(dir: &Path) -> Result<Vec<ImageArchive>, E2eError> {
    Ok(vec![
        pause(dir)?,
        busybox(dir)?,
        operator(dir)?,
        node_agent(dir)?,
        multus(dir)?,
    ])
}

/// The pod sandbox image: our pause (`e2e/testenv/pause/pause.c`) compiled with
/// `cc -static -O2`, run as 65535:65535 like the Kubernetes one.
pub fn pause(dir: &Path) -> Result<ImageArchive, E2eError> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("testenv/pause/pause.c");
    let build = tempfile::TempDir::new_in(dir)
        .map_err(|e| E2eError::Io(format!("temporary dir in {}: {e}", dir.display())))?;
    let binary = build.path().join("pause");
    host_tool(
        Command::new("cc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&binary)
            .arg(&source),
        &format!("cc -static {}", source.display()),
    )?;
    check_static(&binary)?;
    let image = Image {
        reference: PAUSE.into(),
        config: ImageConfig {
            entrypoint: vec!["/pause".into()],
            user: Some("65535:65535".into()),
            ..ImageConfig::default()
        },
        layers: vec![Layer::new().file("/pause", &binary, 0o755)],
    };
    write(&image, dir, "pause")
}

/// Busybox with a symlink for every applet at its usual path (`busybox --list-full`), for
/// test pods that need a shell, `ip`, `ping`, `wget` and the like.
pub fn busybox(dir: &Path) -> Result<ImageArchive, E2eError> {
    let image = Image {
        reference: BUSYBOX.into(),
        config: ImageConfig {
            cmd: vec!["sh".into()],
            env: vec![PATH_ENV.into()],
            ..ImageConfig::default()
        },
        layers: vec![busybox_layer()?],
    };
    write(&image, dir, "busybox")
}

/// The operator image as `images/Dockerfile` (target `operator`) builds it: a static musl
/// build at /usr/local/bin on a distroless/static-like base, user 65532:65532.
pub fn operator(dir: &Path) -> Result<ImageArchive, E2eError> {
    workspace_image(
        dir,
        OPERATOR,
        "multus-operator",
        Some("65532:65532"),
        "Renders MultusConfigs into one Multus file bundle per node",
    )
}

/// The node agent image as `images/Dockerfile` (target `node-agent`) builds it (user root).
pub fn node_agent(dir: &Path) -> Result<ImageArchive, E2eError> {
    workspace_image(
        dir,
        NODE_AGENT,
        "multus-node-agent",
        None,
        "Writes a node's Multus files from its bundle ConfigMap",
    )
}

/// The upstream Multus image the chart's init container and multus-daemon container run:
/// every binary in /usr/src/multus-cni/bin (the thin image's copies of install_multus,
/// thin_entrypoint and kubeconfig_generator at / as links), /var/run linking to /run,
/// busybox for the daemon wrapper's /bin/sh and `sleep`, and the host's `cksum`.
/// Entrypoint as the thick image's.
pub fn multus(dir: &Path) -> Result<ImageArchive, E2eError> {
    let mut app = Layer::new();
    for name in MULTUS_BINS {
        let path = bin(name)?;
        check_static(&path)?;
        app = app.file(&format!("{MULTUS_BIN_DIR}/{name}"), &path, 0o755);
    }
    for name in ["install_multus", "thin_entrypoint", "kubeconfig_generator"] {
        app = app.symlink(name, &format!("/{MULTUS_BIN_DIR}/{name}"));
    }
    // As in the Debian base of upstream's thick image: containerd names pod network
    // namespaces /var/run/netns/<id>, which multus-daemon resolves through the chart's
    // /run/netns mount.
    app = app.dir("/run", 0o755).symlink("var/run", "/run");
    let image = Image {
        reference: MULTUS.into(),
        config: ImageConfig {
            entrypoint: vec![format!("/{MULTUS_BIN_DIR}/multus-daemon")],
            env: vec![PATH_ENV.into()],
            working_dir: Some("/".into()),
            ..ImageConfig::default()
        },
        layers: vec![busybox_layer()?, host_tools_layer(&["cksum"])?, app],
    };
    write(&image, dir, "multus-cni")
}

/// Host tools at their host paths with the shared objects `ldd` lists for them: busybox
/// lacks `cksum`, which the chart's daemon wrapper runs and the Debian-based upstream
/// thick image has from coreutils.
fn host_tools_layer(tools: &[&str]) -> Result<Layer, E2eError> {
    let mut layer = Layer::new();
    for tool in tools {
        let path = ["/usr/bin", "/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(tool))
            .find(|p| p.is_file())
            .ok_or_else(|| E2eError::Binaries(format!("{tool} not found in /usr/bin or /bin")))?;
        let ldd = format!("ldd {}", path.display());
        let text = host_tool(Command::new("ldd").arg(&path), &ldd)?;
        if text.contains("not found") {
            return Err(E2eError::Binaries(format!(
                "{ldd}: a library is missing: {}",
                text.trim()
            )));
        }
        for lib in shared_objects(&text) {
            layer = layer.file(lib, Path::new(lib), 0o755);
        }
        layer = layer.file(&path.display().to_string(), &path, 0o755);
    }
    Ok(layer)
}

/// The paths in `ldd` output: `name => /path (addr)` and `/path (addr)`; the vDSO has none.
fn shared_objects(ldd: &str) -> Vec<&str> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            path.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
        })
        .collect()
}

fn workspace_image(
    dir: &Path,
    reference: &str,
    name: &str,
    user: Option<&str>,
    description: &str,
) -> Result<ImageArchive, E2eError> {
    let binary = musl_release_bin(name)?;
    let path = format!("/usr/local/bin/{name}");
    let labels = [
        ("org.opencontainers.image.title", name),
        ("org.opencontainers.image.description", description),
        ("org.opencontainers.image.licenses", "Apache-2.0"),
    ];
    let image = Image {
        reference: reference.into(),
        config: ImageConfig {
            entrypoint: vec![path.clone()],
            env: vec![PATH_ENV.into(), format!("SSL_CERT_FILE={HOST_CA_BUNDLE}")],
            user: user.map(str::to_string),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ImageConfig::default()
        },
        layers: vec![
            distroless_static_layer()?,
            Layer::new().file(&path, &binary, 0o755),
        ],
    };
    write(&image, dir, name)
}

/// What gcr.io/distroless/static-debian12 gives a static binary: users root, nobody and
/// nonroot (65532) with their groups and homes, /tmp, and the CA bundle (this host's).
/// Not copied: tzdata and os-release, which neither binary reads.
fn distroless_static_layer() -> Result<Layer, E2eError> {
    let ca = Path::new(HOST_CA_BUNDLE);
    if !ca.is_file() {
        return Err(E2eError::Io(format!(
            "{HOST_CA_BUNDLE} is missing (Debian: ca-certificates); the distroless base has it"
        )));
    }
    let passwd = "root:x:0:0:root:/root:/sbin/nologin\n\
                  nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
                  nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
    let group = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n";
    Ok(Layer::new()
        .contents("/etc/passwd", passwd, 0o644)
        .contents("/etc/group", group, 0o644)
        .file(HOST_CA_BUNDLE, ca, 0o644)
        .dir("/tmp", 0o1777)
        .dir("/root", 0o700)
        .dir_owned("/home/nonroot", 0o700, 65532, 65532))
}

/// Debian's static busybox at /bin/busybox, a link per applet, and a minimal /etc.
fn busybox_layer() -> Result<Layer, E2eError> {
    let busybox = PathBuf::from(HOST_BUSYBOX);
    check_static(&busybox)
        .map_err(|e| E2eError::Binaries(format!("{e} (Debian: apt-get install busybox-static)")))?;
    let applets = host_tool(
        Command::new(&busybox).arg("--list-full"),
        &format!("{HOST_BUSYBOX} --list-full"),
    )?;
    let mut layer = Layer::new()
        .file(HOST_BUSYBOX, &busybox, 0o755)
        .contents(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        )
        .contents("/etc/group", "root:x:0:\nnobody:x:65534:\n", 0o644)
        .dir("/tmp", 0o1777)
        .dir("/root", 0o700);
    for applet in applets.lines() {
        let applet = applet.trim().trim_end_matches('/');
        // linuxrc is the initrd entry point, not a command.
        if applet.is_empty() || applet == "bin/busybox" || applet == "linuxrc" {
            continue;
        }
        layer = layer.symlink(applet, HOST_BUSYBOX);
    }
    Ok(layer)
}

/// Runs a host tool an image is built with; its stdout when it exits 0, else an error
/// naming the call (`what`) with its exit status and stderr.
fn host_tool(command: &mut Command, what: &str) -> Result<String, E2eError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| E2eError::Binaries(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(E2eError::Binaries(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write(image: &Image, dir: &Path, file: &str) -> Result<ImageArchive, E2eError> {
    write_archive(image, &dir.join(format!("{file}.oci.tar")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shared_objects_are_read_from_ldd_output() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4a)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f4b)\n";
        assert_eq!(
            super::shared_objects(ldd),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }
}
