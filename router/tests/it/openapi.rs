//! `docs/openapi.yaml` against the real admin API: the same operations, every one answered by
//! a handler with a status the document lists, and every error code the code can produce
//! in the document's enum.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{Cluster, Options, OPERATOR};
use serde_json::{json, Value};

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).expect("openapi.yaml parses")
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                found.insert((method.clone(), path.clone()));
            }
        }
    }
    found
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_serves() {
    let documented = operations(&document());
    let served: BTreeSet<(String, String)> = residency_admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn every_error_code_in_the_code_is_documented() {
    let doc = document();
    let documented: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        std::fs::read_to_string(root.join("../admin/src/lib.rs")).unwrap(),
        std::fs::read_to_string(root.join("../config/src/tenant.rs")).unwrap(),
    ];
    let mut codes = BTreeSet::new();
    for source in &sources {
        // Codes are the string right after a status in `ApiError::new(StatusCode::X, "code"`,
        // the first argument of `bad_request("code"` and `too_many("code"`, and the arms of
        // `TenantError::code`.
        for marker in ["ApiError::new(", "bad_request(", "too_many(", "=> \""] {
            for (at, _) in source.match_indices(marker) {
                let rest = &source[at + marker.len()..];
                let rest = if marker == "ApiError::new(" {
                    rest.split_once(',').map_or("", |(_, r)| r)
                } else if marker == "=> \"" {
                    &source[at + 3..]
                } else {
                    rest
                };
                let rest = rest.trim_start();
                if let Some(code) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    if code.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && code.contains('_')
                        || ["unauthorized", "forbidden", "internal"].contains(&code)
                    {
                        codes.insert(code.to_owned());
                    }
                }
            }
        }
    }
    assert!(codes.len() >= 15, "the scan finds the codes: {codes:?}");
    for code in &codes {
        assert!(
            documented.contains(code.as_str()),
            "`{code}` is produced but not documented"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_is_answered_with_a_documented_status() {
    let doc = document();
    let cluster = Cluster::start_with(Options {
        admin: true,
        ..Options::default()
    })
    .await;
    for (method, path) in operations(&doc) {
        let url = format!(
            "http://{}{}",
            cluster.admin.unwrap(),
            path.replace("{id}", "acme")
        );
        let mut request = cluster
            .client
            .request(method.to_uppercase().parse().unwrap(), url)
            .bearer_auth(OPERATOR);
        request = match method.as_str() {
            "put" => request.json(&json!({"region": "us"})),
            "post" => request.json(&json!({"headers": {"x-tenant-id": "acme"}})),
            _ => request,
        };
        if method == "delete" {
            // Deleting acme would change the other calls: delete a tenant created for it.
            let created = cluster
                .client
                .put(format!(
                    "http://{}/v1/tenants/doomed",
                    cluster.admin.unwrap()
                ))
                .bearer_auth(OPERATOR)
                .json(&json!({"region": "eu"}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            request = cluster
                .client
                .delete(format!(
                    "http://{}/v1/tenants/doomed",
                    cluster.admin.unwrap()
                ))
                .bearer_auth(OPERATOR);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16().to_string();
        let documented = &doc["paths"][&path][&method]["responses"];
        assert!(
            documented.get(&status).is_some(),
            "{method} {path} answered {status}, which the document does not list: {}",
            response.text().await.unwrap()
        );
        // This router's registry is a file: it is not part of a fleet (fleet.rs covers the 200).
        let not_a_fleet = path == "/v1/fleet" && status == "404";
        assert!(
            status.starts_with('2') || not_a_fleet,
            "{method} {path}: {status}"
        );
    }
}

#[test]
fn every_data_plane_block_code_is_documented_for_explain() {
    let doc = document();
    let block = &doc["components"]["schemas"];
    let (name, schema) = block
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, s)| s["properties"]["action"]["enum"][0] == "block")
        .expect("explain's block decision is a schema");
    let documented: BTreeSet<&str> = schema["properties"]["error"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let statuses: BTreeSet<u64> = schema["properties"]["status"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for code in regions::BlockCode::ALL {
        assert!(
            documented.contains(code.as_str()),
            "{name}: {}",
            code.as_str()
        );
        assert!(
            statuses.contains(&u64::from(code.http_status())),
            "{name}: {}",
            code.as_str()
        );
    }
}
