//! Crash safety of admin API writes: SIGKILL mid-stream, restart, and check that every
//! acknowledged write is there, nothing else is, and the audit chain still verifies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Cluster, Options, OPERATOR};
use serde_json::json;

const TENANTS: usize = 20;

/// What the writer knows: the last acknowledged region per tenant, and the write that was
/// on the wire when the router died (it may or may not have been applied).
#[derive(Default)]
struct Writes {
    acknowledged: HashMap<String, String>,
    in_flight: Option<(String, String)>,
    /// `x-request-id` of every acknowledged write.
    request_ids: Vec<String>,
}

/// Writes back to back until the router stops answering. Every write flips the tenant's
/// region from what is stored, so each one is a real change with its own audit entry.
async fn write_until_failure(
    client: reqwest::Client,
    admin: std::net::SocketAddr,
    mut stored: HashMap<String, String>,
    round: usize,
    writes: Arc<Mutex<Writes>>,
) {
    for i in 0.. {
        let tenant = format!("w-{}", i % TENANTS);
        let region = match stored.get(&tenant).map(String::as_str) {
            Some("us") => "eu",
            _ => "us",
        };
        let request_id = format!("write-{round}-{i}");
        writes.lock().unwrap().in_flight = Some((tenant.clone(), region.to_owned()));
        let sent = client
            .put(format!("http://{admin}/v1/tenants/{tenant}"))
            .bearer_auth(OPERATOR)
            .header("x-request-id", &request_id)
            .json(&json!({"region": region}))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                let mut w = writes.lock().unwrap();
                w.acknowledged.insert(tenant.clone(), region.to_owned());
                w.in_flight = None;
                w.request_ids.push(request_id);
                stored.insert(tenant, region.to_owned());
            }
            Ok(response) => panic!("write refused: {}", response.status()),
            Err(_) => return,
        }
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_the_audit_chain_verifies() {
    let mut cluster = Cluster::start_with(Options {
        process: true,
        admin: true,
        ..Options::default()
    })
    .await;
    let admin = cluster.admin.unwrap();
    let writes = Arc::new(Mutex::new(Writes::default()));
    let mut stored: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        let writer = tokio::spawn(write_until_failure(
            cluster.client.clone(),
            admin,
            stored.clone(),
            round,
            Arc::clone(&writes),
        ));
        tokio::time::sleep(Duration::from_millis(700)).await;
        let _ = cluster.router.process_mut().child.kill(); // SIGKILL: no flush, no cleanup
        writer.await.unwrap();
        cluster.restart();

        let (acknowledged, in_flight, count) = {
            let w = writes.lock().unwrap();
            (
                w.acknowledged.clone(),
                w.in_flight.clone(),
                w.request_ids.len(),
            )
        };
        assert!(
            count > round * 5,
            "the writer made progress: {count} writes"
        );
        for i in 0..TENANTS {
            let tenant = format!("w-{i}");
            let response = cluster
                .client
                .get(format!("http://{admin}/v1/tenants/{tenant}"))
                .bearer_auth(OPERATOR)
                .send()
                .await
                .unwrap();
            let now = match response.status().as_u16() {
                200 => {
                    let body: serde_json::Value = response.json().await.unwrap();
                    Some(body["region"].as_str().unwrap().to_owned())
                }
                404 => None,
                other => panic!("GET {tenant}: {other}"),
            };
            let acked = acknowledged.get(&tenant).cloned();
            let maybe = in_flight
                .as_ref()
                .filter(|(t, _)| *t == tenant)
                .map(|(_, r)| r.clone());
            assert!(
                now == acked || (now.is_some() && now == maybe),
                "round {round}, {tenant}: stored {now:?}, acknowledged {acked:?}, in flight {maybe:?}"
            );
            if let Some(region) = now {
                stored.insert(tenant, region);
            }
        }
        // The data plane serves what the registry says.
        let settled = acknowledged
            .iter()
            .find(|(t, _)| in_flight.as_ref().is_none_or(|(f, _)| f != *t));
        if let Some((tenant, region)) = settled {
            assert_eq!(cluster.region_of(tenant).await, *region);
        }
        let verified = crate::common::verify_audit(&cluster);
        assert!(
            verified.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    let audit = std::fs::read_to_string(cluster.dir.path().join("audit/audit.log")).unwrap();
    for request_id in &writes.lock().unwrap().request_ids {
        let entry = format!("\"request_id\":\"{request_id}\"");
        let audited = audit
            .lines()
            .filter(|l| l.contains(&entry))
            .collect::<Vec<_>>();
        assert!(
            audited.len() == 1 && audited[0].contains("\"outcome\":\"applied\""),
            "acknowledged write {request_id} is audited once as applied: {audited:?}"
        );
    }

    // Tampering with one entry is found, at its line.
    let path = cluster.dir.path().join("audit/audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let target = lines.len() / 2;
    let flipped = if lines[target].contains("\"region\":\"eu\"") {
        lines[target].replacen("\"region\":\"eu\"", "\"region\":\"us\"", 1)
    } else {
        lines[target].replacen("\"region\":\"us\"", "\"region\":\"eu\"", 1)
    };
    assert_ne!(flipped, lines[target]);
    lines[target] = flipped;
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let verified = crate::common::verify_audit(&cluster);
    assert!(!verified.status.success());
    let report = String::from_utf8_lossy(&verified.stderr);
    assert!(
        report.contains(&format!("audit.log:{}:", target + 1)),
        "{report}"
    );
}
