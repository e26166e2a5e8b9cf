//! Bad input to the admin API: every malformed request gets its status and stable error
//! code, and nothing it sends changes any state. A property test throws generated requests
//! at it: never a 5xx, never a change from a rejected call.

use crate::common::{Cluster, Options, OPERATOR};
use proptest::prelude::*;
use serde_json::Value;

fn start() -> (tokio::runtime::Runtime, Cluster) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = runtime.block_on(Cluster::start_with(Options {
        admin: true,
        ..Options::default()
    }));
    (runtime, cluster)
}

/// Everything a call could change: the registry file and the audit log's applied entries.
fn state(cluster: &Cluster) -> (String, usize) {
    let registry = std::fs::read_to_string(cluster.dir.path().join("tenants.json")).unwrap();
    let audit =
        std::fs::read_to_string(cluster.dir.path().join("audit/audit.log")).unwrap_or_default();
    (
        registry,
        audit
            .lines()
            .filter(|l| l.contains("\"outcome\":\"applied\""))
            .count(),
    )
}

/// Sends a raw call: method, path, content type, body bytes, extra headers.
async fn send(
    cluster: &Cluster,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = cluster
        .client
        .request(
            method.parse().unwrap(),
            format!("http://{}{path}", cluster.admin.unwrap()),
        )
        .bearer_auth(OPERATOR)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// (method, path, content type, body, extra headers, status, error code, field)
type Case = (
    &'static str,
    String,
    Option<&'static str>,
    String,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
    Option<&'static str>,
);

#[test]
fn malformed_requests_get_their_status_and_code_and_change_nothing() {
    let (runtime, cluster) = start();
    let json = Some("application/json");
    let long_id = "a".repeat(65);
    let huge = format!("{{\"region\":\"us\",\"pad\":\"{}\"}}", "x".repeat(100_000));
    let cases: Vec<Case> = vec![
        ("PUT", "/v1/tenants/acme".into(), None, r#"{"region":"eu"}"#.into(), vec![], 415, "unsupported_media_type", None),
        ("PUT", "/v1/tenants/acme".into(), Some("text/plain"), r#"{"region":"eu"}"#.into(), vec![], 415, "unsupported_media_type", None),
        ("PUT", "/v1/tenants/acme".into(), json, huge, vec![], 413, "payload_too_large", None),
        ("PUT", "/v1/tenants/acme".into(), json, "not json".into(), vec![], 400, "invalid_json", None),
        ("PUT", "/v1/tenants/acme".into(), json, "{}".into(), vec![], 400, "invalid_json", None),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"eu","colour":"red"}"#.into(), vec![], 400, "unknown_field", Some("colour")),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"eu","replication":{"regions":["us"],"mode":"active","why":1}}"#.into(), vec![], 400, "unknown_field", Some("why")),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"mars"}"#.into(), vec![], 400, "unknown_region", Some("region")),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"us","replication":{"regions":["us"],"mode":"active"}}"#.into(), vec![], 400, "replication_to_home_region", Some("replication.regions[0]")),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"us","replication":{"regions":[],"mode":"active"}}"#.into(), vec![], 400, "invalid_replication", Some("replication.regions")),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"us","replication":{"regions":["eu"],"mode":"sometimes"}}"#.into(), vec![], 400, "invalid_json", None),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"us","replication":{"regions":["eu"],"mode":"active","expires_at":"2020-01-01T00:00:00Z"}}"#.into(), vec![], 400, "expiry_in_past", Some("replication.expires_at")),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"us","replication":{"regions":["eu"],"mode":"active","expires_at":"tomorrow"}}"#.into(), vec![], 400, "invalid_expiry", Some("replication.expires_at")),
        ("PUT", "/v1/tenants/Bad_Id".into(), json, r#"{"region":"us"}"#.into(), vec![], 400, "invalid_tenant", Some("id")),
        ("PUT", format!("/v1/tenants/{long_id}"), json, r#"{"region":"us"}"#.into(), vec![], 400, "invalid_tenant", Some("id")),
        ("PUT", "/v1/tenants/%C3%A9".into(), json, r#"{"region":"us"}"#.into(), vec![], 400, "invalid_tenant", Some("id")),
        ("PUT", "/v1/tenants/acme".into(), json, r#"{"region":"eu"}"#.into(), vec![("if-match", "\"stale\"")], 412, "precondition_failed", None),
        ("PUT", "/v1/tenants/nobody-yet".into(), json, r#"{"region":"eu"}"#.into(), vec![("if-match", "*")], 412, "precondition_failed", None),
        ("DELETE", "/v1/tenants/acme".into(), None, String::new(), vec![("if-match", "\"stale\"")], 412, "precondition_failed", None),
        ("DELETE", "/v1/tenants/nobody".into(), None, String::new(), vec![], 404, "unknown_tenant", None),
        ("GET", "/v1/tenants/nobody".into(), None, String::new(), vec![], 404, "unknown_tenant", None),
        ("GET", "/v1/tenants?limit=0".into(), None, String::new(), vec![], 400, "invalid_query", None),
        ("GET", "/v1/tenants?limit=abc".into(), None, String::new(), vec![], 400, "invalid_query", None),
        ("GET", "/v1/tenants?colour=red".into(), None, String::new(), vec![], 400, "invalid_query", None),
        ("GET", "/v1/tenants?region=mars".into(), None, String::new(), vec![], 400, "unknown_region", None),
        ("GET", "/v1/audit?since=yesterday".into(), None, String::new(), vec![], 400, "invalid_query", Some("since")),
        ("GET", "/v1/audit?cursor=-1".into(), None, String::new(), vec![], 400, "invalid_query", None),
        ("GET", "/v1/export?format=xml".into(), None, String::new(), vec![], 400, "invalid_query", Some("format")),
        ("POST", "/v1/explain".into(), json, r#"{"method":"GE T"}"#.into(), vec![], 400, "invalid_request", Some("method")),
        ("POST", "/v1/explain".into(), json, r#"{"path":"no-slash"}"#.into(), vec![], 400, "invalid_request", Some("path")),
        ("POST", "/v1/explain".into(), json, r#"{"client":"not-an-ip"}"#.into(), vec![], 400, "invalid_json", None),
        ("POST", "/v1/explain".into(), json, r#"{"headers":{"x":1}}"#.into(), vec![], 400, "invalid_json", None),
        ("POST", "/v1/explain".into(), json, r#"{"hedaers":{}}"#.into(), vec![], 400, "unknown_field", Some("hedaers")),
        ("GET", "/v1/nothing".into(), None, String::new(), vec![], 404, "not_found", None),
        ("PATCH", "/v1/tenants/acme".into(), json, r#"{"region":"eu"}"#.into(), vec![], 405, "method_not_allowed", None),
        ("POST", "/v1/tenants".into(), json, r#"{"region":"eu"}"#.into(), vec![], 405, "method_not_allowed", None),
    ];
    let before = state(&cluster);
    for (method, path, content_type, body, headers, status, code, field) in cases {
        let (got, answer) = runtime.block_on(send(
            &cluster,
            method,
            &path,
            content_type,
            body.into_bytes(),
            &headers,
        ));
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer}"
        );
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        assert_eq!(answer["field"].as_str(), field, "{method} {path}: {answer}");
        if code == "unknown_region" {
            assert_eq!(answer["valid_regions"], serde_json::json!(["us", "eu"]));
        }
    }
    // Every problem of a body is reported, not just the first.
    let (status, answer) = runtime.block_on(send(
        &cluster,
        "PUT",
        "/v1/tenants/acme",
        json,
        br#"{"region":"mars","replication":{"regions":["venus","venus"],"mode":"active","expires_at":"soon"}}"#.to_vec(),
        &[],
    ));
    assert_eq!(status, 400);
    let fields: Vec<&str> = answer["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "region",
            "replication.regions[0]",
            "replication.regions[1]",
            "replication.expires_at"
        ],
        "{answer}"
    );
    assert!(
        answer["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 32),
        "{answer}"
    );
    assert_eq!(state(&cluster), before, "rejected calls changed nothing");
}

/// JSON values built from the API's own vocabulary, so generated bodies reach deep into
/// validation instead of failing at the first brace.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "us",
            "eu",
            "mars",
            "active",
            "read-replica",
            "",
            "2099-01-01T00:00:00Z",
            "2001-01-01T00:00:00Z",
            "GET",
            "/t/acme/",
            "acme",
            "127.0.0.1",
            "é"
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "region",
                    "replication",
                    "regions",
                    "mode",
                    "expires_at",
                    "method",
                    "host",
                    "path",
                    "headers",
                    "client",
                    "x-tenant-id",
                    "extra"
                ])
                .prop_map(str::to_owned),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn generated_requests_never_get_a_5xx_and_rejected_ones_change_nothing() {
    let (runtime, cluster) = start();
    let tenant = prop_oneof![
        4 => prop::sample::select(vec!["acme", "globex", "initech", "newco"]).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9%_.-]{0,70}",
    ];
    let query = prop_oneof![
        3 => prop::sample::select(vec!["", "limit=5", "region=eu", "cursor=acme", "format=csv", "tenant=acme", "actor=ops", "since=2020-01-01T00:00:00Z", "limit=0", "cursor=7"]).prop_map(str::to_owned),
        1 => "[a-z0-9=&%_-]{0,24}",
    ];
    let path = prop_oneof![
        4 => tenant.prop_map(|t| format!("/v1/tenants/{t}")),
        2 => Just("/v1/explain".to_owned()),
        1 => query.clone().prop_map(|q| format!("/v1/tenants?{q}")),
        1 => query.clone().prop_map(|q| format!("/v1/audit?{q}")),
        1 => query.prop_map(|q| format!("/v1/export?{q}")),
    ];
    let body = prop_oneof![
        1 => json_value(),
        3 => prop::collection::btree_map(
            prop::sample::select(vec!["region", "replication", "method", "host", "path", "headers", "client", "extra"]).prop_map(str::to_owned),
            json_value(),
            0..4,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect())),
    ];
    let calls = (
        prop::sample::select(vec!["GET", "PUT", "DELETE", "POST"]),
        path,
        prop_oneof![
            4 => Just(Some("application/json")),
            1 => Just(Some("text/plain")),
            1 => Just(None),
        ],
        body,
    );
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&calls, |(method, path, content_type, body)| {
            let before = state(&cluster);
            let (status, answer) = runtime.block_on(send(
                &cluster,
                method,
                &path,
                content_type,
                body.to_string().into_bytes(),
                &[],
            ));
            prop_assert!(status < 500, "{method} {path} {body}: {status} {answer}");
            if status >= 400 {
                prop_assert!(answer["error"].is_string(), "{answer}");
                prop_assert_eq!(
                    state(&cluster),
                    before,
                    "{} {} was refused but changed state",
                    method,
                    path
                );
            }
            Ok(())
        })
        .unwrap();
}
