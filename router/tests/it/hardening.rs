//! The differential corpus (issue 14 item 3): hostile requests sent as raw bytes to a real
//! router, each with the status and error code it must get and, when it is routed, the exact
//! path and headers the backend received. Every byte of a request may disagree with every
//! other byte; a backend reading them differently must never serve another tenant.

use crate::common::{Cluster, Options};

/// What the backend must have received, for a routed request.
struct Seen {
    region: &'static str,
    path: &'static str,
    /// Header -> exact value the backend saw.
    values: &'static [(&'static str, &'static str)],
    /// Headers the backend must not have received at all.
    absent: &'static [&'static str],
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    /// The router's JSON error code; `None` for a routed request or Pingora's own answer.
    error: Option<&'static str>,
    seen: Option<Seen>,
}

/// `METHOD target HTTP/1.1`, `Host: localhost` unless `headers` sets one, `Connection: close`.
fn request(method: &str, target: &str, headers: &str) -> Vec<u8> {
    let sets_host = headers
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with("host:"));
    let host = if sets_host { "" } else { "Host: localhost\r\n" };
    format!("{method} {target} HTTP/1.1\r\n{host}{headers}Connection: close\r\n\r\n").into_bytes()
}

fn refused(name: &'static str, request: Vec<u8>, status: u16, error: &'static str) -> Case {
    Case {
        name,
        request,
        status,
        error: Some(error),
        seen: None,
    }
}

/// Answered by Pingora before any hook runs (docs/hardening.md lists these).
fn refused_by_pingora(name: &'static str, request: Vec<u8>, status: u16) -> Case {
    Case {
        name,
        request,
        status,
        error: None,
        seen: None,
    }
}

fn routed(name: &'static str, request: Vec<u8>, seen: Seen) -> Case {
    Case {
        name,
        request,
        status: 200,
        error: None,
        seen: Some(seen),
    }
}

const ACME: &str = "x-tenant-id: acme\r\n";

fn us(path: &'static str) -> Seen {
    Seen {
        region: "us",
        path,
        values: &[("x-residency-tenant", "acme"), ("x-residency-region", "us")],
        absent: &[],
    }
}

fn corpus() -> Vec<Case> {
    let ambiguous = |name, method, target: &str, headers: &str| {
        refused(
            name,
            request(method, target, headers),
            400,
            "ambiguous_tenant",
        )
    };
    let bad = |name, headers: &str| refused(name, request("GET", "/", headers), 400, "bad_request");
    let long_id = format!("x-tenant-id: {}\r\n", "a".repeat(65));
    vec![
        // Paths a lenient backend reads as another tenant (the header names acme).
        ambiguous("tomcat ..;", "POST", "/t/acme/..;/globex/orders", ACME),
        ambiguous("encoded slash", "POST", "/t/acme/..%2Fglobex/orders", ACME),
        ambiguous("encoded slash, lower case", "POST", "/t/acme/..%2fglobex/orders", ACME),
        ambiguous("backslash", "POST", "/t/acme/..\\globex/o", ACME),
        ambiguous("encoded backslash", "POST", "/t/acme/..%5Cglobex/o", ACME),
        ambiguous("prefix only after decoding", "POST", "/t%2Fglobex/orders", ACME),
        ambiguous("prefix only case-insensitively", "POST", "/T/globex/orders", ACME),
        ambiguous("params before the tenant", "POST", "/t;x/globex/orders", ACME),
        ambiguous("encoded params before the tenant", "POST", "/t%3Bx/globex/orders", ACME),
        ambiguous("double encoding", "GET", "/t/acme/..%252Fglobex", ACME),
        ambiguous("triple encoding", "GET", "/t/acme/..%25252Fglobex", ACME),
        ambiguous("encoded dots", "GET", "/t/acme/%2e%2e/globex/", ACME),
        ambiguous("encoded dots, upper case", "GET", "/t/acme/%2E%2E/globex/", ACME),
        ambiguous("encoded dots before the prefix", "GET", "/%2e%2e/t/globex/", ACME),
        ambiguous("escaped unreserved byte", "GET", "/t/%61cme/", ACME),
        ambiguous("NUL", "GET", "/t/acme/x%00", ACME),
        ambiguous("overlong UTF-8 slash", "GET", "/t/acme/%C0%AF..%C0%AFglobex", ACME),
        ambiguous("overlong UTF-8, lower case", "GET", "/t/acme/..%c0%afglobex", ACME),
        ambiguous("overlong 3-byte slash", "GET", "/t/acme/%E0%80%AF", ACME),
        ambiguous("dot segments", "GET", "/t/acme/../globex/", ACME),
        ambiguous("dot segment", "GET", "/t/./acme/", ACME),
        ambiguous("leading empty segment", "GET", "//t/globex/", ACME),
        ambiguous("inner empty segment", "GET", "/t//globex/", ACME),
        ambiguous("a lenient reader sees no tenant", "GET", "/t/acme/%2e%2e", ACME),
        ambiguous("path against header", "GET", "/t/globex/", ACME),
        refused(
            "params in the tenant segment",
            request("GET", "/t/acme;jsessionid=1/x", ""),
            400,
            "invalid_tenant",
        ),
        // Paths whose readings agree are served as sent.
        routed("upper-case tenant", request("GET", "/t/ACME/x", ""), us("/t/ACME/x")),
        routed(
            "encoded slash after the tenant",
            request("GET", "/t/acme/a%2Fb", ""),
            us("/t/acme/a%2Fb"),
        ),
        routed("encoded percent", request("GET", "/t/acme/100%25", ""), us("/t/acme/100%25")),
        routed("params after the tenant", request("GET", "/t/acme/x;v=1", ""), us("/t/acme/x;v=1")),
        routed(
            "dots in the query",
            request("GET", "/t/acme?x=../globex", ""),
            us("/t/acme?x=../globex"),
        ),
        routed("broken escape", request("GET", "/t/acme/%zz", ""), us("/t/acme/%zz")),
        // Hosts with more than one reading.
        bad("port not digits", "Host: globex.app.example.com:x\r\nx-tenant-id: acme\r\n"),
        bad("two ports", "Host: acme.app.example.com:80:globex\r\n"),
        bad("host list", "Host: acme.app.example.com, globex.app.example.com\r\n"),
        refused_by_pingora("userinfo", request("GET", "/", "Host: acme@globex.app.example.com\r\n"), 400),
        refused_by_pingora(
            "two hosts",
            request("GET", "/", "Host: acme.app.example.com\r\nHost: globex.app.example.com\r\n"),
            400,
        ),
        bad("encoded host", "Host: glo%62ex.app.example.com\r\n"),
        bad("space in host", "Host: acme.app.example.com globex\r\nx-tenant-id: acme\r\n"),
        refused(
            "non-ASCII host",
            b"GET / HTTP/1.1\r\nHost: \xc4\x85cme.app.example.com\r\nx-tenant-id: acme\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        refused_by_pingora(
            "absolute-form against Host",
            request("GET", "http://globex.app.example.com/", "Host: acme.app.example.com\r\n"),
            400,
        ),
        refused(
            "host against header",
            request("GET", "/", "Host: globex.app.example.com\r\nx-tenant-id: acme\r\n"),
            400,
            "ambiguous_tenant",
        ),
        // Hosts with one reading are routed by it.
        routed(
            "upper-case host",
            request("GET", "/x", "Host: GLOBEX.APP.EXAMPLE.COM\r\n"),
            Seen {
                region: "eu",
                path: "/x",
                values: &[("x-residency-tenant", "globex"), ("x-forwarded-host", "GLOBEX.APP.EXAMPLE.COM")],
                absent: &[],
            },
        ),
        routed(
            "trailing dot and port",
            request("GET", "/x", "Host: globex.app.example.com.:8080\r\n"),
            Seen {
                region: "eu",
                path: "/x",
                values: &[("x-residency-tenant", "globex")],
                absent: &[],
            },
        ),
        routed(
            "absolute-form agreeing with Host",
            request("GET", "http://globex.app.example.com/x", "Host: globex.app.example.com\r\n"),
            Seen {
                region: "eu",
                path: "/x",
                values: &[("x-residency-tenant", "globex"), ("host", "globex.app.example.com")],
                absent: &[],
            },
        ),
        routed(
            "empty host",
            request("GET", "/", "Host: \r\nx-tenant-id: acme\r\n"),
            Seen { absent: &["x-forwarded-host"], ..us("/") },
        ),
        routed("IPv6 literal host", request("GET", "/", "Host: [::1]:80\r\nx-tenant-id: acme\r\n"), us("/")),
        // Tenant headers.
        refused(
            "tenant header twice",
            request("GET", "/", "x-tenant-id: acme\r\nx-tenant-id: acme\r\n"),
            400,
            "ambiguous_tenant",
        ),
        refused(
            "tenant header twice, mixed case",
            request("GET", "/", "x-tenant-id: acme\r\nX-Tenant-ID: globex\r\n"),
            400,
            "ambiguous_tenant",
        ),
        refused("tenant id too long", request("GET", "/", &long_id), 400, "invalid_tenant"),
        refused("tenant id with underscore", request("GET", "/", "x-tenant-id: ac_me\r\n"), 400, "invalid_tenant"),
        routed("mixed-case header name and id", request("GET", "/", "X-Tenant-Id: ACME\r\n"), us("/")),
        // Forwarding headers are the router's.
        routed(
            "x-forwarded-host",
            request("GET", "/", "x-tenant-id: acme\r\nX-Forwarded-Host: globex.app.example.com\r\n"),
            Seen { values: &[("x-forwarded-host", "localhost"), ("x-residency-tenant", "acme")], ..us("/") },
        ),
        routed(
            "forwarded",
            request("GET", "/", "x-tenant-id: acme\r\nForwarded: host=globex.app.example.com;proto=https\r\n"),
            Seen { absent: &["forwarded"], ..us("/") },
        ),
        routed(
            "original and rewrite URL",
            request("GET", "/", "x-tenant-id: acme\r\nX-Original-URL: /t/globex/\r\nX-Rewrite-URL: /t/globex/\r\n"),
            Seen { absent: &["x-original-url", "x-rewrite-url"], ..us("/") },
        ),
        routed(
            "real ip and forwarded port and prefix",
            request("GET", "/", "x-tenant-id: acme\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /t/globex\r\n"),
            Seen { absent: &["x-real-ip", "x-forwarded-port", "x-forwarded-prefix"], ..us("/") },
        ),
        routed(
            "x-forwarded-for and -proto from an untrusted peer are replaced",
            request("GET", "/", "x-tenant-id: acme\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\n"),
            Seen { values: &[("x-forwarded-for", "127.0.0.1"), ("x-forwarded-proto", "http")], ..us("/") },
        ),
        routed(
            "underscore spellings",
            request("GET", "/", "x-tenant-id: acme\r\nX_Forwarded_Host: globex.app.example.com\r\nx_tenant_id: globex\r\nx_residency_region: eu\r\nx_forwarded_for: 10.9.9.9\r\n"),
            Seen { absent: &["x_forwarded_host", "x_tenant_id", "x_residency_region", "x_forwarded_for"], ..us("/") },
        ),
        routed(
            "spoofed residency headers",
            request("GET", "/", "x-tenant-id: acme\r\nX-Residency-Region: eu\r\nx-residency-tenant: globex\r\nx-residency-site: dublin\r\n"),
            Seen {
                values: &[("x-residency-region", "us"), ("x-residency-tenant", "acme")],
                ..us("/")
            },
        ),
        routed(
            "method override on a read from a read-replica region",
            request("GET", "/", "Host: us.api.example.com\r\nx-tenant-id: globex\r\nX-HTTP-Method-Override: DELETE\r\nX-Method-Override: PUT\r\nx-http-method: PATCH\r\n"),
            Seen {
                region: "us",
                path: "/",
                values: &[("x-residency-tenant", "globex")],
                absent: &["x-http-method-override", "x-method-override", "x-http-method"],
            },
        ),
        refused(
            "a write to a read-replica region",
            request("POST", "/", "Host: us.api.example.com\r\nx-tenant-id: globex\r\nContent-Length: 0\r\n"),
            421,
            "cross_region_blocked",
        ),
        // Heads no HTTP/1 parser reads: answered by the router in JSON.
        refused(
            "obsolete line folding",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: acme\r\n globex\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        refused(
            "NUL in a header value",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: ac\0me\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        refused(
            "space before the colon",
            request("GET", "/", "x-tenant-id : globex\r\nx-tenant-id: acme\r\n"),
            400,
            "bad_request",
        ),
        refused(
            "bare CR in a header",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: acme\rx-a: b\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        // Framing Pingora itself refuses before any hook.
        refused_by_pingora(
            "conflicting content-length",
            request("POST", "/", "x-tenant-id: acme\r\nContent-Length: 1\r\nContent-Length: 2\r\n"),
            400,
        ),
        refused_by_pingora(
            "transfer-encoding on HTTP/1.0",
            b"POST / HTTP/1.0\r\nHost: localhost\r\nx-tenant-id: acme\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        refused_by_pingora(
            "final transfer coding not chunked",
            request("POST", "/", "x-tenant-id: acme\r\nTransfer-Encoding: chunked, gzip\r\n"),
            400,
        ),
        refused_by_pingora("CONNECT", request("CONNECT", "globex.app.example.com:443", "x-tenant-id: acme\r\n"), 400),
        // Framing with one reading is proxied as it is read.
        routed(
            "content-length and chunked: chunked wins, content-length is dropped",
            request("POST", "/", "x-tenant-id: acme\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n")
                .into_iter()
                .chain(b"0\r\n\r\n".iter().copied())
                .collect(),
            Seen { absent: &["content-length"], ..us("/") },
        ),
        routed(
            "bare LF line ends",
            b"GET /x HTTP/1.1\nHost: localhost\nx-tenant-id: acme\nConnection: close\n\n".to_vec(),
            us("/x"),
        ),
        routed(
            "empty lines before the request line",
            b"\r\n\r\nGET /x HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: acme\r\nConnection: close\r\n\r\n".to_vec(),
            us("/x"),
        ),
        routed(
            "HTTP/1.0 without Host",
            b"GET /x HTTP/1.0\r\nx-tenant-id: acme\r\n\r\n".to_vec(),
            us("/x"),
        ),
    ]
}

/// (status, head, body) of a whole response read to the end of the connection.
fn split(response: &str) -> (u16, &str, &str) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, body)
}

#[tokio::test]
async fn every_hostile_request_is_refused_or_reaches_the_backend_as_the_router_read_it() {
    let cluster = Cluster::start_with(Options {
        h2c: true,
        ..Options::default()
    })
    .await;
    let cases = corpus();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let before = (cluster.region_requests("us"), cluster.region_requests("eu"));
        let response = crate::common::raw_request(cluster.router.addr(), &case.request).await;
        let (status, head, body) = split(&response);
        let after = (cluster.region_requests("us"), cluster.region_requests("eu"));
        let mut problems = Vec::new();
        if status != case.status {
            problems.push(format!("status {status}, want {}", case.status));
        }
        match (&case.seen, case.error) {
            (None, error) => {
                if after != before {
                    problems.push("a refused request reached a backend".to_owned());
                }
                if let Some(error) = error {
                    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                    if json["error"] != error {
                        problems.push(format!("error {}, want {error}", json["error"]));
                    }
                    if !head.to_ascii_lowercase().contains("x-request-id:") {
                        problems.push("no x-request-id".to_owned());
                    }
                }
            }
            (Some(seen), _) => {
                let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                if json["region"] != seen.region {
                    problems.push(format!(
                        "served by {}, want {}",
                        json["region"], seen.region
                    ));
                }
                if json["path"] != seen.path {
                    problems.push(format!("backend path {}, want {}", json["path"], seen.path));
                }
                for (name, value) in seen.values {
                    if json["headers"][name] != *value {
                        problems.push(format!("{name}: {}, want {value}", json["headers"][name]));
                    }
                }
                let names = json["header_names"].as_array().cloned().unwrap_or_default();
                for name in seen.absent {
                    if names.iter().any(|n| n == name) {
                        problems.push(format!("{name} reached the backend"));
                    }
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n{response}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// HTTP/2 carries the authority twice (`:authority` and a `host` header): they must agree.
/// Pingora compares them byte for byte and refuses any difference itself.
#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let cluster = Cluster::start_with(Options {
        h2c: true,
        ..Options::default()
    })
    .await;
    let (mut sender, _connection) = crate::common::h2c_connection(cluster.router.addr()).await;
    let mut send = |authority: &str, host: Option<&str>| {
        let mut request = http::Request::get(format!("http://{authority}/x"));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request);
        async move {
            use http_body_util::BodyExt;
            let response = response.await.unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let json = serde_json::from_slice::<serde_json::Value>(&body)
                .unwrap_or_else(|_| format!("{status}: {}", String::from_utf8_lossy(&body)).into());
            (status, json)
        }
    };
    let (status, body) = send("globex.app.example.com", None).await;
    assert_eq!((status, &body["region"]), (200, &"eu".into()), "{body}");
    assert_eq!(body["http_version"], "HTTP/1.1");
    // Pingora refuses this one itself, before any hook (docs/hardening.md).
    let (status, body) = send("globex.app.example.com", Some("acme.app.example.com")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        cluster.region_requests("us") + cluster.region_requests("eu"),
        1
    );
    let (status, body) = send("globex.app.example.com", Some("globex.app.example.com")).await;
    assert_eq!((status, &body["region"]), (200, &"eu".into()), "{body}");
}

/// Trailers are headers too: an HTTP/2 backend's `x-residency-*` trailers never reach the
/// client, its other trailers do. (Pingora passes trailers only from HTTP/2 to HTTP/2, so
/// virginia's one backend speaks h2 over TLS and the client h2c.)
#[tokio::test]
async fn a_backend_cannot_speak_about_residency_in_trailers() {
    use http_body_util::BodyExt;
    use residency_config::testing::Ca;
    let ca = Ca::new("backend CA");
    let virginia = ca.issue(&["virginia.backend.test"]);
    let cluster = Cluster::start_with(Options {
        h2c: true,
        backends_per_site: [1, 1, 1, 1],
        files: vec![("backend-ca.pem", ca.pem().into_bytes())],
        backend_tls: vec![(0, 0, virginia.server_config(None))],
        site_lines: [
            "  [regions.sites.tls]\n  sni = \"virginia.backend.test\"\n  ca = \"backend-ca.pem\"\n  h2 = true\n",
            "",
            "",
            "",
        ],
        ..Options::default()
    })
    .await;
    let (mut sender, _connection) = crate::common::h2c_connection(cluster.router.addr()).await;
    let mut from_virginia = 0;
    for _ in 0..10 {
        let request = http::Request::get("http://localhost/trailers")
            .header("x-tenant-id", "acme")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        if collected.to_bytes() != "virginia" {
            continue; // oregon speaks HTTP/1: Pingora drops its trailers anyway
        }
        from_virginia += 1;
        assert_eq!(
            trailers.get("x-kept").map(|v| v.as_bytes()),
            Some(&b"yes"[..]),
            "{trailers:?}"
        );
        assert!(trailers.get("x-residency-region").is_none(), "{trailers:?}");
    }
    assert!(from_virginia > 0, "no request reached virginia");
}
