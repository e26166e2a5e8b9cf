//! TLS on every hop, for real: the router binary terminating TLS 1.3 for rustls, reqwest and
//! openssl clients; SNI certificate choice and hot rotation; SNI/Host agreement; verified TLS
//! and mutual TLS to backends; HTTPS admin and metrics listeners with client certificates.
//! Every certificate is issued by rcgen for the test.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Cluster, Options, FAST_SHUTDOWN, OPERATOR};
use residency_config::testing::{client_config, Ca, Leaf};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::version::{TLS12, TLS13};
use tokio::net::TcpStream;

const H1: &[&[u8]] = &[b"http/1.1"];
const H2: &[&[u8]] = &[b"h2"];

/// `[tls]` (`extra`: more of its keys, or its sub-tables) with `apps` for the tenant hosts and
/// the region hosts, `fallback` as the default; the watcher polls every 100 ms so rotations
/// show quickly.
fn tls_tables(extra: &str) -> String {
    format!(
        "[tls]\n{extra}\n\
         [[tls.certificates]]\nname = \"apps\"\ncert = \"apps.pem\"\nkey = \"apps.key\"\n\
         [[tls.certificates]]\nname = \"fallback\"\ncert = \"fallback.pem\"\nkey = \"fallback.key\"\ndefault = true\n\
         [reload]\nwatch_interval_ms = 100\n{FAST_SHUTDOWN}"
    )
}

struct Pki {
    ca: Ca,
    apps: Leaf,
    fallback: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new("residency test CA");
        let apps = ca.issue(&[
            "*.app.example.com",
            "us.api.example.com",
            "eu.api.example.com",
        ]);
        let fallback = ca.issue(&["fallback.example.com"]);
        Pki { ca, apps, fallback }
    }

    fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("ca.pem", self.ca.pem().into_bytes()),
            ("apps.pem", self.apps.cert_pem.clone().into_bytes()),
            ("apps.key", self.apps.key_pem.clone().into_bytes()),
            ("fallback.pem", self.fallback.cert_pem.clone().into_bytes()),
            ("fallback.key", self.fallback.key_pem.clone().into_bytes()),
        ]
    }
}

/// Sends the request; the status and JSON body.
async fn json(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let (status, _, body) = crate::common::json(request.send().await.unwrap()).await;
    (status, body)
}

async fn https_cluster(pki: &Pki, extra_tables: &str, metrics: bool) -> Cluster {
    Cluster::start_with(Options {
        process: true,
        https: true,
        metrics,
        tables: tls_tables(extra_tables),
        files: pki.files(),
        ..Options::default()
    })
    .await
}

/// A reqwest client speaking only what `config` allows, with `host` resolved to `addr`.
fn https_client(config: rustls::ClientConfig, host: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .resolve(host, addr)
        .no_proxy()
        .build()
        .unwrap()
}

/// One TLS handshake, nothing else: the certificate the router chose, or the failure.
async fn handshake(
    addr: SocketAddr,
    server_name: &str,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

async fn served_certificate(addr: SocketAddr, server_name: &str) -> CertificateDer<'static> {
    let stream = handshake(addr, server_name, client_config(None, &[&TLS13], H1, None))
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn openssl_s_client(addr: SocketAddr, version_flag: &str) -> (bool, String) {
    let output = Command::new("openssl")
        .args(["s_client", version_flag, "-connect"])
        .arg(addr.to_string())
        .args(["-servername", "acme.app.example.com"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed (scripts/prereqs.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_clients_get_through_over_http1_and_h2_and_tls12_clients_fail_the_handshake() {
    let pki = Pki::new();
    let cluster = https_cluster(&pki, "", false).await;
    let https = cluster.https.unwrap();
    let host = "acme.app.example.com";
    let url = format!("https://{host}:{}/orders", https.port());

    for (alpn, version) in [
        (H1, reqwest::Version::HTTP_11),
        (H2, reqwest::Version::HTTP_2),
    ] {
        let client = https_client(
            client_config(Some(&pki.ca), &[&TLS13], alpn, None),
            host,
            https,
        );
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["region"], "us",
            "acme is named by the TLS host: {body}"
        );
        assert_eq!(body["headers"]["x-residency-tenant"], "acme");
    }

    // A client that only speaks TLS 1.2 gets no handshake, let alone a response.
    let tls12 = client_config(Some(&pki.ca), &[&TLS12], H1, None);
    let refused = handshake(https, host, tls12.clone()).await;
    let error = refused
        .expect_err("a TLS 1.2 handshake must fail")
        .to_string();
    assert!(error.contains("ProtocolVersion"), "{error}");
    assert!(https_client(tls12, host, https)
        .get(&url)
        .send()
        .await
        .is_err());

    // The same with OpenSSL, as an operator would check it.
    let (ok, text) = openssl_s_client(https, "-tls1_2");
    assert!(!ok, "openssl -tls1_2 connected:\n{text}");
    assert!(text.contains("alert protocol version"), "{text}");
    let (ok, text) = openssl_s_client(https, "-tls1_3");
    assert!(ok, "openssl -tls1_3 failed:\n{text}");
    assert!(text.contains("TLSv1.3"), "{text}");

    // Plain HTTP keeps working beside it.
    let (status, body) = json(cluster.get("/", "acme")).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate_rotations_apply_and_a_broken_certificate_keeps_the_old_one() {
    let pki = Pki::new();
    let cluster = https_cluster(&pki, "", true).await;
    let https = cluster.https.unwrap();

    assert_eq!(
        served_certificate(https, "acme.app.example.com").await,
        pki.apps.der
    );
    assert_eq!(
        served_certificate(https, "eu.api.example.com").await,
        pki.apps.der
    );
    assert_eq!(
        served_certificate(https, "fallback.example.com").await,
        pki.fallback.der
    );
    assert_eq!(
        served_certificate(https, "unknown.example.org").await,
        pki.fallback.der,
        "an unknown name gets the default certificate"
    );
    let expiry = "residency_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(
        cluster.metric(expiry, &[("name", "apps")]).await as i64,
        pki.apps.not_after
    );

    // Rotation: new files in place (key first, as deploy tools often do), served without a
    // restart once both are written.
    let rotated = pki.ca.issue(&["*.app.example.com", "us.api.example.com"]);
    rotated.write(cluster.dir.path(), "apps");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(https, "acme.app.example.com").await != rotated.der {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cluster.metric(expiry, &[("name", "apps")]).await as i64,
        rotated.not_after
    );

    // A broken certificate (another certificate's key) is refused; the rotated one serves on.
    let stranger = pki.ca.issue(&["*.app.example.com"]);
    std::fs::write(cluster.dir.path().join("apps.key"), &stranger.key_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster
        .router
        .log_text()
        .contains("does not belong to the certificate")
    {
        assert!(Instant::now() < deadline, "the broken key was not noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served_certificate(https, "acme.app.example.com").await,
        rotated.der
    );
    let client = https_client(
        client_config(Some(&pki.ca), &[&TLS13], H1, None),
        "acme.app.example.com",
        https,
    );
    let url = format!("https://acme.app.example.com:{}/", https.port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // An expired pair in place of the valid one (an old backup put back) is refused as well;
    // an operator who means it forces it in.
    let expired = pki.ca.issue_expired(&["*.app.example.com"]);
    expired.write(cluster.dir.path(), "apps");
    let refused = cluster.reload(false).await;
    let error = refused.error.unwrap_or_default();
    assert!(
        error.contains("certificate `apps`") && error.contains("expired on"),
        "{error}"
    );
    assert_eq!(
        served_certificate(https, "acme.app.example.com").await,
        rotated.der
    );
    let forced = cluster.reload(true).await;
    assert!(forced.ok, "{forced:?}");
    assert_eq!(
        served_certificate(https, "acme.app.example.com").await,
        expired.der
    );
}

/// A connection opened for one server name, on which each request names its own host: the
/// Host header over HTTP/1.1, `:authority` over HTTP/2 (how browsers reuse a connection for
/// every host its certificate covers).
enum Connection {
    Http1(reqwest::Client, String),
    Http2(hyper::client::conn::http2::SendRequest<String>),
}

impl Connection {
    async fn open(addr: SocketAddr, server_name: &str, ca: &Ca, alpn: &[&[u8]]) -> Connection {
        let config = client_config(Some(ca), &[&TLS13], alpn, None);
        if alpn == H1 {
            let url = format!("https://{server_name}:{}", addr.port());
            return Connection::Http1(https_client(config, server_name, addr), url);
        }
        let tls = handshake(addr, server_name, config).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        Connection::Http2(sender)
    }

    /// GET `path` for `host`, with `x-tenant-id: tenant` if given: the status and JSON body.
    async fn get(
        &mut self,
        host: &str,
        path: &str,
        tenant: Option<&str>,
    ) -> (u16, serde_json::Value) {
        match self {
            Connection::Http1(client, url) => {
                let mut request = client.get(format!("{url}{path}")).header("host", host);
                if let Some(tenant) = tenant {
                    request = request.header("x-tenant-id", tenant);
                }
                json(request).await
            }
            Connection::Http2(sender) => {
                use http_body_util::BodyExt;
                let mut request = hyper::Request::get(format!("https://{host}{path}"));
                if let Some(tenant) = tenant {
                    request = request.header("x-tenant-id", tenant);
                }
                let response = sender
                    .send_request(request.body(String::new()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(response.version(), hyper::Version::HTTP_2);
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, serde_json::from_slice(&body).unwrap())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_of_the_tls_server_name_and_of_the_request_must_agree() {
    let pki = Pki::new();
    let cluster = https_cluster(&pki, "", false).await;
    let https = cluster.https.unwrap();
    let port = https.port();
    let acme_host = format!("acme.app.example.com:{port}");
    let us_host = format!("us.api.example.com:{port}");
    let globex_host = format!("globex.app.example.com:{port}");
    // On a connection opened for acme: (host, x-tenant-id, path) -> (status, error code).
    let cases: [(&str, Option<&str>, &str, u16, &str); 7] = [
        // Agreement, and a region host carried by the same certificate.
        (&acme_host, None, "/", 200, ""),
        (&us_host, Some("acme"), "/", 200, ""),
        // The server name checks the request's tenant but never names one by itself.
        (&us_host, None, "/", 400, "tenant_required"),
        // acme's connection carrying globex's request: by host (421, issue 14: browsers
        // retry a 421 on a new connection), or by a header or path that also disagrees with
        // the host (400).
        (&globex_host, None, "/", 421, "misdirected_request"),
        (&acme_host, Some("globex"), "/", 400, "ambiguous_tenant"),
        (
            &acme_host,
            None,
            "/t/globex/orders",
            400,
            "ambiguous_tenant",
        ),
        // A host the connection's certificate does not cover belongs on another connection.
        (
            "fallback.example.com",
            Some("acme"),
            "/",
            421,
            "misdirected_request",
        ),
    ];
    for alpn in [H1, H2] {
        let mut acme = Connection::open(https, "acme.app.example.com", &pki.ca, alpn).await;
        for (host, tenant, path, status, error) in cases {
            let (got, body) = acme.get(host, path, tenant).await;
            let case = format!(
                "{} {host} {tenant:?} {path}: {body}",
                String::from_utf8_lossy(alpn[0])
            );
            assert_eq!(got, status, "{case}");
            if status == 200 {
                assert_eq!(body["region"], "us", "{case}");
                assert_eq!(body["headers"]["x-forwarded-proto"], "https", "{case}");
            } else {
                assert_eq!(body["error"], error, "{case}");
            }
        }

        // No tenant in the server name: the other sources decide alone.
        let mut fallback = Connection::open(https, "fallback.example.com", &pki.ca, alpn).await;
        let host = format!("fallback.example.com:{port}");
        let (status, body) = fallback.get(&host, "/", Some("globex")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["region"], "eu");
    }
}

/// Without `listen.http`, client traffic is taken over TLS only: nothing listens in plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_traffic_can_be_tls_only() {
    let pki = Pki::new();
    let mut cluster = https_cluster(&pki, "", false).await;
    let (https, plain) = (cluster.https.unwrap(), cluster.router.addr());
    let config = cluster.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    let tls_only = text.replace(&format!("http = \"{plain}\"\n"), "");
    assert_ne!(text, tls_only);
    std::fs::write(&config, tls_only).unwrap();
    // Restarted, it is up once the TLS listener accepts.
    cluster.router.process_mut().addr = https;
    cluster.restart();

    let host = "acme.app.example.com";
    let client = https_client(
        client_config(Some(&pki.ca), &[&TLS13], H1, None),
        host,
        https,
    );
    let (status, body) = json(client.get(format!("https://{host}:{}/", https.port()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["region"], "us");
    assert!(cluster.router.process().log_text().contains("http=None"));
    assert_eq!(
        cluster.router.process().listening_ports(),
        BTreeSet::from([https.port()]),
        "something besides the TLS listener is listening"
    );
}

/// TLS 1.2 and unverified backends are an operator's explicit choices: each works only when
/// configured, and each is logged loudly at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_unverified_backends_work_when_configured_and_are_logged() {
    let pki = Pki::new();
    // Virginia's only backend: an old TLS 1.2 server with a certificate nobody trusts.
    let stranger_ca = Ca::new("nobody's CA");
    let virginia = stranger_ca.issue(&["virginia.internal"]);
    let cluster = Cluster::start_with(Options {
        process: true,
        https: true,
        backends_per_site: [1, 1, 1, 1],
        tables: tls_tables("min_version = \"1.2\"\n"),
        files: pki.files(),
        backend_tls: vec![(0, 0, virginia.server_config_for(&[&TLS12], None))],
        site_lines: [
            "  [regions.sites.tls]\n  insecure_skip_verify = true\n",
            "",
            "",
            "",
        ],
        ..Options::default()
    })
    .await;
    let log = cluster.router.process().log_text();
    assert!(
        log.contains("clients and backends may use TLS 1.2"),
        "{log}"
    );
    assert!(
        log.contains("insecure_skip_verify: the backends' certificates are NOT verified"),
        "{log}"
    );

    let https = cluster.https.unwrap();
    let host = "acme.app.example.com";
    let tls12 = https_client(
        client_config(Some(&pki.ca), &[&TLS12], H1, None),
        host,
        https,
    );
    let url = format!("https://{host}:{}/", https.port());
    let virginia = &cluster.site("virginia")[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    while virginia.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "virginia never served acme: {}",
            cluster.router.process().log_text()
        );
        let (status, body) = json(tls12.get(&url)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["region"], "us");
    }
    let (ok, text) = openssl_s_client(https, "-tls1_2");
    assert!(
        ok,
        "openssl -tls1_2 failed although TLS 1.2 is allowed:\n{text}"
    );
}

/// Sites in `DEMO_SITES` order: virginia (2 backends: verified TLS), oregon (mutual TLS, h2),
/// frankfurt (untrusted CA; wrong name; TLS 1.2 only), dublin (demands a client certificate it
/// never gets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_are_verified_mutual_tls_works_and_bad_backends_fail_closed() {
    let backend_ca = Ca::new("backend CA");
    let stranger_ca = Ca::new("somebody else's CA");
    let virginia = backend_ca.issue(&["virginia.backend.test"]);
    let oregon = backend_ca.issue(&["oregon.backend.test"]);
    let frankfurt_untrusted = stranger_ca.issue(&["frankfurt.backend.test"]);
    let frankfurt_wrong_name = backend_ca.issue(&["elsewhere.backend.test"]);
    let frankfurt_tls12 = backend_ca.issue(&["frankfurt.backend.test"]);
    let dublin = backend_ca.issue(&["dublin.backend.test"]);
    let router_identity = backend_ca.issue(&["router.internal"]);
    let files = vec![
        ("backend-ca.pem", backend_ca.pem().into_bytes()),
        ("router.pem", router_identity.cert_pem.clone().into_bytes()),
        ("router.key", router_identity.key_pem.clone().into_bytes()),
    ];
    let cluster = Cluster::start_with(Options {
        process: true,
        backends_per_site: [2, 1, 3, 1],
        metrics: true,
        // Only requests make handshakes, so each backend's failed handshakes are requests'.
        tables: format!("{FAST_SHUTDOWN}[health]\ncheck = \"none\"\n"),
        files,
        backend_tls: vec![
            (0, 0, virginia.server_config(None)),
            (0, 1, virginia.server_config(None)),
            (1, 0, oregon.server_config(Some(&backend_ca))),
            (2, 0, frankfurt_untrusted.server_config(None)),
            (2, 1, frankfurt_wrong_name.server_config(None)),
            (2, 2, frankfurt_tls12.server_config_for(&[&TLS12], None)),
            (3, 0, dublin.server_config(Some(&backend_ca))),
        ],
        site_lines: [
            "  [regions.sites.tls]\n  sni = \"virginia.backend.test\"\n  ca = \"backend-ca.pem\"\n",
            "  [regions.sites.tls]\n  sni = \"oregon.backend.test\"\n  ca = \"backend-ca.pem\"\n  \
             client_cert = \"router.pem\"\n  client_key = \"router.key\"\n  h2 = true\n",
            "  [regions.sites.tls]\n  sni = \"frankfurt.backend.test\"\n  ca = \"backend-ca.pem\"\n",
            "  [regions.sites.tls]\n  sni = \"dublin.backend.test\"\n  ca = \"backend-ca.pem\"\n",
        ],
        ..Options::default()
    })
    .await;

    // us: every request answered, by both sites (virginia verified, oregon with mutual TLS,
    // over HTTP/2 as its `h2 = true` asks).
    for _ in 0..12 {
        let (status, body) = json(cluster.get("/", "acme")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["region"], "us");
        let expected = if body["site"] == "oregon" {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(body["http_version"], expected, "{body}");
    }
    let served = |site: &str| cluster.site(site).iter().map(|b| b.requests()).sum::<u64>();
    assert!(served("virginia") > 0 && served("oregon") > 0);
    // The router's own client certificate (oregon's mutual TLS) has its expiry exported too.
    let expiry = "residency_tls_certificate_expiry_timestamp_seconds";
    let oregon_client = [("name", "client:oregon")];
    assert_eq!(
        cluster.metric(expiry, &oregon_client).await as i64,
        router_identity.not_after
    );

    // eu (umbrella: its replication expired, so eu only): no backend can be trusted. Each one
    // is tried (its handshake fails) and none ever sees a request.
    let eu = || {
        cluster
            .site("frankfurt")
            .iter()
            .chain(cluster.site("dublin"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while sent < 4 || eu().any(|backend| backend.failed_handshakes() == 0) {
        assert!(Instant::now() < deadline, "not every eu backend was tried");
        let (status, body) = json(cluster.get("/", "umbrella")).await;
        assert!(status == 502 || status == 503, "{status} {body}");
        sent += 1;
    }
    for backend in eu() {
        assert_eq!(
            backend.requests(),
            0,
            "{} accepted a connection it must not",
            backend.addr()
        );
    }
    let cluster = &cluster;
    let failures = |site: &'static str, kind: &'static str| async move {
        let labels = [("region", "eu"), ("site", site), ("kind", kind)];
        cluster
            .metric("residency_upstream_errors_total", &labels)
            .await
    };
    let frankfurt = failures("frankfurt", "tls").await;
    assert!(
        frankfurt >= 3.0,
        "every frankfurt backend fails: {frankfurt}"
    );
    // In TLS 1.3 the server judges the client certificate after the client's side of the
    // handshake is done: the refusal arrives as the answer to the request.
    let dublin = failures("dublin", "tls").await + failures("dublin", "reset").await;
    assert!(dublin >= 1.0, "dublin: {dublin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_metrics_serve_https_and_the_admin_api_can_demand_client_certificates() {
    let pki = Pki::new();
    let operators_ca = Ca::new("operators CA");
    let operator = operators_ca.issue(&["alice.ops.example.com"]);
    let admin_cert = pki.ca.issue(&["localhost", "127.0.0.1"]);
    let mut files = pki.files();
    files.extend([
        ("operators-ca.pem", operators_ca.pem().into_bytes()),
        ("admin.pem", admin_cert.cert_pem.clone().into_bytes()),
        ("admin.key", admin_cert.key_pem.clone().into_bytes()),
    ]);
    let extra = "[tls.admin]\ncert = \"admin.pem\"\nkey = \"admin.key\"\nclient_ca = \"operators-ca.pem\"\n\
                 [tls.metrics]\ncert = \"admin.pem\"\nkey = \"admin.key\"\n";
    let cluster = Cluster::start_with(Options {
        process: true,
        https: true,
        admin: true,
        metrics: true,
        tables: tls_tables(extra),
        files,
        ..Options::default()
    })
    .await;
    let (admin, metrics) = (cluster.admin.unwrap(), cluster.metrics.unwrap());
    // Each call on a new connection, so each is a new handshake.
    // Each call on a new connection. Clones of a client config share its TLS session cache,
    // so a client that could resume a session will try.
    let list_tenants = |tls: rustls::ClientConfig| {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("https://127.0.0.1:{}/v1/tenants", admin.port()))
            .bearer_auth(OPERATOR)
            .send()
    };

    let presenting =
        |identity: Option<&Leaf>| client_config(Some(&pki.ca), &[&TLS13], H1, identity);
    let alice = presenting(Some(&operator));
    for _ in 0..2 {
        let (status, _, body) =
            crate::common::json(list_tenants(alice.clone()).await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["tenants"].as_array().unwrap().len() >= 4);
    }

    // No client certificate, or one from another CA: no handshake.
    let stranger = pki.ca.issue(&["mallory.example.com"]);
    for identity in [None, Some(&stranger)] {
        assert!(
            list_tenants(presenting(identity)).await.is_err(),
            "admin API answered without a trusted client certificate"
        );
    }

    // The operators' CA is replaced (say it leaked): from the next handshake on, certificates
    // of the old CA are refused, even to a client holding a session from before, and those of
    // the new one are accepted, without a restart.
    let next_ca = Ca::new("operators CA, next");
    let bob = next_ca.issue(&["bob.ops.example.com"]);
    std::fs::write(cluster.dir.path().join("operators-ca.pem"), next_ca.pem()).unwrap();
    let answer = cluster.reload(false).await;
    assert!(answer.ok, "{answer:?}");
    assert!(
        list_tenants(alice).await.is_err(),
        "a session from before was resumed"
    );
    assert_eq!(
        list_tenants(presenting(Some(&bob))).await.unwrap().status(),
        200
    );
    // Plain HTTP on a TLS port gets nothing either.
    assert!(cluster
        .client
        .get(format!("http://{admin}/livez"))
        .send()
        .await
        .is_err());

    // Metrics over HTTPS, no client certificate needed; TLS 1.2 refused there too.
    let scraper = https_client(
        client_config(Some(&pki.ca), &[&TLS13], H1, None),
        "localhost",
        metrics,
    );
    let text = scraper
        .get(format!("https://localhost:{}/metrics", metrics.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in ["apps", "fallback", "admin", "metrics"] {
        assert!(
            text.contains(&format!(
                "residency_tls_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}"
            )),
            "no expiry for {name}:\n{text}"
        );
    }
    assert!(handshake(
        metrics,
        "localhost",
        client_config(Some(&pki.ca), &[&TLS12], H1, None)
    )
    .await
    .is_err());
}
