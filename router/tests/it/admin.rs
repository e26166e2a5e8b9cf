//! The admin API against the real binary: roles, live changes, preconditions, bad input,
//! the audit log and exports.

use std::collections::BTreeSet;

use crate::common::{
    admin_cluster, admin_process_cluster, json, Cluster, AUDITOR, OPERATOR, TENANT_ADMIN, VIEWER,
};
use serde_json::{json as j, Value};

/// One call: `(status, headers, body)`; the body is `null` when empty.
async fn call(
    cluster: &Cluster,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    call_with(&cluster.client, cluster, method, path, token, body).await
}

/// A client whose calls come from `source` (any 127.x.y.z address is loopback).
fn client_from(source: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source)
        .build()
        .unwrap()
}

async fn call_with(
    client: &reqwest::Client,
    cluster: &Cluster,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("http://{}{path}", cluster.admin.expect("admin is on"));
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, body)
}

fn audit_lines(cluster: &Cluster) -> Vec<Value> {
    let text =
        std::fs::read_to_string(cluster.dir.path().join("audit/audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_route_for_every_role_on_own_and_other_tenants() {
    let cluster = admin_cluster().await;
    let acme_same = j!({"region": "us"});
    let globex_same =
        j!({"region": "eu", "replication": {"regions": ["us"], "mode": "read-replica"}});
    let explain = j!({"headers": {"x-tenant-id": "acme"}});
    // (method, path, body, [operator, tenant-admin, auditor, viewer, no token, bad token])
    let cases: Vec<(&str, String, Option<Value>, [u16; 6])> = vec![
        ("GET", "/livez".into(), None, [200, 200, 200, 200, 200, 200]),
        (
            "GET",
            "/readyz".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/tenants".into(),
            None,
            [200, 200, 200, 200, 401, 401],
        ),
        (
            "GET",
            "/v1/tenants/acme".into(),
            None,
            [200, 200, 200, 200, 401, 401],
        ),
        (
            "GET",
            "/v1/tenants/globex".into(),
            None,
            [200, 403, 200, 200, 401, 401],
        ),
        // Who is asking is settled before what they ask about.
        (
            "GET",
            "/v1/tenants/Bad_Id".into(),
            None,
            [400, 400, 400, 400, 401, 401],
        ),
        (
            "PUT",
            "/v1/tenants/acme".into(),
            Some(acme_same),
            [200, 200, 403, 403, 401, 401],
        ),
        (
            "PUT",
            "/v1/tenants/globex".into(),
            Some(globex_same),
            [200, 403, 403, 403, 401, 401],
        ),
        (
            "DELETE",
            "/v1/tenants/acme".into(),
            None,
            [0, 403, 403, 403, 401, 401],
        ),
        (
            "DELETE",
            "/v1/tenants/ghost".into(),
            None,
            [404, 403, 403, 403, 401, 401],
        ),
        (
            "POST",
            "/v1/explain".into(),
            Some(explain),
            [200, 403, 403, 200, 401, 401],
        ),
        (
            "GET",
            "/v1/audit".into(),
            None,
            [200, 403, 200, 403, 401, 401],
        ),
        (
            "GET",
            "/v1/export?format=json".into(),
            None,
            [200, 403, 200, 403, 401, 401],
        ),
        (
            "GET",
            "/v1/export?format=csv".into(),
            None,
            [200, 403, 200, 403, 401, 401],
        ),
    ];
    let callers = [
        Some(OPERATOR),
        Some(TENANT_ADMIN),
        Some(AUDITOR),
        Some(VIEWER),
        None,
        Some("wrong"),
    ];
    let mut refusals = 0;
    // Each call from an address of its own: a source's first refusal is audited on its own,
    // later ones in aggregate (see `admin_abuse.rs`), and this test checks each refusal.
    let mut sources = (10u8..).map(|n| client_from([127, 0, 1, n].into()));
    for (method, path, body, expected) in &cases {
        for (caller, want) in callers.iter().zip(expected) {
            if *want == 0 {
                continue; // the operator deleting acme is covered by the lifecycle test
            }
            let client = sources.next().unwrap();
            let (status, headers, answer) =
                call_with(&client, &cluster, method, path, *caller, body.clone()).await;
            assert_eq!(status, *want, "{method} {path} as {caller:?}: {answer}");
            if path.starts_with("/v1/") {
                assert!(headers.contains_key("x-request-id"), "{method} {path}");
            }
            if status >= 400 {
                assert!(
                    answer["error"].is_string() && answer["message"].is_string(),
                    "{answer}"
                );
            }
            if status == 401 || status == 403 {
                refusals += 1;
            }
            if status == 401 {
                assert_eq!(headers["www-authenticate"], "Bearer");
            }
        }
    }
    // Creating is for operators: each role tries its own new tenant.
    for (caller, want) in callers.iter().zip([201, 403, 403, 403, 401, 401]) {
        let path = format!("/v1/tenants/new-{}", caller.unwrap_or("none"));
        let client = sources.next().unwrap();
        let (status, _, answer) = call_with(
            &client,
            &cluster,
            "PUT",
            &path,
            *caller,
            Some(j!({"region": "eu"})),
        )
        .await;
        assert_eq!(status, want, "create as {caller:?}: {answer}");
        refusals += usize::from(status == 401 || status == 403);
    }
    // A tenant admin lists only its own tenants; others see everyone.
    let (_, _, own) = call(&cluster, "GET", "/v1/tenants", Some(TENANT_ADMIN), None).await;
    let ids: Vec<&str> = own["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "initech"]);
    let (_, _, all) = call(&cluster, "GET", "/v1/tenants", Some(VIEWER), None).await;
    assert_eq!(all["tenants"].as_array().unwrap().len(), 5, "{all}");

    // Every refusal is in the audit log, with who and what.
    let denied: Vec<Value> = audit_lines(&cluster)
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), refusals);
    assert!(denied
        .iter()
        .any(|e| e["actor"] == "acme-admin" && e["tenant"] == "globex" && e["status"] == 403));
    assert!(denied
        .iter()
        .any(|e| e["actor"] == "(invalid token)" && e["status"] == 401));
    assert!(denied
        .iter()
        .any(|e| e["actor"] == "(anonymous)"
            && e["source"].as_str().unwrap().starts_with("127.0.1.")));
}

#[tokio::test]
async fn a_region_change_is_live_on_the_next_request_and_survives_a_restart() {
    let mut cluster = admin_process_cluster().await;
    assert_eq!(cluster.region_of("acme").await, "us");
    let (status, headers, before) = call(
        &cluster,
        "GET",
        "/v1/tenants/acme",
        Some(TENANT_ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(before, j!({"id": "acme", "region": "us"}));
    let tag = headers["etag"].to_str().unwrap().to_owned();

    let moved = cluster
        .client
        .put(format!("http://{}/v1/tenants/acme", cluster.admin.unwrap()))
        .bearer_auth(TENANT_ADMIN)
        .header("if-match", &tag)
        .header("x-request-id", "move-acme-1")
        .json(&j!({"region": "eu", "replication": {"regions": ["us"], "mode": "read-replica"}}))
        .send()
        .await
        .unwrap();
    let (status, headers, after) = json(moved).await;
    assert_eq!(status, 200, "{after}");
    assert_ne!(headers["etag"].to_str().unwrap(), tag);
    // The very next data-plane request follows the change.
    assert_eq!(cluster.region_of("acme").await, "eu");

    // A write based on the old read is refused.
    let stale = cluster
        .client
        .put(format!("http://{}/v1/tenants/acme", cluster.admin.unwrap()))
        .bearer_auth(TENANT_ADMIN)
        .header("if-match", &tag)
        .json(&j!({"region": "us"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(stale).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (412, Some("precondition_failed"))
    );
    assert_eq!(cluster.region_of("acme").await, "eu");

    // On disk, in the registry's own format, and in the audit log with before and after.
    let file = std::fs::read_to_string(cluster.dir.path().join("tenants.json")).unwrap();
    assert!(
        file.contains(
            r#"{"id":"acme","region":"eu","replication":{"regions":["us"],"mode":"read-replica"}}"#
        ),
        "{file}"
    );
    let entry = audit_lines(&cluster)
        .into_iter()
        .find(|e| e["request_id"] == "move-acme-1")
        .expect("audited");
    assert_eq!(entry["actor"], "acme-admin");
    assert_eq!(entry["action"], "tenant.update");
    assert_eq!(entry["before"], before);
    assert_eq!(entry["after"], after);

    // The file watcher does not reload what the API already applied.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        !cluster
            .router
            .log_text()
            .contains("configuration files changed"),
        "{}",
        cluster.router.process().log_text()
    );

    // Delete, create, and a restart that keeps it all.
    let (status, _, _) = call(
        &cluster,
        "DELETE",
        "/v1/tenants/initech",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let gone = cluster.get("/", "initech").send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let (status, headers, _) = call(
        &cluster,
        "PUT",
        "/v1/tenants/hooli",
        Some(OPERATOR),
        Some(j!({"region": "us"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(headers["location"], "/v1/tenants/hooli");
    assert_eq!(cluster.region_of("hooli").await, "us");

    cluster.restart();
    assert_eq!(cluster.region_of("acme").await, "eu");
    assert_eq!(cluster.region_of("hooli").await, "us");
    assert_eq!(
        cluster.get("/", "initech").send().await.unwrap().status(),
        404
    );
    crate::common::assert_audit_verifies(&cluster);
}

#[tokio::test]
async fn concurrent_writers_with_the_same_tag_one_wins() {
    let cluster = admin_cluster().await;
    let (_, headers, _) = call(&cluster, "GET", "/v1/tenants/globex", Some(OPERATOR), None).await;
    let tag = headers["etag"].to_str().unwrap().to_owned();
    let put = |region: &'static str| {
        cluster
            .client
            .put(format!(
                "http://{}/v1/tenants/globex",
                cluster.admin.unwrap()
            ))
            .bearer_auth(OPERATOR)
            .header("if-match", tag.clone())
            .json(&j!({"region": region}))
            .send()
    };
    let (a, b) = tokio::join!(put("us"), put("eu"));
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
}

#[tokio::test]
async fn explain_shows_the_decision_without_sending_anything() {
    let cluster = admin_cluster().await;
    let served_before: u64 = cluster.region_requests("us") + cluster.region_requests("eu");
    let explain = |body: Value| call(&cluster, "POST", "/v1/explain", Some(VIEWER), Some(body));

    let (status, _, read) = explain(j!({
        "method": "GET",
        "host": "us.api.example.com",
        "path": "/orders",
        "headers": {"x-tenant-id": "globex"},
        "client": "203.0.113.9"
    }))
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["tenant"]["id"], "globex");
    assert_eq!(read["tenant"]["source"], "header");
    assert_eq!(read["region_hint"], "us");
    assert_eq!(read["decision"]["action"], "route");
    let sites: Vec<&str> = read["decision"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site"].as_str().unwrap())
        .collect();
    assert_eq!(
        sites.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["virginia", "oregon"])
    );
    assert!(read["decision"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["reason"] == "hinted-replica"));
    assert_eq!(
        read["decision"]["sites"][0]["backends"][0]["available"],
        true
    );
    assert_eq!(
        read["allowed_regions"][1],
        j!({"region": "us", "as": "replica", "mode": "read-replica", "expires_at": null, "usable_by_this_request": true})
    );
    assert!(read["steps"].as_array().unwrap().len() >= 3, "{read}");

    let (_, _, write) = explain(
        j!({"method": "POST", "host": "us.api.example.com", "headers": {"x-tenant-id": "globex"}}),
    )
    .await;
    assert_eq!(write["decision"]["action"], "block");
    assert_eq!(write["decision"]["status"], 421);
    assert_eq!(write["decision"]["error"], "cross_region_blocked");

    let (_, _, twice) = explain(j!({"headers": {"x-tenant-id": ["acme", "globex"]}})).await;
    assert_eq!(twice["decision"]["error"], "ambiguous_tenant");
    let (_, _, from_path) = explain(j!({"path": "/t/initech/x"})).await;
    assert_eq!(from_path["tenant"]["source"], "path");
    assert_eq!(from_path["decision"]["home_region"], "eu");

    // On a TLS connection opened for acme, globex's request is refused (421: it belongs on
    // another connection); acme's is routed.
    let sni = j!({"server_name": "acme.app.example.com"});
    let (_, _, crossed) = explain(j!({"tls": sni, "headers": {"x-tenant-id": "globex"}})).await;
    assert_eq!(
        crossed["decision"]["error"], "misdirected_request",
        "{crossed}"
    );
    let (_, _, agreed) = explain(j!({"tls": sni, "headers": {"x-tenant-id": "acme"}})).await;
    assert_eq!(agreed["decision"]["action"], "route", "{agreed}");
    assert!(agreed["steps"][0]
        .as_str()
        .unwrap()
        .contains("acme.app.example.com"));

    let served_after: u64 = cluster.region_requests("us") + cluster.region_requests("eu");
    assert_eq!(
        served_before, served_after,
        "explain sent nothing to a backend"
    );
}

#[tokio::test]
async fn audit_queries_filter_and_page_and_exports_list_every_tenant() {
    let cluster = admin_cluster().await;
    for (tenant, region) in [
        ("acme", "eu"),
        ("acme", "us"),
        ("globex", "us"),
        ("acme", "eu"),
    ] {
        let (status, _, body) = call(
            &cluster,
            "PUT",
            &format!("/v1/tenants/{tenant}"),
            Some(OPERATOR),
            Some(j!({"region": region})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, _, acme) = call(
        &cluster,
        "GET",
        "/v1/audit?tenant=acme&limit=2",
        Some(AUDITOR),
        None,
    )
    .await;
    let entries = acme["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries
        .iter()
        .all(|e| e["tenant"] == "acme" && e["actor"] == "ops"));
    let cursor = acme["next_cursor"].as_u64().expect("a further page");
    let (_, _, rest) = call(
        &cluster,
        "GET",
        &format!("/v1/audit?tenant=acme&cursor={cursor}"),
        Some(AUDITOR),
        None,
    )
    .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest["entries"][0]["after"]["region"], "eu");
    assert!(rest["next_cursor"].is_null());
    assert_eq!(rest["head"]["seq"], 4);

    let (_, _, none) = call(
        &cluster,
        "GET",
        "/v1/audit?actor=nobody",
        Some(AUDITOR),
        None,
    )
    .await;
    assert_eq!(none["entries"], j!([]));
    let (_, _, future) = call(
        &cluster,
        "GET",
        "/v1/audit?since=2099-01-01T00:00:00Z",
        Some(AUDITOR),
        None,
    )
    .await;
    assert_eq!(future["entries"], j!([]));
    let (_, _, past) = call(
        &cluster,
        "GET",
        "/v1/audit?until=2099-01-01T00:00:00Z",
        Some(AUDITOR),
        None,
    )
    .await;
    assert_eq!(past["entries"].as_array().unwrap().len(), 4);

    let (status, _, exported) = call(
        &cluster,
        "GET",
        "/v1/export?format=json",
        Some(AUDITOR),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = exported["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "globex", "initech", "umbrella"]);
    let csv = cluster
        .client
        .get(format!(
            "http://{}/v1/export?format=csv",
            cluster.admin.unwrap()
        ))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,region,replication_regions,replication_mode,replication_expires_at"
    );
    assert_eq!(lines[1], "acme,eu,,,");
    assert_eq!(lines[3], "initech,eu,us,active,2099-01-01T00:00:00Z");
    assert_eq!(lines.len(), 5);
}

#[tokio::test]
async fn health_endpoints_answer_without_a_token() {
    let cluster = admin_cluster().await;
    let (status, _, live) = call(&cluster, "GET", "/livez", None, None).await;
    assert_eq!((status, live["status"].as_str()), (200, Some("alive")));
    let (status, _, ready) = call(&cluster, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["tenants"], 4);
}
