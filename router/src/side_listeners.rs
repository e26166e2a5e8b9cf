//! The side listeners: `/metrics` and the admin API, each on its own port, plain or TLS (with
//! client certificates judged by the live configuration on every handshake).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use residency_admin::Api;
use residency_dataplane::metrics::render;
use residency_dataplane::state::SharedState;
use residency_dataplane::tls::{crypto_provider, protocol_versions, Listener, LiveCertificate};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The listener a side service was handed, or binds `addr`, retrying each second: during an
/// upgrade the old process still holds the port for its grace period. `None` once shutting
/// down.
async fn bind_when_free(
    bound: &Mutex<Option<std::net::TcpListener>>,
    addr: SocketAddr,
    what: &str,
    shutdown: &mut pingora::server::ShutdownWatch,
) -> Option<TcpListener> {
    let handed = bound.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(listener) = handed {
        match listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
        {
            Ok(listener) => return Some(listener),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot use the {what} listener handed over; binding")
            }
        }
    }
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot bind the {what} listener yet; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return None,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// `GET /metrics` on `listen.metrics`, as a Pingora background service.
pub struct MetricsServer {
    pub addr: SocketAddr,
    /// Already bound on `addr`, if the launcher held the port.
    pub bound: Mutex<Option<std::net::TcpListener>>,
    /// `[tls.metrics]`: HTTPS, optionally with client certificates.
    pub tls: Option<Arc<ServerConfig>>,
    pub state: SharedState,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for MetricsServer {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use axum::http::header::CONTENT_TYPE;
        let Some(listener) = bind_when_free(&self.bound, self.addr, "metrics", &mut shutdown).await
        else {
            return;
        };
        tracing::info!(addr = %self.addr, "metrics listening on /metrics");
        let state = self.state.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let state = state.load_full();
                async move {
                    let body = tokio::task::spawn_blocking(move || render(&state))
                        .await
                        .unwrap_or_default();
                    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
                }
            }),
        );
        serve(listener, self.tls.clone(), app, shutdown).await;
    }
}

/// The admin API as a Pingora background service.
pub struct AdminServer {
    pub addr: SocketAddr,
    /// Already bound on `addr`, if the launcher held the port.
    pub bound: Mutex<Option<std::net::TcpListener>>,
    /// `[tls.admin]`: HTTPS, optionally with client certificates.
    pub tls: Option<Arc<ServerConfig>>,
    pub api: Arc<Api>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for AdminServer {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let Some(listener) = bind_when_free(&self.bound, self.addr, "admin", &mut shutdown).await
        else {
            return;
        };
        // During an upgrade the old process may still append until it lets go of the log.
        loop {
            match self.api.audit.take_over() {
                Ok(true) => break,
                Ok(false) => {
                    tracing::warn!("another process still writes the audit log; waiting");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot take over the audit log; the admin API is not served");
                    return;
                }
            }
        }
        tracing::info!(addr = %self.addr, "admin API listening");
        let api = Arc::clone(&self.api);
        // Aggregates of refused calls are audited when their interval ends, even if the
        // source stopped calling; what is still counted when the router stops is audited by
        // `server::run` once Pingora has stopped every service.
        let ticker = {
            let api = Arc::clone(&api);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let api = Arc::clone(&api);
                    let _ =
                        tokio::task::spawn_blocking(move || api.audit_due_refusals(false)).await;
                }
            })
        };
        let app = residency_admin::routes(Arc::clone(&api));
        serve(listener, self.tls.clone(), app, shutdown).await;
        ticker.abort();
        tracing::info!("admin API stopped");
    }
}

/// Client certificates on the admin or metrics listener, judged by the live configuration's
/// `client_ca` on each handshake: a reload that replaces a compromised operator CA, or turns
/// client certificates on or off, applies to the next connection.
struct LiveClientCa {
    state: SharedState,
    listener: Listener,
    provider: Arc<CryptoProvider>,
}

impl LiveClientCa {
    fn verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        let state = self.state.load();
        let settings = self.listener.settings(&state.snapshot.tls)?;
        settings.client_verifier.clone()
    }
}

impl std::fmt::Debug for LiveClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveClientCa({:?})", self.listener)
    }
}

impl ClientCertVerifier for LiveClientCa {
    fn offer_client_auth(&self) -> bool {
        self.verifier().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.offer_client_auth()
    }

    /// No CA names are hinted: they would have to outlive the configuration they came from.
    /// Clients present their one certificate all the same.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.verifier() {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            // `client_ca` was removed during this handshake: nothing left to trust it by.
            None => Err(rustls::Error::General("no client CA is configured".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls config of the admin or metrics listener, `None` without `[tls.admin]` /
/// `[tls.metrics]`. Its certificate and client CA are read from the live configuration on
/// each handshake.
pub fn listener_config(
    state: &SharedState,
    listener: Listener,
) -> Result<Option<Arc<ServerConfig>>, String> {
    let current = state.load();
    let tls = &current.snapshot.tls;
    if listener.settings(tls).is_none() {
        return Ok(None);
    }
    let provider = Arc::new(crypto_provider(tls.min_version));
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(protocol_versions(tls.min_version))
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(LiveClientCa {
            state: Arc::clone(state),
            listener,
            provider,
        }))
        .with_cert_resolver(Arc::new(LiveCertificate::new(state.clone(), listener)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No session resumption: a resumed session skips client authentication, so a client
    // certificate of a CA removed since would get in on its old session. Operators' tools
    // make few connections; each pays a full handshake.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Some(Arc::new(config)))
}

/// A TLS listener for axum: handshakes run in their own tasks (with a deadline), so a slow
/// client cannot hold up the others.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (sender, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = sender.closed() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { handshaken, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accept task ends only once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `app` on `listener`, over TLS when `tls` is set, until shutdown.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: axum::Router,
    mut shutdown: pingora::server::ShutdownWatch,
) {
    use axum::serve::ListenerExt;
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(config) => match TlsListener::new(listener, config) {
            Ok(listener) => {
                // `tap_io` only to get axum's connect-info support for a custom listener.
                axum::serve(listener.tap_io(|_| {}), app)
                    .with_graceful_shutdown(stop)
                    .await
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "listener stopped");
    }
}
