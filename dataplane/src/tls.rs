//! TLS on every hop the router owns: clients (`listen.https`), backends, admin and metrics.
//!
//! The version policy is the process's rustls crypto provider: with `min_version = "1.3"` it
//! holds only TLS 1.3 cipher suites. Pingora builds its listener and connector configs with
//! TLS 1.2 and 1.3 enabled, but a TLS 1.2 ClientHello (or a TLS 1.2-only backend) then finds
//! no cipher suite in common and the handshake fails, before any HTTP is read.

use std::any::Any;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings as PingoraTlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509};
use residency_config::{ListenerTls, ServerCertificate, TlsSettings, TlsVersion, UpstreamTls};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SupportedProtocolVersion;

use crate::state::RouterState;

/// The ring provider, with TLS 1.2 cipher suites only when the operator allowed TLS 1.2.
pub fn crypto_provider(min: TlsVersion) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if min == TlsVersion::Tls13 {
        provider
            .cipher_suites
            .retain(|suite| suite.version() == &rustls::version::TLS13);
    }
    provider
}

pub fn protocol_versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    match min {
        TlsVersion::Tls13 => {
            static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
            &TLS13_ONLY
        }
        TlsVersion::Tls12 => rustls::ALL_VERSIONS,
    }
}

/// Makes the version policy the process default, before Pingora builds any TLS config.
/// Once per process: changing `tls.min_version` needs a restart.
pub fn install_policy(min: TlsVersion) -> Result<(), String> {
    if min == TlsVersion::Tls12 {
        tracing::warn!(
            "tls.min_version = \"1.2\": clients and backends may use TLS 1.2; \
             the residency promise of TLS 1.3 in transit no longer holds"
        );
    }
    let provider = crypto_provider(min);
    let offers_tls12 = |p: &CryptoProvider| {
        p.cipher_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS12)
    };
    let wanted = offers_tls12(&provider);
    if provider.install_default().is_err() {
        // Already installed (tests running the server in-process): fine if it is the same policy.
        let installed = CryptoProvider::get_default().expect("a provider is installed");
        if offers_tls12(installed) != wanted {
            return Err("another TLS version policy is already installed in this process".into());
        }
    }
    Ok(())
}

/// Logs what weakens TLS in `snapshot`: backends whose certificates are not verified, and
/// certificates (served, or the router's own for backends) that are not valid yet, expired or
/// expire within 14 days. Such a certificate is still used: refusing it would fail every
/// reload and restart after it.
pub fn warn_about(snapshot: &residency_config::Snapshot, now: regions::UnixTime) {
    for (id, site) in snapshot.topology.sites() {
        if snapshot
            .site(id)
            .tls
            .as_ref()
            .is_some_and(|tls| !tls.verify)
        {
            tracing::warn!(
                site = site.name.as_str(),
                "insecure_skip_verify: the backends' certificates are NOT verified; anyone on \
                 the path can read and change this site's traffic"
            );
        }
    }
    const SOON: i64 = 14 * 86_400;
    let now = now.0;
    for certificate in snapshot.tls.served() {
        if now + residency_config::CLOCK_SKEW_SECONDS < certificate.not_before {
            tracing::error!(
                name = certificate.name,
                "certificate is NOT VALID YET and clients will refuse it: check its dates"
            );
        }
    }
    let served = snapshot.tls.served().map(|c| (c.name.clone(), c.not_after));
    for (name, not_after) in served.chain(client_certificates(snapshot)) {
        let left = not_after - now;
        if left <= 0 {
            tracing::error!(
                name,
                "certificate has EXPIRED and peers will refuse it: renew it"
            );
        } else if left <= SOON {
            tracing::warn!(
                name,
                days_left = left / 86_400,
                "certificate expires soon: renew it"
            );
        }
    }
}

/// Logs what a reload from `old` to `new` loosens: a listener that stops requiring client
/// certificates.
pub fn warn_about_change(old: &residency_config::Snapshot, new: &residency_config::Snapshot) {
    for (listener, before, after) in [
        ("tls.admin", &old.tls.admin, &new.tls.admin),
        ("tls.metrics", &old.tls.metrics, &new.tls.metrics),
    ] {
        let demands =
            |l: &Option<ListenerTls>| l.as_ref().is_some_and(|l| l.client_verifier.is_some());
        if demands(before) && !demands(after) {
            tracing::warn!(
                listener,
                "client certificates are no longer required: any client can connect"
            );
        }
    }
}

/// The router's client certificates to sites' backends, as `client:SITE` and the leaf's
/// `notAfter`.
pub fn client_certificates(
    snapshot: &residency_config::Snapshot,
) -> impl Iterator<Item = (String, i64)> + '_ {
    snapshot.topology.sites().filter_map(|(id, site)| {
        let client = snapshot.site(id).tls.as_ref()?.client.as_ref()?;
        Some((format!("client:{}", site.name), client.not_after))
    })
}

/// A listener the router terminates TLS on.
#[derive(Clone, Copy, Debug)]
pub enum Listener {
    Https,
    Admin,
    Metrics,
}

impl Listener {
    /// `[tls.admin]` / `[tls.metrics]`; `None` for `listen.https`, whose settings are `[tls]`.
    pub fn settings(self, tls: &TlsSettings) -> Option<&ListenerTls> {
        match self {
            Listener::Https => None,
            Listener::Admin => tls.admin.as_ref(),
            Listener::Metrics => tls.metrics.as_ref(),
        }
    }

    fn certificate<'a>(
        self,
        tls: &'a TlsSettings,
        server_name: Option<&str>,
    ) -> Option<&'a ServerCertificate> {
        match self {
            Listener::Https => tls.certificates.select(server_name),
            _ => self.settings(tls).map(|l| &*l.certificate),
        }
    }
}

/// Where the TLS settings in force come from, read on every handshake: the live
/// configuration in the router, a fixed one in tests.
pub trait CertificateSource: Send + Sync + 'static {
    fn current(&self) -> Arc<residency_config::Snapshot>;
}

impl CertificateSource for arc_swap::ArcSwap<RouterState> {
    fn current(&self) -> Arc<residency_config::Snapshot> {
        Arc::clone(&self.load().snapshot)
    }
}

/// The certificate for each handshake, from the live configuration (by SNI on
/// `listen.https`): a reload with new certificates applies to the next handshake.
pub struct LiveCertificate {
    source: Arc<dyn CertificateSource>,
    listener: Listener,
}

impl LiveCertificate {
    pub fn new(source: Arc<dyn CertificateSource>, listener: Listener) -> Self {
        LiveCertificate { source, listener }
    }
}

impl std::fmt::Debug for LiveCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveCertificate({:?})", self.listener)
    }
}

impl ResolvesServerCert for LiveCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.source.current();
        let certificate = self
            .listener
            .certificate(&snapshot.tls, hello.server_name())?;
        Some(Arc::clone(&certificate.key))
    }
}

/// The server name a TLS connection was opened for, kept in Pingora's TLS digest so each
/// request on it can be checked against its Host.
pub struct ServerName(pub Option<Box<str>>);

struct RecordServerName;

#[async_trait::async_trait]
impl TlsAccept for RecordServerName {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(ServerName(tls.server_name().map(Box::from))))
    }
}

/// Pingora's listener settings for `listen.https`.
pub fn https_settings(
    source: Arc<dyn CertificateSource>,
    h2: bool,
) -> Result<PingoraTlsSettings, String> {
    let mut settings = PingoraTlsSettings::with_callbacks(Box::new(RecordServerName))
        .map_err(|e| format!("cannot set up the TLS listener: {e}"))?;
    settings.set_cert_resolver(Arc::new(LiveCertificate::new(source, Listener::Https)));
    settings.set_alpn(if h2 { ALPN::H2H1 } else { ALPN::H1 });
    Ok(settings)
}

/// The server name of an unverified backend connection without `sni`: an IP address, so the
/// handshake carries no SNI.
const NO_SERVER_NAME: &str = "0.0.0.0";

/// Per-site upstream TLS, converted once per configuration into what Pingora's peers take.
pub struct PeerTls {
    sni: String,
    verify: bool,
    ca: Option<Arc<[WrappedX509]>>,
    client: Option<Arc<CertKey>>,
    alpn: ALPN,
    /// Pingora's pool key covers address, SNI and client certificate, not the CA or ALPN: a
    /// connection verified under a CA that a reload removed must not be reused.
    group_key: u64,
}

impl PeerTls {
    pub fn new(tls: &UpstreamTls) -> Self {
        let parse = pingora::utils::tls::parse_x509;
        PeerTls {
            sni: tls.sni.clone(),
            verify: tls.verify,
            ca: tls.ca.as_ref().map(|certificates| {
                certificates
                    .iter()
                    .map(|der| WrappedX509::new(der.clone(), parse))
                    .collect()
            }),
            client: tls
                .client
                .as_ref()
                .map(|id| Arc::new(CertKey::new(id.chain.clone(), id.key.clone()))),
            alpn: if tls.h2 { ALPN::H2H1 } else { ALPN::H1 },
            group_key: {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                tls.hash(&mut hasher);
                hasher.finish()
            },
        }
    }

    /// Turns a plain peer into a TLS one. Verification stays on unless the operator turned it
    /// off; the SNI is never empty then (config validation), which Pingora would read as
    /// "skip verification".
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTPS;
        if self.sni.is_empty() {
            // Unverified and no name to send: Pingora's rustls connector cannot connect without
            // a server name, and rustls never sends an IP address as SNI.
            peer.sni = NO_SERVER_NAME.to_owned();
        } else {
            peer.sni.clone_from(&self.sni);
        }
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca.clone_from(&self.ca);
        peer.client_cert_key.clone_from(&self.client);
        peer.options.alpn = self.alpn.clone();
        peer.group_key = self.group_key;
    }
}

/// Pingora's error types for a failed TLS handshake with a backend.
pub fn is_handshake_failure(e: &pingora::Error) -> bool {
    use pingora::ErrorType::*;
    matches!(
        e.etype(),
        TLSHandshakeFailure | InvalidCert | HandshakeError
    )
}
