//! The access log: one record per request that proves where it went, and a stalled writer
//! that costs records (counted), never requests.

use std::time::{Duration, Instant};

use crate::common::{json, Cluster, Options, FAST_SHUTDOWN};

fn read_lines(path: &std::path::Path, expected: usize) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= expected || started.elapsed() > Duration::from_secs(5) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_a_record_of_where_it_went() {
    let cluster = Cluster::start_with(Options {
        tables: format!("{FAST_SHUTDOWN}\n[access_log]\npath = \"access.log\"\n"),
        ..Options::default()
    })
    .await;
    let response = cluster.get("/orders", "acme").send().await.unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (_, _, body) = json(response).await;
    let blocked = cluster
        .get("/", "acme")
        .header("host", "eu.api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 421);

    let lines = read_lines(&cluster.dir.path().join("access.log"), 2);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let routed = &lines[0];
    assert_eq!(routed["request_id"], request_id.as_str());
    assert_eq!(routed["method"], "GET");
    assert_eq!(routed["tenant"], "acme");
    assert_eq!(routed["home_region"], "us");
    assert_eq!(routed["served_region"], body["region"]);
    assert_eq!(routed["site"], body["site"]);
    assert_eq!(routed["backend"], body["backend"]);
    assert_eq!(routed["outcome"], "routed");
    assert_eq!(routed["status"], 200);
    assert_eq!(routed["attempts"], 1);
    assert_eq!(routed["config_generation"], 1);
    assert!(routed["bytes_sent"].as_u64().unwrap() > 0);
    assert!(routed["duration_us"].as_u64().unwrap() > 0);
    assert!(routed["time_ms"].as_u64().unwrap() > 1_700_000_000_000);

    let refused = &lines[1];
    assert_eq!(refused["outcome"], "cross_region_blocked");
    assert_eq!(refused["status"], 421);
    assert_eq!(refused["tenant"], "acme");
    assert!(refused["served_region"].is_null() && refused["backend"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_drops_and_counts_records_but_never_holds_a_request() {
    // A FIFO nobody reads: the writer blocks forever opening it.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stalled.log");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let cluster = Cluster::start_with(Options {
        metrics: true,
        tables: format!(
            "{FAST_SHUTDOWN}\n[access_log]\npath = \"{}\"\nbuffer_records = 4\n",
            fifo.display()
        ),
        ..Options::default()
    })
    .await;
    let requests = async {
        for _ in 0..50 {
            assert_eq!(cluster.get("/", "acme").send().await.unwrap().status(), 200);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), requests)
        .await
        .expect("requests were held up by the access log");
    // 4 records fit in the queue; the other 46 are dropped and counted.
    let dropped = cluster
        .logged_metric("residency_access_log_dropped_total", &[], 46.0)
        .await;
    assert_eq!(dropped, 46.0);
    // Unblock the writer so the router can exit cleanly.
    std::thread::spawn(move || std::fs::read(&fifo));
}
