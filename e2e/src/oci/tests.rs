//! The writer without containerd: determinism, and that every digest and size in the layout
//! is that of the blob it names.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Image, ImageArchive, ImageConfig, Layer, write_archive};

/// Name -> (header, contents) of every entry of a tar stream, in order.
fn entries(tar: &[u8]) -> Vec<(String, tar::Header, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((name, header, data));
    }
    out
}

fn sample(host_file: &Path) -> Image {
    Image {
        reference: "localhost/multus-e2e/sample:test".into(),
        config: ImageConfig {
            entrypoint: vec!["/usr/local/bin/tool".into()],
            cmd: vec!["--flag".into()],
            env: vec!["PATH=/bin".into()],
            user: Some("65532:65532".into()),
            working_dir: Some("/work".into()),
            labels: [("a".to_string(), "b".to_string())].into(),
        },
        layers: vec![
            Layer::new()
                .contents("/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
                .dir("/tmp", 0o1777),
            Layer::new()
                .file("/usr/local/bin/tool", host_file, 0o755)
                .symlink("/bin/tool", "/usr/local/bin/tool")
                .dir_owned("/home/nonroot", 0o700, 65532, 65532),
        ],
    }
}

/// A temporary directory holding `tool`, the host file the sample image packs, with
/// `contents`; the archives are written beside it.
fn tool_file(contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("tool");
    std::fs::write(&host, contents).unwrap();
    (dir, host)
}

fn write_sample(dir: &Path, host_file: &Path, name: &str) -> (ImageArchive, Vec<u8>) {
    let archive = write_archive(&sample(host_file), &dir.join(name)).unwrap();
    let bytes = std::fs::read(&archive.path).unwrap();
    (archive, bytes)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn the_same_inputs_give_the_same_bytes_whatever_the_host_file_times() {
    let (dir, host) = tool_file(b"#!/bin/sh\necho tool\n");
    let (first, first_bytes) = write_sample(dir.path(), &host, "first.tar");
    let file = std::fs::File::options().write(true).open(&host).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();
    let (second, second_bytes) = write_sample(dir.path(), &host, "second.tar");
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert_eq!(first.config_digest, second.config_digest);
    assert_eq!(first_bytes, second_bytes);
    assert_eq!(first.size, first_bytes.len() as u64);

    std::fs::write(&host, b"#!/bin/sh\necho other\n").unwrap();
    let (third, _) = write_sample(dir.path(), &host, "third.tar");
    assert_ne!(first.manifest_digest, third.manifest_digest);
    // Only the archives remain: the layer files were temporary.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["first.tar", "second.tar", "third.tar", "tool"]);
}

#[test]
fn index_manifest_config_and_layers_name_their_blobs_by_digest_and_size() {
    let (dir, host) = tool_file(b"binary");
    let (archive, bytes) = write_sample(dir.path(), &host, "image.tar");
    let files: BTreeMap<String, Vec<u8>> = entries(&bytes)
        .into_iter()
        .map(|(name, _, data)| (name, data))
        .collect();
    assert_eq!(
        files["oci-layout"],
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()
    );
    let blob = |descriptor: &Value| -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        let data = files[&format!("blobs/{}", digest.replace(':', "/"))].clone();
        assert_eq!(sha256(&data), digest);
        assert_eq!(descriptor["size"].as_u64().unwrap(), data.len() as u64);
        data
    };

    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let entry = &manifests[0];
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        "localhost/multus-e2e/sample:test"
    );
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "test"
    );
    assert_eq!(entry["platform"]["os"], "linux");
    assert_eq!(entry["digest"], archive.manifest_digest.as_str());

    let manifest: Value = serde_json::from_slice(&blob(entry)).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["config"]["digest"], archive.config_digest.as_str());
    let config: Value = serde_json::from_slice(&blob(&manifest["config"])).unwrap();
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/tool");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["WorkingDir"], "/work");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    // Uncompressed layers: the diff IDs are the layer digests.
    assert_eq!(config["rootfs"]["diff_ids"][0], layers[0]["digest"]);
    assert_eq!(config["rootfs"]["diff_ids"][1], layers[1]["digest"]);

    let app = entries(&blob(&layers[1]));
    let names: Vec<&str> = app.iter().map(|(n, _, _)| n.as_str()).collect();
    // Parents added, in path order (a parent before its children).
    assert_eq!(
        names,
        [
            "bin",
            "bin/tool",
            "home",
            "home/nonroot",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/tool"
        ]
    );
    for (name, header, data) in &app {
        assert_eq!(header.mtime().unwrap(), 0, "{name}");
        match name.as_str() {
            "usr/local/bin/tool" => {
                assert_eq!(header.mode().unwrap(), 0o755);
                assert_eq!(data, b"binary");
            }
            "bin/tool" => {
                assert!(header.entry_type().is_symlink());
                let target = header.link_name().unwrap().unwrap();
                assert_eq!(target.to_str(), Some("/usr/local/bin/tool"));
            }
            "home/nonroot" => {
                assert_eq!(header.mode().unwrap(), 0o700);
                assert_eq!(header.uid().unwrap(), 65532);
            }
            _ => {
                assert!(header.entry_type().is_dir(), "{name}");
                assert_eq!(header.mode().unwrap(), 0o755);
            }
        }
    }
    let base = entries(&blob(&layers[0]));
    let tmp = base.iter().find(|(n, _, _)| n == "tmp").unwrap();
    assert_eq!(tmp.1.mode().unwrap(), 0o1777);
}

#[test]
fn paths_that_leave_the_root_and_references_without_a_tag_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["/a/../b", "a//b", "./a", ""] {
        let image = Image {
            reference: "localhost/x:test".into(),
            config: ImageConfig::default(),
            layers: vec![Layer::new().contents(bad, "x", 0o644)],
        };
        let err = write_archive(&image, &dir.path().join("bad.tar")).unwrap_err();
        assert!(err.to_string().contains("layer path"), "{bad}: {err}");
    }
    let file_parent = Image {
        reference: "localhost/x:test".into(),
        config: ImageConfig::default(),
        layers: vec![
            Layer::new()
                .contents("a", "x", 0o644)
                .contents("a/b", "y", 0o644),
        ],
    };
    assert!(write_archive(&file_parent, &dir.path().join("bad.tar")).is_err());
    for reference in ["localhost/x", "localhost:5000/x", "x@sha256:00"] {
        let image = Image {
            reference: reference.into(),
            config: ImageConfig::default(),
            layers: vec![],
        };
        let err = write_archive(&image, &dir.path().join("bad.tar")).unwrap_err();
        assert!(
            err.to_string().contains("needs a tag"),
            "{reference}: {err}"
        );
    }
    assert!(!dir.path().join("bad.tar").exists());
}
