//! The throw-away PKI of a test control plane (rcgen, ECDSA P-256).

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its private key, both PEM.
pub(crate) struct CertPem {
    pub cert: String,
    pub key: String,
}

/// Everything the API server and its clients need.
pub(crate) struct Pki {
    /// The CA that signs every certificate below; also the API server's `--client-ca-file`.
    pub ca: CertPem,
    /// The API server's serving certificate (127.0.0.1, localhost, kubernetes.default...).
    pub apiserver: CertPem,
    /// Admin client certificate: CN=testkit-admin, O=system:masters.
    pub admin: CertPem,
    /// The API server's client certificate towards kubelets (here: the node agent).
    pub kubelet_client: CertPem,
    /// Service-account token signing key (PKCS#8 PEM) ...
    pub service_account_key: String,
    /// ... and its public half (SPKI PEM), which verifies tokens.
    pub service_account_pub: String,
}

fn leaf(
    sans: &[&str],
    cn: &str,
    org: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertPem> {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
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
    Ok(CertPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl Pki {
    pub(crate) fn generate() -> Result<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kube-testkit-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = CertPem {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        };
        let issuer = Issuer::new(ca_params, ca_key);

        let apiserver = leaf(
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                crate::control_plane::SERVICE_IP,
            ],
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        let admin = leaf(
            &[],
            "testkit-admin",
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?;
        let kubelet_client = leaf(
            &[],
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?;
        let sa = KeyPair::generate()?;
        Ok(Pki {
            ca,
            apiserver,
            admin,
            kubelet_client,
            service_account_key: sa.serialize_pem(),
            service_account_pub: sa.public_key_pem(),
        })
    }
}

/// A self-signed serving certificate for `sans` (the node agent's log endpoint): DER
/// certificate and PKCS#8 DER key.
pub(crate) fn self_signed_serving_der(sans: &[String]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut params = CertificateParams::new(sans.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-testkit-node-agent");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}
