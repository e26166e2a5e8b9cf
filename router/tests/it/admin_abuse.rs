//! The admin API under abuse, against the real binary: a flood of refused calls neither
//! delays an operator nor grows the audit log by more than a few entries, and expensive
//! calls (exports, lists, audit reads) are limited while a few of them stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{admin_cluster, admin_process_cluster, Cluster, AUDITOR, OPERATOR};
use serde_json::{json, Value};

const FLOOD: usize = 20_000;
const FLOODERS: usize = 8;

fn audit_entries(cluster: &Cluster) -> Vec<Value> {
    std::fs::read_to_string(crate::common::audit_log(cluster))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_refused_calls_neither_delays_an_operator_nor_fills_the_audit_log() {
    let mut cluster = admin_process_cluster().await;
    let admin = cluster.admin.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    // Unauthenticated and wrong-token calls, back to back from several clients, all from
    // 127.0.0.1 like the operator below.
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|n| {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                let mut statuses = Vec::with_capacity(FLOOD / FLOODERS);
                let mut limited_example = None;
                for i in 0..FLOOD / FLOODERS {
                    let mut request = client.get(format!("http://{admin}/v1/tenants/acme"));
                    if (n + i) % 2 == 1 {
                        request = request.bearer_auth("guessed-token");
                    }
                    let response = request.send().await.expect("the router answers");
                    let status = response.status().as_u16();
                    if status == 429 && limited_example.is_none() {
                        let retry_after = response.headers().get("retry-after").cloned();
                        let body: Value = response.json().await.unwrap();
                        limited_example = Some((retry_after, body));
                    }
                    statuses.push(status);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                (statuses, limited_example)
            })
        })
        .collect();

    // Meanwhile the operator changes a tenant, from the same address, again and again.
    let mut latencies = Vec::new();
    while sent.load(Ordering::Relaxed) < FLOOD / 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut region = "eu";
    while sent.load(Ordering::Relaxed) < FLOOD * 9 / 10 {
        let put = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            cluster
                .client
                .put(format!("http://{admin}/v1/tenants/acme"))
                .bearer_auth(OPERATOR)
                .json(&json!({ "region": region }))
                .send(),
        )
        .await
        .expect("the operator's PUT is answered")
        .unwrap();
        latencies.push(put.elapsed());
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        region = if region == "eu" { "us" } else { "eu" };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut statuses = Vec::new();
    let mut limited = None;
    for flooder in flooders {
        let (s, example) = tokio::time::timeout(Duration::from_secs(120), flooder)
            .await
            .expect("the flood is over in bounded time")
            .unwrap();
        statuses.extend(s);
        limited = limited.or(example);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{FLOOD} refused calls in {elapsed:?}; {} operator PUTs meanwhile, slowest {:?}",
        latencies.len(),
        latencies.iter().max()
    );
    assert!(
        latencies.len() >= 3,
        "the PUTs overlapped the flood: {latencies:?}"
    );
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "an operator PUT took {slowest:?}"
    );

    // Past a burst of 20 and 1 a second, refusals are 429s.
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let limited_count = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + limited_count, FLOOD, "only 401 and 429");
    assert!(
        refused as f64 <= 20.0 + elapsed.as_secs_f64() + 1.0,
        "{refused} calls answered 401 in {elapsed:?}"
    );
    let (retry_after, body) = limited.expect("some calls were limited");
    let retry_after: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(
        body["message"].is_string() && body["request_id"].is_string(),
        "{body}"
    );

    // The audit log holds the PUTs, the first refusal, and at most an aggregate or two.
    let entries = audit_entries(&cluster);
    let denied: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert!(
        denied.len() <= 3,
        "{} refusal entries: {denied:?}",
        denied.len()
    );
    assert_eq!(entries.len() - denied.len(), latencies.len());
    let bytes = std::fs::metadata(crate::common::audit_log(&cluster))
        .unwrap()
        .len();
    assert!(
        bytes <= 1024 * (latencies.len() as u64 + 3),
        "the audit log grew to {bytes} bytes"
    );

    // On a graceful stop the counts still pending are written: every refused call is
    // accounted for, and the chain verifies.
    cluster.router.process().signal("TERM");
    let exited = tokio::task::spawn_blocking(move || {
        let status = cluster.router.process_mut().child.wait().unwrap();
        (status, cluster)
    });
    let (status, cluster) = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .expect("the router stops")
        .unwrap();
    assert!(status.success(), "{status}");
    let entries = audit_entries(&cluster);
    let from_here = entries.iter().filter(|e| {
        e["outcome"] == "denied" && e["source"].as_str().unwrap().starts_with("127.0.0.1")
    });
    let accounted: u64 = from_here.map(|e| e["count"].as_u64().unwrap_or(1)).sum();
    assert_eq!(accounted, FLOOD as u64, "{} entries", entries.len());
    let aggregate = entries.iter().find(|e| e["count"].is_u64()).unwrap();
    assert_eq!(aggregate["source"], "127.0.0.1");
    assert_eq!(aggregate["action"], "tenant.read");
    assert_eq!(aggregate["tenant"], "acme");
    assert_eq!(
        aggregate["actor"], "(several)",
        "anonymous and invalid tokens"
    );
    assert_eq!(
        aggregate["statuses"]["429"].as_u64().unwrap(),
        limited_count as u64
    );
    crate::common::assert_audit_verifies(&cluster);
}

#[tokio::test]
async fn expensive_calls_are_limited_while_exports_stream() {
    let cluster = admin_cluster().await;
    let admin = cluster.admin.unwrap();
    // A registry large enough that an export outlasts the socket buffers (about 20 MB).
    const TENANTS: usize = 400_000;
    let mut registry = String::from("{ \"tenants\": [\n");
    for n in 0..TENANTS {
        let sep = if n + 1 == TENANTS { "" } else { "," };
        let region = if n % 2 == 0 { "us" } else { "eu" };
        registry.push_str(&format!(
            "{{\"id\":\"tenant-{n:07}\",\"region\":\"{region}\"}}{sep}\n"
        ));
    }
    registry.push_str("] }\n");
    cluster.replace_registry(&registry);
    let reloaded = cluster.reload(true).await;
    assert!(reloaded.error.is_none(), "{:?}", reloaded.error);

    let get = |path: &str| {
        cluster
            .client
            .get(format!("http://{admin}{path}"))
            .bearer_auth(AUDITOR)
            .send()
    };
    // Four exports, not read yet: each holds its permit while it waits for its client.
    let mut exports = Vec::new();
    for _ in 0..4 {
        let response = get("/v1/export?format=json").await.unwrap();
        assert_eq!(response.status(), 200);
        exports.push(response);
    }
    for path in ["/v1/export?format=csv", "/v1/tenants?limit=5", "/v1/audit"] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), 429, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "busy", "{body}");
        assert!(body["request_id"].is_string(), "{body}");
    }
    // Cheap calls are not limited.
    assert_eq!(
        get("/v1/tenants/tenant-0000001").await.unwrap().status(),
        200
    );

    // Each export is complete, and once they are done, the next one is served.
    for response in exports {
        let export: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let tenants = export["tenants"].as_array().unwrap();
        assert_eq!(tenants.len(), TENANTS);
        assert_eq!(
            tenants[TENANTS - 1]["id"],
            format!("tenant-{:07}", TENANTS - 1)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = get("/v1/tenants?limit=5").await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "permits are released: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
