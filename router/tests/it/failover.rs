//! Failure handling: in-region failover, replica failover by mode and expiry, 503 without
//! ever crossing into a region the tenant did not allow, timeouts.

use std::time::Duration;

use crate::common::{json, Cluster, Options};
use residency_testkit::SiteBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_home_site_is_invisible_and_losing_both_is_503_without_crossing() {
    let cluster = Cluster::start().await;
    let eu_before = cluster.region_requests("eu");

    cluster.kill_site("virginia");
    for i in 0..20 {
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let response = cluster
            .client
            .request(method.parse().unwrap(), cluster.url("/"))
            .header("x-tenant-id", "acme")
            .send()
            .await
            .unwrap();
        let (status, _, body) = json(response).await;
        assert_eq!(status, 200, "request {i} ({method}) failed: {body}");
        assert_eq!(body["site"], "oregon");
    }

    cluster.kill_site("oregon");
    for _ in 0..20 {
        let (status, headers, body) = json(cluster.get("/", "acme").send().await.unwrap()).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "region_unavailable");
        assert_eq!(body["home_region"], "us");
        assert!(
            headers["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
    }
    assert_eq!(
        cluster.region_requests("eu"),
        eu_before,
        "a us tenant reached eu"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_failover_follows_mode_and_expiry() {
    let cluster = Cluster::start().await;
    cluster.kill_site("frankfurt");
    cluster.kill_site("dublin");

    let request = |method: &str, tenant: &str| {
        cluster
            .client
            .request(method.parse().unwrap(), cluster.url("/"))
            .header("x-tenant-id", tenant)
            .send()
    };
    // read-replica: GET served by us, POST refused. Repeat so both the first request (home
    // backends fail mid-request) and later ones (home already known down) are covered.
    for _ in 0..3 {
        let (status, _, body) = json(request("GET", "globex").await.unwrap()).await;
        assert_eq!(
            (status, body["region"].as_str()),
            (200, Some("us")),
            "{body}"
        );
        let us_before = cluster.region_requests("us");
        let (status, _, body) = json(request("POST", "globex").await.unwrap()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("region_unavailable"))
        );
        assert_eq!(
            cluster.region_requests("us"),
            us_before,
            "a write reached the read replica"
        );
    }
    // active: every method.
    for method in ["GET", "POST", "DELETE"] {
        let (status, _, body) = json(request(method, "initech").await.unwrap()).await;
        assert_eq!(
            (status, body["region"].as_str()),
            (200, Some("us")),
            "{method}: {body}"
        );
    }
    // Expired active replication: nothing.
    let us_before = cluster.region_requests("us");
    for method in ["GET", "POST"] {
        let (status, _, body) = json(request(method, "umbrella").await.unwrap()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("region_unavailable")),
            "{method}"
        );
    }
    assert_eq!(
        cluster.region_requests("us"),
        us_before,
        "expired replication was used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_after_a_home_region_dies_is_served_by_the_replica() {
    let cluster = Cluster::start().await;
    // Warm the upstream pool so the dead site's connections are pooled when it dies.
    let (status, _, _) = json(cluster.get("/", "globex").send().await.unwrap()).await;
    assert_eq!(status, 200);
    cluster.kill_site("frankfurt");
    cluster.kill_site("dublin");
    let (status, _, body) = json(cluster.get("/", "globex").send().await.unwrap()).await;
    assert_eq!(
        (status, body["region"].as_str()),
        (200, Some("us")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_site_times_out_reads_retry_elsewhere_writes_get_504() {
    let cluster = Cluster::start_with(Options {
        proxy: "read_timeout_ms = 300",
        ..Options::default()
    })
    .await;
    for backend in cluster.site("virginia") {
        backend.set_delay(Duration::from_secs(3));
    }
    // POST first: it must not be retried after its body reached a backend.
    let response = cluster
        .client
        .post(cluster.url("/"))
        .header("x-tenant-id", "acme")
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("upstream_timeout")),
        "{body}"
    );
    assert_eq!(
        cluster.region_requests("us") - cluster.site("oregon")[0].requests(),
        1
    );
    assert_eq!(cluster.site("oregon")[0].requests(), 0);

    // GET: idempotent, so the timeout moves it on to another allowed backend.
    let (status, _, body) = json(cluster.get("/", "acme").send().await.unwrap()).await;
    assert_eq!(
        (status, body["site"].as_str()),
        (200, Some("oregon")),
        "{body}"
    );
    assert_eq!(cluster.region_requests("eu"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_revoked_mid_request_is_not_used_by_its_retries() {
    let cluster = Cluster::start_with(Options {
        proxy: "read_timeout_ms = 1000",
        ..Options::default()
    })
    .await;
    // globex lives in eu and may read from us. Its eu sites stall, so a GET times out there
    // and would fail over to the us replica.
    for site in ["frankfurt", "dublin"] {
        for backend in cluster.site(site) {
            backend.set_delay(Duration::from_secs(3));
        }
    }
    let request = cluster.get("/", "globex").send();
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tenants = residency_testkit::DEMO_TENANTS.replace(
            r#", "replication": { "regions": ["us"], "mode": "read-replica" }"#,
            "",
        );
        assert_ne!(tenants, residency_testkit::DEMO_TENANTS);
        cluster.replace_registry(&tenants);
        let answer = cluster.reload(false).await;
        assert!(answer.ok, "{:?}", answer.error);
    };
    let (response, ()) = tokio::join!(request, revoke);
    let (status, _, body) = json(response.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("region_unavailable")),
        "{body}"
    );
    assert_eq!(cluster.region_requests("us"), 0);
}

/// A backend that dies with a request in flight (its connections close before any answer):
/// a GET is idempotent, so it goes on to another allowed backend; a POST may already have
/// taken effect there, so it gets a 502. A GET that a second backend also dies on gets a 502
/// too: it may be what kills them, and must not take a whole site down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_request_costs_a_get_nothing_and_a_post_a_502() {
    for (method, deaths, status) in [("GET", 1, 200), ("POST", 1, 502), ("GET", 2, 502)] {
        let case = format!("{method} with {deaths} backend(s) dying");
        let cluster = Cluster::start_with(Options {
            metrics: true,
            ..Options::default()
        })
        .await;
        let us: Vec<&SiteBackend> = ["virginia", "oregon"]
            .iter()
            .flat_map(|site| cluster.site(site))
            .collect();
        // Requests wait at every backend until it is killed or released.
        for backend in &us {
            backend.set_delay(Duration::from_secs(30));
        }
        let request = cluster
            .client
            .request(method.parse().unwrap(), cluster.url("/"))
            .header("x-tenant-id", "acme")
            .send();
        let kill = async {
            let mut killed = Vec::new();
            while killed.len() < deaths {
                match us
                    .iter()
                    .find(|b| b.requests() == 1 && !killed.contains(&b.addr()))
                {
                    Some(busy) => {
                        busy.kill();
                        killed.push(busy.addr());
                    }
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            for backend in &us {
                backend.set_delay(Duration::ZERO);
            }
            killed
        };
        let (response, killed) = tokio::join!(request, kill);
        let (answered, _, body) = json(response.unwrap()).await;
        assert_eq!(answered, status, "{case}: {body}");
        if status == 502 {
            assert_eq!(body["error"], "upstream_error", "{case}: {body}");
        } else {
            assert!(
                !killed.iter().any(|k| body["backend"] == k.to_string()),
                "{case}: {body}"
            );
        }
        let attempts = deaths as u64 + u64::from(status == 200);
        assert_eq!(cluster.region_requests("us"), attempts, "{case}");
        assert_eq!(cluster.region_requests("eu"), 0, "{case}");
        let mut resets = 0.0;
        for site in ["virginia", "oregon"] {
            let labels = [("region", "us"), ("site", site), ("kind", "reset")];
            resets += cluster
                .metric("residency_upstream_errors_total", &labels)
                .await;
        }
        assert_eq!(resets, deaths as f64, "{case}: every break is counted");
    }
}
