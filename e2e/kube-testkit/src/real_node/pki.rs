//! The kubelet's certificates, signed by the control plane's CA (read from its data dir).

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, PEM.
pub(super) struct Pem {
    pub cert: String,
    pub key: String,
}

/// The CA of the control plane whose data dir is `data`: its key and the same subject
/// (`CN=kube-testkit-ca`), so certificates signed here chain to `ca.crt` (issuer name and
/// authority key identifier both match).
fn control_plane_ca(data: &Path) -> Result<Issuer<'static, KeyPair>> {
    let key_pem = std::fs::read_to_string(data.join("ca.key")).context("read the CA key")?;
    let key = KeyPair::from_pem(&key_pem).context("parse the CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-testkit-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    sans: &[String],
    cn: &str,
    org: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<Pem> {
    let mut params = CertificateParams::new(sans.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(org) = org {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The kubelet's client certificate (`CN=system:node:<node>`, `O=system:nodes`, what the
/// API server's Node authorizer expects) and its serving certificate (127.0.0.1, ::1,
/// localhost and the node name: kubelet serves on loopback only).
pub(super) fn kubelet_certs(data: &Path, node: &str) -> Result<(Pem, Pem)> {
    let ca = control_plane_ca(data)?;
    let mut sans: Vec<String> = vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];
    if !sans.iter().any(|s| s == node) {
        sans.push(node.to_string());
    }
    let client = leaf(
        &ca,
        &[],
        &format!("system:node:{node}"),
        Some("system:nodes"),
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let serving = leaf(&ca, &sans, node, None, ExtendedKeyUsagePurpose::ServerAuth)?;
    Ok((client, serving))
}
