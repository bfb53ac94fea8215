//! Throwaway PKI for one control plane: a CA, the API server's serving certificate for
//! loopback, the ServiceAccount token signing key, and client certificates signed by the CA
//! on demand (kubelets, the API server's kubelet client).

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

use crate::E2eError;

/// Files written by [`write()`].
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    /// The CA's private key, kept to sign client certificates later ([`client_cert`]).
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn err(e: impl std::fmt::Display) -> E2eError {
    E2eError::Pki(e.to_string())
}

/// The CA's parameters. Deterministic, so an issuer rebuilt from them and the CA key signs
/// certificates that chain to the CA certificate written by [`write()`].
fn ca_params() -> Result<CertificateParams, E2eError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "multus-e2e-ca");
    Ok(ca_params)
}

/// Generates the PKI into `dir`.
pub fn write(dir: &Path) -> Result<Pki, E2eError> {
    write_with_sans(dir, &[])
}

/// Like [`write()`], with more subject alternative names (IP addresses or DNS names) in the
/// API server's serving certificate.
pub fn write_with_sans(dir: &Path, extra_sans: &[String]) -> Result<Pki, E2eError> {
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params()?, ca_key).map_err(err)?;

    let serving_key = KeyPair::generate().map_err(err)?;
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    sans.extend(extra_sans.iter().cloned());
    let mut params = CertificateParams::new(sans).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let serving = params.signed_by(&serving_key, &ca).map_err(err)?;

    let sa_key = KeyPair::generate().map_err(err)?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        ca_pem: ca.pem(),
        ca_key: dir.join("ca.key"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    };
    let write = |path: &Path, text: String| std::fs::write(path, text).map_err(err);
    write(&pki.ca_cert, ca.pem())?;
    write(&pki.ca_key, ca_key_pem)?;
    write(&pki.serving_cert, serving.pem())?;
    write(&pki.serving_key, serving_key.serialize_pem())?;
    write(&pki.sa_key, sa_key.serialize_pem())?;
    write(&pki.sa_pub, sa_key.public_key_pem())?;
    Ok(pki)
}

/// A client certificate and its key (both PEM) for user `common_name` in group
/// `organization`, signed by the CA of `pki`.
pub fn client_cert(
    pki: &Pki,
    common_name: &str,
    organization: Option<&str>,
) -> Result<(String, String), E2eError> {
    let ca_key_pem = std::fs::read_to_string(&pki.ca_key)
        .map_err(|e| E2eError::Pki(format!("{}: {e}", pki.ca_key.display())))?;
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&ca_key_pem).map_err(err)?);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
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

/// A kubeconfig for `server` with an embedded CA and an embedded client certificate.
pub fn kubeconfig_cert_yaml(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: e2e\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\ncurrent-context: e2e\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}
