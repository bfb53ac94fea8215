//! Writing an [`Image`] as an OCI image layout in one tar file: uncompressed layer tars
//! hashed while they are written to temporary files next to the output, then the config,
//! the manifest and `index.json` (which names the image for containerd).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path};
use tempfile::NamedTempFile;

use super::{Entry, Image, ImageArchive, Layer, Meta, Source, host_architecture};
use crate::E2eError;

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// containerd names an imported image after this annotation of its index entry.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI layout's own name for the entry: the tag, as containerd and buildkit export it.
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Every entry's modification time, so digests depend on contents only.
const MTIME: u64 = 0;
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// A content-addressed blob: `sha256:<hex>` and size.
struct Blob {
    digest: String,
    size: u64,
}

impl Blob {
    fn of(bytes: &[u8]) -> Blob {
        Blob {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            size: bytes.len() as u64,
        }
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.size})
    }

    fn path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

/// Writes `image` to `path` (through a temporary file in the same directory, renamed when
/// complete) and returns what was written.
pub fn write_archive(image: &Image, path: &Path) -> Result<ImageArchive, E2eError> {
    let tag = tag_of(&image.reference)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let ctx = |what: &str| format!("image {}: {what}", image.reference);
    // Removed on drop: nothing is left behind when a step fails.
    let temporary = || {
        NamedTempFile::new_in(dir)
            .map_err(|e| E2eError::Io(ctx(&format!("temporary file in {}: {e}", dir.display()))))
    };

    let mut layers = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let tmp = temporary()?;
        let file = tmp
            .reopen()
            .map_err(|e| E2eError::Io(ctx(&format!("reopen layer file: {e}"))))?;
        let blob = write_layer(layer, file).map_err(|e| prefix(e, &ctx(&format!("layer {i}"))))?;
        layers.push((blob, tmp));
    }

    let config = config_json(image, &layers)?;
    let config_blob = Blob::of(&config);
    let layer_descriptors: Vec<Value> = layers
        .iter()
        .map(|(b, _)| b.descriptor(MEDIA_LAYER))
        .collect();
    let manifest = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_blob.descriptor(MEDIA_CONFIG),
        "layers": layer_descriptors,
    }))?;
    let manifest_blob = Blob::of(&manifest);
    let mut entry = manifest_blob.descriptor(MEDIA_MANIFEST);
    entry["platform"] = json!({"architecture": host_architecture()?, "os": "linux"});
    entry["annotations"] = json!({CONTAINERD_NAME: image.reference, OCI_REF_NAME: tag});
    let index = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [entry],
    }))?;

    let out = temporary()?;
    let io = |e: std::io::Error| E2eError::Io(ctx(&format!("write {}: {e}", path.display())));
    let mut tar = tar::Builder::new(BufWriter::new(out.reopen().map_err(io)?));
    append_dir(&mut tar, "blobs/", Meta::root(0o755)).map_err(io)?;
    append_dir(&mut tar, "blobs/sha256/", Meta::root(0o755)).map_err(io)?;
    // Blobs in digest order; a layer that repeats another is stored once.
    let mut blobs: BTreeMap<String, (u64, BlobData)> = BTreeMap::new();
    for (blob, tmp) in &layers {
        blobs.insert(blob.path(), (blob.size, BlobData::File(tmp.path())));
    }
    blobs.insert(
        config_blob.path(),
        (config_blob.size, BlobData::Bytes(&config)),
    );
    blobs.insert(
        manifest_blob.path(),
        (manifest_blob.size, BlobData::Bytes(&manifest)),
    );
    for (name, (size, data)) in &blobs {
        let reader: Box<dyn Read> = match data {
            BlobData::File(p) => Box::new(File::open(p).map_err(io)?),
            BlobData::Bytes(b) => Box::new(*b),
        };
        append_file(&mut tar, name, Meta::root(0o644), *size, reader).map_err(io)?;
    }
    let layout: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
    for (name, bytes) in [("index.json", &index[..]), ("oci-layout", layout)] {
        let len = bytes.len() as u64;
        append_file(&mut tar, name, Meta::root(0o644), len, bytes).map_err(io)?;
    }
    let mut writer = tar.into_inner().map_err(io)?;
    writer.flush().map_err(io)?;
    drop(writer);
    let size = out.as_file().metadata().map_err(io)?.len();
    out.persist(path).map_err(|e| io(e.error))?;
    Ok(ImageArchive {
        reference: image.reference.clone(),
        path: path.to_path_buf(),
        manifest_digest: manifest_blob.digest,
        config_digest: config_blob.digest,
        size,
    })
}

enum BlobData<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// The tag of a full reference (`host/repo:tag`); containerd and the CRI need one.
pub(super) fn tag_of(reference: &str) -> Result<&str, E2eError> {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':') {
        Some((name, tag)) if !name.is_empty() && !tag.is_empty() && !reference.contains('@') => {
            Ok(tag)
        }
        _ => Err(E2eError::Io(format!(
            "image reference {reference:?} needs a tag (name:tag) and no digest"
        ))),
    }
}

fn config_json(image: &Image, layers: &[(Blob, NamedTempFile)]) -> Result<Vec<u8>, E2eError> {
    let c = &image.config;
    let mut config = serde_json::Map::new();
    if !c.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), json!(c.entrypoint));
    }
    if !c.cmd.is_empty() {
        config.insert("Cmd".into(), json!(c.cmd));
    }
    if !c.env.is_empty() {
        config.insert("Env".into(), json!(c.env));
    }
    if let Some(user) = &c.user {
        config.insert("User".into(), json!(user));
    }
    if let Some(dir) = &c.working_dir {
        config.insert("WorkingDir".into(), json!(dir));
    }
    if !c.labels.is_empty() {
        config.insert("Labels".into(), json!(c.labels));
    }
    // Uncompressed layers: each diff ID is the layer's own digest.
    let diff_ids: Vec<&str> = layers.iter().map(|(b, _)| b.digest.as_str()).collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": EPOCH, "created_by": "multus-e2e oci writer"}))
        .collect();
    to_vec(&json!({
        "created": EPOCH,
        "architecture": host_architecture()?,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
}

fn to_vec(value: &Value) -> Result<Vec<u8>, E2eError> {
    serde_json::to_vec(value).map_err(|e| E2eError::Io(format!("serialize image JSON: {e}")))
}

fn prefix(e: E2eError, context: &str) -> E2eError {
    E2eError::Io(format!("{context}: {e}"))
}

/// Writes `layer` as an uncompressed tar to `file` and returns its digest and size.
fn write_layer(layer: &Layer, file: File) -> Result<Blob, E2eError> {
    let entries = complete(layer)?;
    let io = |e: std::io::Error| E2eError::Io(format!("write layer: {e}"));
    let mut tar = tar::Builder::new(Hashing::new(BufWriter::new(file)));
    for (path, entry) in &entries {
        match entry {
            Entry::Dir(meta) => append_dir(&mut tar, &format!("{path}/"), *meta).map_err(io)?,
            Entry::Symlink { target } => {
                let mut header = header(Meta::root(0o777), tar::EntryType::Symlink, 0);
                tar.append_link(&mut header, path, target).map_err(io)?;
            }
            Entry::File { meta, source } => match source {
                Source::Bytes(bytes) => {
                    let len = bytes.len() as u64;
                    append_file(&mut tar, path, *meta, len, &bytes[..]).map_err(io)?;
                }
                Source::Host(host) => {
                    let open = |e: std::io::Error| {
                        E2eError::Io(format!("{} (for /{path}): {e}", host.display()))
                    };
                    let file = File::open(host).map_err(open)?;
                    let len = file.metadata().map_err(open)?.len();
                    append_file(&mut tar, path, *meta, len, file).map_err(open)?;
                }
            },
        }
    }
    let mut hashing = tar.into_inner().map_err(io)?;
    hashing.inner.flush().map_err(io)?;
    Ok(Blob {
        digest: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        size: hashing.len,
    })
}

/// The layer's entries with every missing parent directory, checked and in path order
/// (a parent sorts before its children).
fn complete(layer: &Layer) -> Result<BTreeMap<String, Entry>, E2eError> {
    let mut all = layer.entries.clone();
    for path in layer.entries.keys() {
        let bad = path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || !Path::new(path)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if bad {
            return Err(E2eError::Io(format!(
                "layer path {path:?} must name something below / without '.', '..' or '//'"
            )));
        }
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            match all.get(up) {
                None => {
                    all.insert(up.to_string(), Entry::Dir(Meta::root(0o755)));
                }
                Some(Entry::Dir(_)) => {}
                Some(_) => {
                    return Err(E2eError::Io(format!(
                        "layer path {path:?}: its parent {up:?} is not a directory"
                    )));
                }
            }
            parent = up;
        }
    }
    Ok(all)
}

fn header(meta: Meta, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode);
    header.set_uid(meta.uid);
    header.set_gid(meta.gid);
    header.set_mtime(MTIME);
    header.set_size(size);
    header
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, meta: Meta) -> std::io::Result<()> {
    let mut header = header(meta, tar::EntryType::Directory, 0);
    tar.append_data(&mut header, path, std::io::empty())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    meta: Meta,
    size: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut header = header(meta, tar::EntryType::Regular, size);
    // The tar crate pads after whatever the reader yields: hold it to the header's size,
    // so a file that changes while it is read fails instead of corrupting the archive.
    let mut exact = Exact {
        inner: data.take(size),
        remaining: size,
    };
    tar.append_data(&mut header, path, &mut exact)
}

struct Exact<R> {
    inner: std::io::Take<R>,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes fewer than its size", self.remaining),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Passes writes through while hashing and counting them.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
