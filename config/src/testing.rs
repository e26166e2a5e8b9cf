//! Test support for the crates that read configurations: real certificates issued on the
//! spot with rcgen (a CA and leaves it signs, as PEM files and as rustls configs for test
//! servers and clients), and the smallest two-region topology.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use time::{Duration, OffsetDateTime};

pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate with its key, valid for client and server authentication.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key generation");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("a valid CA");
        roots
    }

    /// A leaf for `names` (DNS names, `*.` wildcards or IP addresses), valid for a year.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        self.issue_valid(names, -Duration::days(2 * 365), Duration::days(365))
    }

    /// A leaf for `names` that expired yesterday.
    pub fn issue_expired(&self, names: &[&str]) -> Leaf {
        self.issue_valid(names, -Duration::days(2 * 365), -Duration::days(1))
    }

    /// A leaf for `names` that becomes valid tomorrow.
    pub fn issue_not_yet_valid(&self, names: &[&str]) -> Leaf {
        self.issue_valid(names, Duration::days(1), Duration::days(365))
    }

    /// Valid from `now + from` to `now + until`.
    fn issue_valid(&self, names: &[&str], from: Duration, until: Duration) -> Leaf {
        let now = OffsetDateTime::now_utc();
        let not_after = now + until;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.not_before = now + from;
        params.not_after = not_after;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key generation");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
            not_after: not_after.unix_timestamp(),
        }
    }
}

impl Leaf {
    /// Writes `NAME.pem` and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.pem")), &self.cert_pem).expect("write cert");
        std::fs::write(dir.join(format!("{name}.key")), &self.key_pem).expect("write key");
    }

    fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = PrivatePkcs8KeyDer::from(self.key_der.clone());
        (vec![self.der.clone()], key.into())
    }

    /// A TLS 1.2 + 1.3 server with this certificate, requiring client certificates from
    /// `client_ca` when given.
    pub fn server_config(&self, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
        self.server_config_for(rustls::ALL_VERSIONS, client_ca)
    }

    /// [`Leaf::server_config`] speaking only `versions` (an old backend: TLS 1.2 only).
    pub fn server_config_for(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        client_ca: Option<&Ca>,
    ) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("ring supports both versions");
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.roots()),
                    provider(),
                )
                .build()
                .expect("client verifier"),
            ),
            None => builder.with_no_client_auth(),
        };
        let (chain, key) = self.chain_and_key();
        let mut config = builder.with_single_cert(chain, key).expect("valid pair");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A client config trusting `ca` (or, with `None`, any certificate: for looking at what a
/// server sends), limited to `versions`, offering `alpn`, presenting `identity` if given.
pub fn client_config(
    ca: Option<&Ca>,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
    identity: Option<&Leaf>,
) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("ring supports both versions");
    let builder = match ca {
        Some(ca) => builder.with_root_certificates(ca.roots()),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider()))),
    };
    let mut config = match identity {
        Some(leaf) => {
            let (chain, key) = leaf.chain_and_key();
            builder
                .with_client_auth_cert(chain, key)
                .expect("valid pair")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Regions `us` (site virginia) and `eu` (site frankfurt), no hosts: for tests of registry
/// records, which only need region names.
pub fn two_regions() -> regions::Topology {
    let no_hosts: [&str; 0] = [];
    regions::Topology::new([
        ("us", no_hosts, vec![("virginia".to_owned(), 0.0, 0.0)]),
        ("eu", no_hosts, vec![("frankfurt".to_owned(), 0.0, 0.0)]),
    ])
    .expect("a valid topology")
}
