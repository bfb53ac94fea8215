//! Throwaway PKI for one control plane: a CA, the API server's serving certificate for
//! loopback, and the ServiceAccount token signing key.

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

use crate::E2eError;

/// Files written by [`write`].
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn err(e: impl std::fmt::Display) -> E2eError {
    E2eError::Pki(e.to_string())
}

/// Generates the PKI into `dir`.
pub fn write(dir: &Path) -> Result<Pki, E2eError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "multus-e2e-ca");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;

    let serving_key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let serving = params.signed_by(&serving_key, &ca).map_err(err)?;

    let sa_key = KeyPair::generate().map_err(err)?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        ca_pem: ca.pem(),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    };
    let write = |path: &Path, text: String| std::fs::write(path, text).map_err(err);
    write(&pki.ca_cert, ca.pem())?;
    write(&pki.serving_cert, serving.pem())?;
    write(&pki.serving_key, serving_key.serialize_pem())?;
    write(&pki.sa_key, sa_key.serialize_pem())?;
    write(&pki.sa_pub, sa_key.public_key_pem())?;
    Ok(pki)
}

/// A random bearer token (48 hex digits).
pub fn random_token() -> Result<String, E2eError> {
    let mut bytes = [0u8; 24];
    let mut file = std::fs::File::open("/dev/urandom")
        .map_err(|e| E2eError::Io(format!("open /dev/urandom: {e}")))?;
    std::io::Read::read_exact(&mut file, &mut bytes)
        .map_err(|e| E2eError::Io(format!("read /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A kubeconfig for `server` with an embedded CA and a bearer token.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: e2e\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\ncurrent-context: e2e\n"
    )
}
