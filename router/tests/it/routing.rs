//! Tenants land only on their home sites; headers per SPEC 5; every SPEC 4 response.

use crate::common::{json, raw_request, Cluster};
use serde_json::Value;

const HOME: [(&str, &str); 3] = [("acme", "us"), ("globex", "eu"), ("initech", "eu")];

fn sites_of(region: &str) -> &'static [&'static str] {
    match region {
        "us" => &["virginia", "oregon"],
        _ => &["frankfurt", "dublin"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_lands_only_on_its_home_sites_with_the_decision_visible_to_the_backend() {
    let cluster = Cluster::start().await;
    for (tenant, home) in HOME {
        for _ in 0..10 {
            let (status, headers, body) =
                json(cluster.get("/orders?page=2", tenant).send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body["region"], home,
                "{tenant} served outside {home}: {body}"
            );
            let site = body["site"].as_str().unwrap();
            assert!(sites_of(home).contains(&site));
            let seen = &body["headers"];
            assert_eq!(seen["x-residency-tenant"], tenant);
            assert_eq!(seen["x-residency-region"], home);
            assert_eq!(seen["x-residency-site"], site);
            assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
            assert_eq!(seen["x-forwarded-proto"], "http");
            assert_eq!(body["path"], "/orders?page=2");
            // expose_decision = true in these configs.
            assert_eq!(headers["x-residency-region"], home);
            assert_eq!(headers["x-residency-site"], site);
            assert_eq!(
                headers["x-request-id"],
                seen["x-request-id"].as_str().unwrap()
            );
        }
    }
    // Tenants never crossed regions.
    assert_eq!(cluster.region_requests("us"), 10);
    assert_eq!(cluster.region_requests("eu"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_geoip_sites_and_backends_share_traffic_by_weight() {
    let cluster = Cluster::start().await;
    for _ in 0..30 {
        let response = cluster.get("/", "acme").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // Virginia has two backends (weight 2), Oregon one: sites rotate 2:1, and Virginia's
    // two backends alternate.
    let virginia: Vec<u64> = cluster
        .site("virginia")
        .iter()
        .map(|b| b.requests())
        .collect();
    assert_eq!(virginia, vec![10, 10]);
    assert_eq!(cluster.site("oregon")[0].requests(), 10);
    assert_eq!(cluster.region_requests("eu"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_path_sources_name_the_tenant() {
    let cluster = Cluster::start().await;
    let by_host = cluster
        .client
        .get(cluster.url("/x"))
        .header("host", "Globex.App.Example.com:8080")
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(by_host).await;
    assert_eq!((status, &body["region"]), (200, &Value::from("eu")));
    assert_eq!(body["headers"]["x-residency-tenant"], "globex");

    let by_path = cluster
        .client
        .get(cluster.url("/t/acme/reports"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(by_path).await;
    assert_eq!((status, &body["region"]), (200, &Value::from("us")));
    // The prefix is kept when proxying (strip is off).
    assert_eq!(body["path"], "/t/acme/reports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_residency_headers_never_reach_a_backend() {
    let cluster = Cluster::start().await;
    let response = cluster
        .get("/", "acme")
        .header("x-residency-region", "eu")
        .header("x-residency-site", "frankfurt")
        .header("x-residency-tenant", "globex")
        .header("X-Residency-Anything", "1")
        .header("x_residency_region", "eu")
        .header("x_tenant_id", "globex")
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(response).await;
    assert_eq!(status, 200);
    let seen = body["headers"].as_object().unwrap();
    assert_eq!(seen["x-residency-tenant"], "acme");
    assert_eq!(seen["x-residency-region"], "us");
    assert_ne!(seen["x-residency-site"], "frankfurt");
    assert!(!seen.contains_key("x-residency-anything"), "{seen:?}");
    let names: Vec<&str> = body["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"x-tenant-id"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains('_')),
        "underscore spoof passed: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_when_sane_and_generated_otherwise() {
    let cluster = Cluster::start().await;
    let kept = cluster
        .get("/", "acme")
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-42");
    let (_, _, body) = json(kept).await;
    assert_eq!(body["headers"]["x-request-id"], "trace-42");

    let replaced = cluster
        .get("/", "acme")
        .header("x-request-id", "bad id!")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "bad id!");
    assert_eq!(id.len(), 32);
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    code: &'static str,
    tenant: Option<&'static str>,
    home_region: Option<&'static str>,
    requested_region: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_error_has_its_status_code_and_json_body() {
    let cluster = Cluster::start().await;
    let cases = [
        Case {
            what: "no tenant",
            method: "GET",
            path: "/",
            headers: &[],
            status: 400,
            code: "tenant_required",
            tenant: None,
            home_region: None,
            requested_region: None,
        },
        Case {
            what: "unregistered",
            method: "GET",
            path: "/",
            headers: &[("x-tenant-id", "nobody")],
            status: 404,
            code: "unknown_tenant",
            tenant: Some("nobody"),
            home_region: None,
            requested_region: None,
        },
        Case {
            what: "header vs path",
            method: "GET",
            path: "/t/globex/x",
            headers: &[("x-tenant-id", "acme")],
            status: 400,
            code: "ambiguous_tenant",
            tenant: None,
            home_region: None,
            requested_region: None,
        },
        Case {
            what: "header vs host",
            method: "GET",
            path: "/",
            headers: &[("x-tenant-id", "acme"), ("host", "globex.app.example.com")],
            status: 400,
            code: "ambiguous_tenant",
            tenant: None,
            home_region: None,
            requested_region: None,
        },
        Case {
            what: "bad characters",
            method: "GET",
            path: "/",
            headers: &[("x-tenant-id", "ac_me")],
            status: 400,
            code: "invalid_tenant",
            tenant: None,
            home_region: None,
            requested_region: None,
        },
        Case {
            what: "bad host label",
            method: "GET",
            path: "/",
            headers: &[("host", "a.b.app.example.com")],
            status: 400,
            code: "invalid_tenant",
            tenant: None,
            home_region: None,
            requested_region: None,
        },
        Case {
            what: "hint to a foreign region",
            method: "GET",
            path: "/",
            headers: &[("x-tenant-id", "acme"), ("host", "eu.api.example.com")],
            status: 421,
            code: "cross_region_blocked",
            tenant: Some("acme"),
            home_region: Some("us"),
            requested_region: Some("eu"),
        },
        Case {
            what: "write to a read replica",
            method: "POST",
            path: "/",
            headers: &[("x-tenant-id", "globex"), ("host", "us.api.example.com")],
            status: 421,
            code: "cross_region_blocked",
            tenant: Some("globex"),
            home_region: Some("eu"),
            requested_region: Some("us"),
        },
        Case {
            what: "expired replication",
            method: "GET",
            path: "/",
            headers: &[("x-tenant-id", "umbrella"), ("host", "us.api.example.com")],
            status: 421,
            code: "cross_region_blocked",
            tenant: Some("umbrella"),
            home_region: Some("eu"),
            requested_region: Some("us"),
        },
    ];
    for case in cases {
        let mut request = cluster
            .client
            .request(case.method.parse().unwrap(), cluster.url(case.path));
        for (name, value) in case.headers {
            request = request.header(*name, *value);
        }
        let (status, headers, body) = json(request.send().await.unwrap()).await;
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert_eq!(headers["content-type"], "application/json", "{}", case.what);
        assert_eq!(body["error"], case.code, "{}: {body}", case.what);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            body["tenant"].as_str(),
            case.tenant,
            "{}: {body}",
            case.what
        );
        assert_eq!(
            body["home_region"].as_str(),
            case.home_region,
            "{}: {body}",
            case.what
        );
        assert_eq!(
            body["requested_region"].as_str(),
            case.requested_region,
            "{}: {body}",
            case.what
        );
        assert_eq!(
            body["request_id"],
            headers["x-request-id"].to_str().unwrap()
        );
    }
    // Nothing blocked reached any backend.
    assert_eq!(
        cluster.region_requests("us") + cluster.region_requests("eu"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_hints_serve_home_and_allowed_replicas_only() {
    let cluster = Cluster::start().await;
    let send = |method: &str, tenant: &str, host: &str| {
        cluster
            .client
            .request(method.parse().unwrap(), cluster.url("/"))
            .header("x-tenant-id", tenant)
            .header("host", host)
            .send()
    };
    // Hint == home.
    let (status, _, body) = json(send("POST", "acme", "us.api.example.com").await.unwrap()).await;
    assert_eq!((status, body["region"].as_str()), (200, Some("us")));
    // Hint == read replica: reads are served there.
    let (status, _, body) = json(send("GET", "globex", "us.api.example.com").await.unwrap()).await;
    assert_eq!((status, body["region"].as_str()), (200, Some("us")));
    // Hint == active replica: writes too.
    let (status, _, body) =
        json(send("POST", "initech", "US.API.EXAMPLE.COM").await.unwrap()).await;
    assert_eq!((status, body["region"].as_str()), (200, Some("us")));
    // A region host is never read as a tenant id.
    let (status, _, body) = json(
        cluster
            .client
            .get(cluster.url("/"))
            .header("host", "eu.api.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("tenant_required"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_body_gets_a_json_400() {
    let cluster = Cluster::start().await;
    let response = raw_request(
        cluster.router.addr(),
        b"POST / HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\nTransfer-Encoding: chunked\r\n\r\nnot-a-chunk-size\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains(r#""error":"bad_request""#), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_backend_could_read_as_another_tenant_are_refused() {
    let cluster = Cluster::start().await;
    let requests: [&[u8]; 4] = [
        // Absolute-form target without Host: its authority becomes the upstream Host.
        b"GET http://globex.app.example.com/x HTTP/1.1\r\nx-tenant-id: acme\r\nConnection: close\r\n\r\n",
        // Paths that normalise to /t/globex/ at a backend.
        b"GET //t/globex/ HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\nConnection: close\r\n\r\n",
        b"GET /x/../t/globex/ HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\nConnection: close\r\n\r\n",
        b"GET /%74/globex/ HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\nConnection: close\r\n\r\n",
    ];
    for request in requests {
        let response = raw_request(cluster.router.addr(), request).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{}: {response}",
            String::from_utf8_lossy(request)
        );
        assert!(
            response.contains(r#""error":"ambiguous_tenant""#),
            "{response}"
        );
    }
    // An absolute-form target is still a region hint.
    let hinted = raw_request(
        cluster.router.addr(),
        b"POST http://us.api.example.com/ HTTP/1.1\r\nx-tenant-id: globex\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(hinted.starts_with("HTTP/1.1 421"), "{hinted}");
    assert_eq!(
        cluster.region_requests("us") + cluster.region_requests("eu"),
        0
    );
}

#[tokio::test]
async fn a_host_that_is_not_plain_ascii_is_judged_not_ignored() {
    let cluster = Cluster::start().await;
    // The backend would receive this Host; read as `<bytes>cme.app.example.com`, it names a
    // tenant that cannot exist. It must not pass as "no Host" and route by the header: it is
    // not `host[:port]`, so it is refused as a bad request (issue 14).
    let request: &[u8] =
        b"GET / HTTP/1.1\r\nHost: \xc4\x85cme.app.example.com\r\nx-tenant-id: acme\r\nConnection: close\r\n\r\n";
    let response = raw_request(cluster.router.addr(), request).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains(r#""error":"bad_request""#), "{response}");
    assert_eq!(
        cluster.region_requests("us") + cluster.region_requests("eu"),
        0
    );
}
