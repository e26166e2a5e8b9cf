//! Site health: active checks, start-unhealthy, outlier ejection and its cap, and failures
//! under a steady stream of requests. Real backends, real checks, the real binary.

use std::time::{Duration, Instant};

use crate::common::{failures, send_many, Cluster, Load, Options, FAST_SHUTDOWN};

const INTERVAL_MS: u64 = 200;

/// HTTP checks every 200 ms; down after 2 failures, up after 1 pass.
fn http_checks(extra: &str) -> String {
    format!(
        "{FAST_SHUTDOWN}\n[health]\ncheck = \"http\"\nhttp_path = \"/healthz\"\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 100\nunhealthy_threshold = 2\nhealthy_threshold = 1\n{extra}"
    )
}

/// Sends acme GETs back to back for `window`; returns when `backend` last got one (None if
/// never) and whether every request succeeded.
async fn watch_backend(
    cluster: &Cluster,
    backend: &residency_testkit::SiteBackend,
    window: Duration,
) -> (Option<Instant>, bool) {
    let start = Instant::now();
    let mut last_hit = None;
    let mut all_ok = true;
    let mut seen = backend.requests();
    while start.elapsed() < window {
        let status = cluster.get("/", "acme").send().await.unwrap().status();
        all_ok &= status == 200;
        let now = backend.requests();
        if now > seen {
            last_hit = Some(Instant::now());
            seen = now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (last_hit, all_ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_its_checks_stops_getting_traffic_in_time_and_returns() {
    let cluster = Cluster::start_with(Options {
        tables: http_checks(""),
        ..Options::default()
    })
    .await;
    let v0 = &cluster.site("virginia")[0];
    assert!(send_many(&cluster, "acme", 12)
        .await
        .iter()
        .all(|&s| s == 200));
    assert!(v0.requests() > 0);

    v0.set_health_status(503);
    let failed_at = Instant::now();
    let (last_hit, all_ok) = watch_backend(&cluster, v0, Duration::from_millis(1500)).await;
    assert!(
        all_ok,
        "a failing health check must not cost a client request"
    );
    let out_after = last_hit.map_or(Duration::ZERO, |t| t - failed_at);
    eprintln!("check failing -> no more traffic after {out_after:?}");
    // interval x unhealthy_threshold, plus one interval, plus scheduling slack.
    assert!(
        out_after <= Duration::from_millis(INTERVAL_MS * 2 + INTERVAL_MS + 300),
        "still routed {out_after:?} after its checks started failing"
    );
    let before = v0.requests();
    send_many(&cluster, "acme", 15).await;
    assert_eq!(
        v0.requests(),
        before,
        "routed to a backend its checks say is down"
    );

    v0.set_health_status(200);
    let recovered_at = Instant::now();
    let mut back_after = None;
    while recovered_at.elapsed() < Duration::from_secs(3) {
        send_many(&cluster, "acme", 3).await;
        if v0.requests() > before {
            back_after = Some(recovered_at.elapsed());
            break;
        }
    }
    let back_after = back_after.expect("a recovered backend gets traffic again");
    eprintln!("check passing again -> traffic after {back_after:?}");
    assert!(back_after <= Duration::from_millis(INTERVAL_MS * 2 + 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_start_unhealthy_a_backend_waits_for_its_first_passing_check() {
    let cluster = Cluster::start_with(Options {
        tables: http_checks("start_unhealthy = true"),
        // virginia[1] fails its checks from before the router starts.
        prepare: |sites| sites[0][1].set_health_status(503),
        ..Options::default()
    })
    .await;
    let v1 = &cluster.site("virginia")[1];
    assert!(send_many(&cluster, "acme", 30)
        .await
        .iter()
        .all(|&s| s == 200));
    assert_eq!(v1.requests(), 0, "an unchecked backend got traffic");

    v1.set_health_status(200);
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 3)).await;
    send_many(&cluster, "acme", 30).await;
    assert!(
        v1.requests() > 0,
        "a backend that passed its check gets traffic"
    );
}

/// TCP checks (every backend passes them) and aggressive outlier detection.
fn outlier_tables(extra: &str) -> String {
    format!(
        "{FAST_SHUTDOWN}\n[health]\ncheck = \"tcp\"\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 100\neject_after_failures = 3\nbase_ejection_ms = 600\nmax_ejection_ms = 10000\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_502_is_ejected_then_readmitted_with_growing_back_off() {
    let cluster = Cluster::start_with(Options {
        tables: outlier_tables(""),
        ..Options::default()
    })
    .await;
    let v0 = &cluster.site("virginia")[0];
    v0.set_status(502);
    let statuses = send_many(&cluster, "acme", 30).await;
    assert_eq!(
        v0.requests(),
        3,
        "ejected after exactly 3 failures in a row"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 502).count(), 3);
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 27);

    // Fixed, and back after the 600 ms back-off plus a passing check.
    v0.set_status(200);
    tokio::time::sleep(Duration::from_millis(600 + 2 * INTERVAL_MS + 100)).await;
    send_many(&cluster, "acme", 12).await;
    assert!(v0.requests() > 3, "not readmitted after its back-off");

    // Failing again: the second ejection lasts twice as long (1.2 s).
    v0.set_status(502);
    send_many(&cluster, "acme", 15).await;
    let ejected_again = v0.requests();
    v0.set_status(200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    send_many(&cluster, "acme", 12).await;
    assert_eq!(
        v0.requests(),
        ejected_again,
        "back-off did not grow on repeat"
    );
    tokio::time::sleep(Duration::from_millis(400 + 2 * INTERVAL_MS + 200)).await;
    send_many(&cluster, "acme", 12).await;
    assert!(
        v0.requests() > ejected_again,
        "not readmitted after the longer back-off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ejection_cap_keeps_part_of_a_site_in_service() {
    let cluster = Cluster::start_with(Options {
        process: true,
        tables: outlier_tables("max_ejected_percent = 50"),
        ..Options::default()
    })
    .await;
    let virginia = cluster.site("virginia");
    for backend in virginia {
        backend.set_status(502);
    }
    send_many(&cluster, "acme", 60).await;
    let mut hits: Vec<u64> = virginia.iter().map(|b| b.requests()).collect();
    hits.sort_unstable();
    // One of two (50%) is ejected after 3 failures; the other stays in despite failing.
    assert_eq!(hits[0], 3, "{hits:?}");
    assert!(
        hits[1] > 10,
        "the cap did not keep the second backend in: {hits:?}"
    );
    assert!(cluster
        .router
        .log_text()
        .contains("ejection cap is reached"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_survives_a_backend_dying_and_never_leaves_the_region() {
    let cluster = Cluster::start_with(Options {
        process: true,
        tables: outlier_tables(""),
        ..Options::default()
    })
    .await;
    let load = Load::start(&cluster, "acme", 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead = cluster.site("virginia")[0].addr().to_string();
    // Watch the router's log from the moment of death: when is the dead backend ejected
    // passively (connect failures under load) and marked down by the active TCP check?
    let log_path = cluster.router.process().log.clone();
    let killed_at = Instant::now();
    let watcher = tokio::spawn(async move {
        let (mut passive, mut active) = (None, None);
        while killed_at.elapsed() < Duration::from_secs(3)
            && (passive.is_none() || active.is_none())
        {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let logged = |what: &str| log.lines().any(|l| l.contains(what) && l.contains(&dead));
            if passive.is_none() && logged("outlier ejected") {
                passive = Some(killed_at.elapsed());
            }
            if active.is_none() && logged("backend is down") {
                active = Some(killed_at.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (passive, active)
    });
    cluster.site("virginia")[0].kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let outcomes = load.stop().await;
    let failed = failures(&outcomes);
    eprintln!(
        "{} requests, {} failed, while a backend died",
        outcomes.len(),
        failed.len()
    );
    assert!(outcomes.len() > 100);
    assert!(
        failed.is_empty(),
        "a dying backend cost clients requests: {:?}",
        &failed[..failed.len().min(3)]
    );

    let (passive, active) = watcher.await.unwrap();
    eprintln!(
        "backend death -> passive ejection after {passive:?}, active check down after {active:?}"
    );
    assert!(
        passive.is_some(),
        "connect failures under load did not eject the dead backend"
    );
    assert!(
        active.is_some(),
        "the dead backend was never marked down by its checks"
    );

    // Every home site gone: 503s, and not one request reaches eu.
    let eu_before = cluster.region_requests("eu");
    cluster.kill_site("virginia");
    cluster.kill_site("oregon");
    let statuses = send_many(&cluster, "acme", 20).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    assert_eq!(cluster.region_requests("eu"), eu_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_in_flight_steers_around_a_slow_backend() {
    let cluster = Cluster::start_with(Options {
        site_lines: ["  balance = \"least-in-flight\"", "", "", ""],
        ..Options::default()
    })
    .await;
    let (slow, fast) = (&cluster.site("virginia")[0], &cluster.site("virginia")[1]);
    slow.set_delay(Duration::from_millis(300));
    // Host pins the requests to us; virginia takes 2 of every 3 by weight.
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let client = cluster.client.clone();
            let url = cluster.url("/");
            tokio::spawn(async move {
                for _ in 0..8 {
                    let response = client
                        .get(&url)
                        .header("x-tenant-id", "acme")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (slow_hits, fast_hits) = (slow.requests(), fast.requests());
    eprintln!("least-in-flight: slow backend {slow_hits}, fast backend {fast_hits}");
    // Round-robin would split virginia's share evenly; least-in-flight keeps the slow one
    // to about one request per client at a time.
    assert!(
        fast_hits >= 3 * slow_hits,
        "slow {slow_hits}, fast {fast_hits}"
    );
}
