//! TLS material, read and checked at load time: a certificate that does not parse or does not
//! match its key makes the whole (re)load invalid, so the running certificates keep serving.
//! An expired certificate is served (and logged, and alerted on through its expiry metric)
//! rather than refused: refusing it would fail every later reload and restart. (A reload
//! that would put an expired certificate in place of a valid one is refused by the router,
//! which knows what is running.) Certificates and keys are part of the configuration for the
//! file watcher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::error::code;

/// The oldest TLS version any hop of the router speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `[tls]`, resolved.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Applies to every hop: clients, backends, admin and metrics. Changing it needs a restart.
    pub min_version: TlsVersion,
    /// Offer HTTP/2 to clients of `listen.https` (ALPN `h2` before `http/1.1`).
    pub h2: bool,
    /// The certificates of `listen.https`; empty without it.
    pub certificates: Arc<CertificateSet>,
    pub admin: Option<ListenerTls>,
    pub metrics: Option<ListenerTls>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            min_version: TlsVersion::Tls13,
            h2: true,
            certificates: Arc::default(),
            admin: None,
            metrics: None,
        }
    }
}

impl TlsSettings {
    fn listeners(&self) -> impl Iterator<Item = &ListenerTls> {
        self.admin.iter().chain(self.metrics.iter())
    }

    /// Every certificate served: `listen.https`'s, then the admin and metrics listeners'.
    pub fn served(&self) -> impl Iterator<Item = &ServerCertificate> {
        let listeners = self.listeners().map(|l| &*l.certificate);
        self.certificates.certificates.iter().chain(listeners)
    }

    /// The certificates of `self` that are expired or not valid yet at `now` while `running`
    /// serves their clients a valid one: what a reload from `running` to `self` would break
    /// (an old backup put back, under its old name or a new one). One line each.
    pub fn invalid_replacements(&self, running: &TlsSettings, now: i64) -> Vec<String> {
        fn certificate_of(listener: &Option<ListenerTls>) -> Vec<&ServerCertificate> {
            listener.iter().map(|l| &*l.certificate).collect()
        }
        let is_default = |tls: &TlsSettings, certificate: &ServerCertificate| {
            let default = tls.certificates.select(None);
            default.is_some_and(|d| std::ptr::eq(d, certificate))
        };
        let both_default = |new: &ServerCertificate, old: &ServerCertificate| {
            is_default(self, new) && is_default(running, old)
        };
        // Per listener: a certificate only replaces one of the same listener.
        let groups = [
            (
                self.certificates.certificates.iter().collect::<Vec<_>>(),
                running.certificates.certificates.iter().collect(),
            ),
            (certificate_of(&self.admin), certificate_of(&running.admin)),
            (
                certificate_of(&self.metrics),
                certificate_of(&running.metrics),
            ),
        ];
        let when = |t| crate::rfc3339(regions::UnixTime(t));
        let mut lines = Vec::new();
        for (new, old) in groups {
            for certificate in new.into_iter().filter(|c| !c.valid_at(now)) {
                let Some(replaced) = old.iter().find(|old| {
                    old.valid_at(now)
                        && (certificate.serves_clients_of(old) || both_default(certificate, old))
                }) else {
                    continue;
                };
                let why = if now < certificate.not_before {
                    format!("is not valid before {}", when(certificate.not_before))
                } else {
                    format!("expired on {}", when(certificate.not_after))
                };
                lines.push(format!(
                    "certificate `{}` in {} {why}, and would replace `{}`, valid until {}",
                    certificate.name,
                    certificate.cert_path.display(),
                    replaced.name,
                    when(replaced.not_after)
                ));
            }
        }
        lines
    }

    /// Every certificate, key and CA file in use: the file watcher reloads when one changes.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        let client_cas = self.listeners().filter_map(|l| l.client_ca_path.as_deref());
        self.served()
            .flat_map(|c| [c.cert_path.as_path(), c.key_path.as_path()])
            .chain(client_cas)
    }
}

/// One certificate chain with its key, ready to serve.
#[derive(Debug)]
pub struct ServerCertificate {
    /// The operator's name for it (metrics and logs).
    pub name: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The DNS names of the leaf's subject alternative names, lowercased; `*.example.com` for
    /// wildcards.
    pub dns_names: Vec<String>,
    /// The leaf's `notBefore` and `notAfter`, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub key: Arc<CertifiedKey>,
}

/// How far a certificate's `notBefore` may be ahead of this host's clock and still count as
/// valid: clocks drift, and some CAs date a certificate from the second it was issued.
pub const CLOCK_SKEW_SECONDS: i64 = 300;

impl ServerCertificate {
    /// Whether clients accept it at `now` (Unix seconds), as far as its dates go.
    pub fn valid_at(&self, now: i64) -> bool {
        (self.not_before - CLOCK_SKEW_SECONDS..=self.not_after).contains(&now)
    }

    /// Whether it serves clients that `other` serves: the same `name`, or a DNS name in common.
    fn serves_clients_of(&self, other: &ServerCertificate) -> bool {
        self.name == other.name || self.dns_names.iter().any(|n| other.dns_names.contains(n))
    }
}

/// The certificates of one listener, chosen by server name (SNI or Host).
#[derive(Debug, Default)]
pub struct CertificateSet {
    pub certificates: Vec<ServerCertificate>,
    exact: HashMap<String, usize>,
    /// `*.api.example.com` is stored as `api.example.com`.
    wildcard: HashMap<String, usize>,
    default: usize,
}

impl CertificateSet {
    /// The certificate for `server_name`: an exact name first, then a wildcard covering it,
    /// then the default. `None` only when the set is empty.
    pub fn select(&self, server_name: Option<&str>) -> Option<&ServerCertificate> {
        let index = server_name
            .and_then(|name| self.covering(name))
            .unwrap_or(self.default);
        self.certificates.get(index)
    }

    /// Whether `a` and `b` are served the same certificate: a connection opened for one may
    /// carry requests for the other (RFC 9110 7.4, connection reuse).
    pub fn same_certificate(&self, a: Option<&str>, b: Option<&str>) -> bool {
        let index =
            |name: Option<&str>| name.and_then(|n| self.covering(n)).unwrap_or(self.default);
        index(a) == index(b)
    }

    fn covering(&self, name: &str) -> Option<usize> {
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(&index) = self.exact.get(name) {
            return Some(index);
        }
        // A wildcard covers exactly one label.
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }

    /// Builds the set; `Err` names a DNS name claimed by two certificates.
    pub(crate) fn new(
        certificates: Vec<ServerCertificate>,
        default: usize,
    ) -> Result<Self, (String, String, String)> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (index, certificate) in certificates.iter().enumerate() {
            for name in &certificate.dns_names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent),
                    None => (&mut exact, name.as_str()),
                };
                if let Some(&first) = map.get(key) {
                    if first != index {
                        let first: &ServerCertificate = &certificates[first];
                        return Err((name.clone(), first.name.clone(), certificate.name.clone()));
                    }
                }
                map.insert(key.to_owned(), index);
            }
        }
        Ok(CertificateSet {
            certificates,
            exact,
            wildcard,
            default,
        })
    }
}

/// TLS of the admin or metrics listener.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub certificate: Arc<ServerCertificate>,
    /// Clients must present a certificate issued by a CA of `client_ca_path`.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub client_ca_path: Option<PathBuf>,
}

/// `[regions.sites.tls]`: how the router speaks TLS to one site's backends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Sent as SNI and checked against the backend's certificate. Empty only with
    /// `verify = false`.
    pub sni: String,
    pub verify: bool,
    /// DER certificates the backends' chains must lead to; `None`: the system's roots.
    pub ca: Option<Vec<Vec<u8>>>,
    /// The router's client certificate chain (DER) and PKCS#8/PKCS#1/SEC1 key (DER), for
    /// backends that require mutual TLS.
    pub client: Option<ClientIdentity>,
    pub h2: bool,
    /// The CA and client certificate files, for the file watcher.
    pub files: Vec<PathBuf>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("chain", &self.chain.len())
            .field("key", &"(secret)")
            .finish()
    }
}

/// A problem with a TLS file: its kind (one of `ConfigError::CODES`), what is wrong and how to
/// fix it.
pub(crate) struct TlsProblem {
    pub code: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

/// A file that reads but does not hold what it should (the commonest TLS file problem).
fn problem(problem: String, fix: &'static str) -> TlsProblem {
    TlsProblem {
        code: code::INVALID_FILE,
        problem,
        fix,
    }
}

/// `code::UNREADABLE_FILE` when the PEM reader could not read the file at all.
fn pem_code(e: &rustls::pki_types::pem::Error) -> &'static str {
    match e {
        rustls::pki_types::pem::Error::Io(_) => code::UNREADABLE_FILE,
        _ => code::INVALID_FILE,
    }
}

/// Reads a PEM chain and key and checks they belong together.
pub(crate) fn server_certificate(
    name: &str,
    cert_path: PathBuf,
    key_path: PathBuf,
) -> Result<ServerCertificate, TlsProblem> {
    let chain = certificates(&cert_path)?;
    let (dns_names, not_before, not_after) = leaf_facts(&chain[0], &cert_path)?;
    let key = certified_key(chain, &private_key(&key_path)?, &cert_path, &key_path)?;
    Ok(ServerCertificate {
        name: name.to_owned(),
        cert_path,
        key_path,
        dns_names,
        not_before,
        not_after,
        key: Arc::new(key),
    })
}

/// `chain` with `key`, once they are known to belong together.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsProblem> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| {
        problem(
            format!("{}: unsupported private key: {e}", key_path.display()),
            "use an RSA, ECDSA (P-256/P-384) or Ed25519 key in PEM",
        )
    })?;
    let key = CertifiedKey::new(chain, signing);
    if let Err(rustls::Error::InconsistentKeys(_)) = key.keys_match() {
        return Err(problem(
            format!(
                "the key in {} does not belong to the certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
            "point `key` at the private key this certificate was issued for",
        ));
    }
    Ok(key)
}

/// Every certificate of a PEM file, at least one.
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsProblem> {
    let unreadable = |e: rustls::pki_types::pem::Error| TlsProblem {
        code: pem_code(&e),
        ..problem(
            format!("cannot read certificates from {}: {e}", path.display()),
            "give a readable PEM file with `-----BEGIN CERTIFICATE-----` blocks",
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    if chain.is_empty() {
        return Err(problem(
            format!("{} holds no certificate", path.display()),
            "give a PEM file with `-----BEGIN CERTIFICATE-----` blocks, the leaf first",
        ));
    }
    for (i, der) in chain.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(der) {
            return Err(problem(
                format!(
                    "certificate {} in {} does not parse: {e}",
                    i + 1,
                    path.display()
                ),
                "give well-formed X.509 certificates in PEM",
            ));
        }
    }
    Ok(chain)
}

pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsProblem> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsProblem {
        code: pem_code(&e),
        ..problem(
            format!("cannot read a private key from {}: {e}", path.display()),
            "give a PEM file with a `PRIVATE KEY` block (PKCS#8, PKCS#1 or SEC1)",
        )
    })
}

/// The leaf's DNS names, `notBefore` and `notAfter`.
fn leaf_facts(leaf: &[u8], path: &Path) -> Result<(Vec<String>, i64, i64), TlsProblem> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        problem(
            format!(
                "the leaf certificate in {} does not parse: {e}",
                path.display()
            ),
            "give well-formed X.509 certificates in PEM",
        )
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    let validity = cert.validity();
    Ok((
        names,
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// A CA bundle as a root store, at least one certificate.
pub(crate) fn root_store(path: &Path) -> Result<RootCertStore, TlsProblem> {
    trust_anchors(certificates(path)?, path)
}

/// A verifier demanding client certificates issued by a CA of the bundle at `path`.
pub(crate) fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsProblem> {
    let roots = Arc::new(root_store(path)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| {
            problem(
                format!(
                    "{}: not usable for client certificates: {e}",
                    path.display()
                ),
                "give CA certificates in PEM",
            )
        })
}

/// `certificates` (read from `path`) as trust anchors.
pub(crate) fn trust_anchors(
    certificates: Vec<CertificateDer<'static>>,
    path: &Path,
) -> Result<RootCertStore, TlsProblem> {
    let mut roots = RootCertStore::empty();
    for der in certificates {
        roots.add(der).map_err(|e| {
            problem(
                format!("{}: not usable as a CA certificate: {e}", path.display()),
                "give CA certificates in PEM",
            )
        })?;
    }
    Ok(roots)
}

/// The router's client identity for mutual TLS with backends.
pub(crate) fn client_identity(cert: &Path, key: &Path) -> Result<ClientIdentity, TlsProblem> {
    // Same checks as a served certificate, so a broken identity is found at load and not at
    // the first connection.
    let chain = certificates(cert)?;
    let (_, _, not_after) = leaf_facts(&chain[0], cert)?;
    let key_der = private_key(key)?;
    let checked = certified_key(chain, &key_der, cert, key)?;
    let key_der = key_der.secret_der().to_vec();
    // Pingora re-detects the key type from the bare DER at connect time.
    if PrivateKeyDer::try_from(key_der.as_slice()).is_err() {
        return Err(problem(
            format!(
                "{}: the key type cannot be told from its DER",
                key.display()
            ),
            "convert the key to PKCS#8: `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`",
        ));
    }
    Ok(ClientIdentity {
        chain: checked.cert.iter().map(|c| c.to_vec()).collect(),
        key: key_der,
        not_after,
    })
}
