//! Fleet mode against a real etcd cluster (3 members on loopback, data on tmpfs): routers
//! sharing one registry, compare-and-swap writes across routers, and every failure rule of
//! SPEC 10 / issue 16 with the etcd members killed, stopped or compacted under the routers.

use std::path::Path;
use std::time::{Duration, Instant};

use residency_testkit::EtcdCluster;
use serde_json::json;

use crate::common::*;

/// One etcd cluster at a time: eight tests' 24 members at once, on two cores shared with every
/// other test, made the health tests' 100 ms checks time out.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `tenancy.registry` for a router of the fleet under `prefix`.
fn etcd_registry(
    endpoints: &[String],
    prefix: &str,
    id: &str,
    cache: &Path,
    max_staleness_s: u64,
) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "{{ etcd = {{ endpoints = [{}], prefix = \"{prefix}\", cache = \"{}\", max_staleness_s = {max_staleness_s}, router_id = \"{id}\", router_region = \"{id}-pop\", timeout_ms = 500 }} }}",
        endpoints.join(", "),
        cache.display(),
    )
}

struct Router {
    endpoints: Vec<String>,
    prefix: &'static str,
    id: &'static str,
    cache: std::path::PathBuf,
    max_staleness_s: u64,
    process: bool,
    /// Extra top-level tables.
    tables: &'static str,
}

impl Router {
    fn new(etcd: &EtcdCluster, prefix: &'static str, id: &'static str, dir: &Path) -> Router {
        Router {
            endpoints: etcd.endpoints(),
            prefix,
            id,
            cache: dir.join(format!("{id}.cache")),
            max_staleness_s: 300,
            process: false,
            tables: "",
        }
    }

    async fn start(&self) -> Cluster {
        Cluster::start_with(Options {
            admin: true,
            metrics: true,
            process: self.process,
            registry: Some(etcd_registry(
                &self.endpoints,
                self.prefix,
                self.id,
                &self.cache,
                self.max_staleness_s,
            )),
            tables: format!("{FAST_SHUTDOWN}\n{}", self.tables),
            ..Options::default()
        })
        .await
    }
}

/// `residency-router registry import` of the test tenants into the store `cluster` uses.
fn import(cluster: &Cluster) {
    let out = router_command()
        .args(["registry", "import", "--config"])
        .arg(cluster.config_path())
        .arg(cluster.dir.path().join("tenants.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn admin_url(cluster: &Cluster, path: &str) -> String {
    format!("http://{}{path}", cluster.admin.unwrap())
}

async fn put(
    cluster: &Cluster,
    tenant: &str,
    body: serde_json::Value,
    if_match: Option<&str>,
    query: &str,
) -> reqwest::Response {
    let mut request = cluster
        .client
        .put(admin_url(cluster, &format!("/v1/tenants/{tenant}{query}")))
        .bearer_auth(OPERATOR)
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    request.send().await.unwrap()
}

async fn get_tenant(cluster: &Cluster, tenant: &str) -> reqwest::Response {
    cluster
        .client
        .get(admin_url(cluster, &format!("/v1/tenants/{tenant}")))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
}

/// The region serving `tenant`, or the error code the router answered with.
async fn served(cluster: &Cluster, tenant: &str, host: Option<&str>) -> String {
    let mut request = cluster.get("/", tenant);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let (status, _, body) = json(request.send().await.unwrap()).await;
    match status {
        200 => body["region"].as_str().unwrap().to_owned(),
        _ => format!("{status} {}", body["error"].as_str().unwrap_or_default()),
    }
}

/// Polls until `check` holds, at most `limit`; how long it took.
async fn until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn verify_fleet_audit(cluster: &Cluster) -> String {
    let out = router_command()
        .args(["audit", "verify", "--config"])
        .arg(cluster.config_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_through_one_router_is_served_by_the_other_within_a_second_and_confirmed_fleet_wide()
{
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let a = Router::new(&etcd, "/move", "edge-a", dir.path())
        .start()
        .await;
    import(&a);
    let b = Router::new(&etcd, "/move", "edge-b", dir.path())
        .start()
        .await;
    assert!(until(Duration::from_secs(5), || async {
        served(&a, "acme", None).await == "us"
    })
    .await
    .is_some());
    assert_eq!(served(&b, "acme", None).await, "us");

    let response = put(&a, "acme", json!({"region": "eu"}), None, "").await;
    let revision: i64 = response.headers()["x-registry-revision"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(response.status(), 200);
    assert_eq!(
        etag,
        format!("\"{revision}\""),
        "the ETag is the record's etcd revision"
    );
    // The writing router serves its own write at once; the other within a second.
    assert_eq!(served(&a, "acme", None).await, "eu");
    let took = until(Duration::from_secs(1), || async {
        served(&b, "acme", None).await == "eu"
    })
    .await;
    assert!(took.is_some(), "router B did not serve the move within 1 s");

    // Both routers report what they applied, under their ids and labels.
    let (status, _, fleet) = json(
        a.client
            .get(admin_url(&a, "/v1/fleet"))
            .bearer_auth(AUDITOR)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{fleet}");
    let mut routers: Vec<(String, String)> = fleet["routers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["region"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    routers.sort();
    assert_eq!(
        routers,
        [
            ("edge-a".to_owned(), "edge-a-pop".to_owned()),
            ("edge-b".to_owned(), "edge-b-pop".to_owned())
        ]
    );
    assert!(fleet["revision"].as_i64().unwrap() >= revision);

    // `?wait=applied`: answered once every live router serves the change.
    let response = put(
        &b,
        "acme",
        json!({"region": "us"}),
        Some(&etag),
        "?wait=applied",
    )
    .await;
    assert_eq!(response.status(), 200);
    let revision: i64 = response.headers()["x-registry-revision"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        served(&a, "acme", None).await,
        "us",
        "applied everywhere means applied on A too"
    );
    let (_, _, fleet) = json(
        a.client
            .get(admin_url(&a, "/v1/fleet"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        fleet["routers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["applied_revision"].as_i64().unwrap() >= revision),
        "{fleet}"
    );
    // A viewer may not read the fleet.
    let status = a
        .client
        .get(admin_url(&a, "/v1/fleet"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);

    // An invalid record written to etcd behind the routers' back keeps the previous one.
    etcd.etcdctl(&[
        "put",
        "/move/tenants/acme",
        r#"{"id":"acme","region":"mars"}"#,
    ]);
    assert!(until(Duration::from_secs(3), || async {
        b.metric("residency_registry_invalid_records_total", &[])
            .await
            == 1.0
    })
    .await
    .is_some());
    assert_eq!(served(&b, "acme", None).await, "us");

    // One chain for the fleet, whichever router wrote: it verifies, and export reads it back.
    let verified = verify_fleet_audit(&a);
    assert!(verified.contains("ok: "), "{verified}");
    let export = router_command()
        .args(["registry", "export", "--config"])
        .arg(a.config_path())
        .output()
        .unwrap();
    assert!(export.status.success());
    let exported: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(exported["tenants"].as_array().unwrap().len(), 4);
    assert_eq!(a.metric("residency_registry_connected", &[]).await, 1.0);

    // A chain cut at its end still verifies link by link; it no longer ends at its head.
    let keys = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/move/audit/"]);
    let last = keys.lines().rfind(|l| !l.is_empty()).unwrap().to_owned();
    etcd.etcdctl(&["del", &last]);
    let cut = router_command()
        .args(["audit", "verify", "--config"])
        .arg(a.config_path())
        .output()
        .unwrap();
    assert!(!cut.status.success());
    assert!(
        String::from_utf8_lossy(&cut.stderr).contains("missing from its end"),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_with_one_etag_on_two_routers_get_exactly_one_success() {
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let a = Router::new(&etcd, "/cas", "edge-a", dir.path())
        .start()
        .await;
    import(&a);
    let b = Router::new(&etcd, "/cas", "edge-b", dir.path())
        .start()
        .await;
    for round in 0..5 {
        let read = get_tenant(&a, "globex").await;
        assert_eq!(read.status(), 200);
        let etag = read.headers()["etag"].to_str().unwrap().to_owned();
        // Two bodies that differ from the stored record and from each other: both would write.
        let body = |month: usize| json!({"region": "eu", "replication": {"regions": ["us"], "mode": "active", "expires_at": format!("2099-{month:02}-01T00:00:00Z")}});
        let (first, second) = tokio::join!(
            put(&a, "globex", body(2 * round + 1), Some(&etag), ""),
            put(&b, "globex", body(2 * round + 2), Some(&etag), "")
        );
        let mut statuses = [first.status().as_u16(), second.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
    }
    verify_fleet_audit(&a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_routing_goes_on_writes_get_503_replicas_drop_past_max_staleness_and_all_recovers(
) {
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let mut router = Router::new(&etcd, "/quorum", "edge-a", dir.path());
    router.max_staleness_s = 2;
    let a = router.start().await;
    import(&a);
    let us_host = Some("us.api.example.com");
    assert!(
        until(Duration::from_secs(5), || async {
            served(&a, "globex", us_host).await == "us"
        })
        .await
        .is_some(),
        "globex reads from its us replica"
    );

    etcd.pause(1);
    etcd.pause(2);
    // Writes: refused with a stable code and Retry-After, nothing half-applied.
    let response = put(&a, "acme", json!({"region": "eu"}), None, "").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let (_, _, body) = json(response).await;
    assert_eq!(body["error"], "registry_unavailable");
    // Routing goes on from the last applied registry, home regions always.
    assert_eq!(served(&a, "acme", None).await, "us");
    let dropped = until(Duration::from_secs(10), || async {
        served(&a, "globex", us_host).await == "421 cross_region_blocked"
    })
    .await;
    assert!(
        dropped.is_some(),
        "past max_staleness the replica is no longer used"
    );
    assert_eq!(
        served(&a, "globex", None).await,
        "eu",
        "home region still served"
    );
    assert!(a.metric("residency_registry_staleness_seconds", &[]).await > 2.0);
    assert_eq!(a.metric("residency_registry_connected", &[]).await, 0.0);
    // Readiness does not depend on etcd.
    let ready = a
        .client
        .get(admin_url(&a, "/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 200);

    etcd.resume(1);
    etcd.resume(2);
    etcd.wait_healthy();
    let back = until(Duration::from_secs(15), || async {
        served(&a, "globex", us_host).await == "us"
    })
    .await;
    assert!(
        back.is_some(),
        "the replica is served again once etcd answers"
    );
    assert_eq!(
        put(&a, "acme", json!({"region": "eu"}), None, "")
            .await
            .status(),
        200
    );
    assert_eq!(served(&a, "acme", None).await, "eu");
    assert_eq!(a.metric("residency_registry_connected", &[]).await, 1.0);
    verify_fleet_audit(&a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn started_with_etcd_down_a_router_serves_a_valid_cache_and_refuses_a_corrupt_or_foreign_one()
{
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let writer = Router::new(&etcd, "/cache", "edge-a", dir.path());
    let a = writer.start().await;
    import(&a);
    assert!(until(Duration::from_secs(5), || async {
        served(&a, "acme", None).await == "us"
    })
    .await
    .is_some());
    assert_eq!(
        put(&a, "acme", json!({"region": "eu"}), None, "")
            .await
            .status(),
        200
    );
    // The cache follows within its write interval.
    let cached = until(Duration::from_secs(10), || async {
        std::fs::read_to_string(&writer.cache)
            .is_ok_and(|t| t.contains(r#""id":"acme","region":"eu""#))
    })
    .await;
    assert!(cached.is_some(), "the cache was not written");
    drop(a);
    let good = std::fs::read(&writer.cache).unwrap();
    for member in 0..3 {
        etcd.kill(member);
    }

    // A valid cache: serving, ready, the move kept.
    let mut from_cache = Router::new(&etcd, "/cache", "edge-b", dir.path());
    from_cache.cache = writer.cache.clone();
    let b = from_cache.start().await;
    assert_eq!(served(&b, "acme", None).await, "eu");
    assert_eq!(
        b.client
            .get(admin_url(&b, "/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(b);

    // A corrupt cache (one byte flipped) or one of another fleet: no registry, not ready,
    // every tenant refused; never a default region.
    let mut corrupt = good.clone();
    let last = corrupt.len() - 5;
    corrupt[last] ^= 1;
    let foreign = String::from_utf8(good).unwrap().replacen(
        "\"prefix\":\"/cache\"",
        "\"prefix\":\"/elsewhere\"",
        1,
    );
    for (name, bytes) in [("corrupt", corrupt), ("foreign", foreign.into_bytes())] {
        std::fs::write(&writer.cache, &bytes).unwrap();
        let mut refused = Router::new(&etcd, "/cache", "edge-c", dir.path());
        refused.cache = writer.cache.clone();
        let c = refused.start().await;
        assert_eq!(
            served(&c, "acme", None).await,
            "503 registry_unavailable",
            "{name}"
        );
        assert_eq!(
            c.client
                .get(admin_url(&c, "/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            503,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_while_a_router_is_cut_off_is_followed_by_a_relist_that_sees_deletions() {
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    // This router talks to member 0 only: stopping that member cuts it off while the other
    // two keep the cluster writable.
    let mut router = Router::new(&etcd, "/compact", "edge-a", dir.path());
    router.endpoints = vec![etcd.endpoint(0)];
    let a = router.start().await;
    import(&a);
    assert!(until(Duration::from_secs(5), || async {
        served(&a, "initech", None).await == "eu"
    })
    .await
    .is_some());

    etcd.pause(0);
    let cut_off = until(Duration::from_secs(10), || async {
        a.metric("residency_registry_connected", &[]).await == 0.0
    })
    .await;
    assert!(
        cut_off.is_some(),
        "the router did not notice that its member stopped answering"
    );
    // etcdctl goes to the two members still running.
    etcd.etcdctl(&["del", "/compact/tenants/initech"]);
    etcd.etcdctl(&[
        "put",
        "/compact/tenants/hooli",
        r#"{"id":"hooli","region":"eu"}"#,
    ]);
    etcd.compact(etcd.revision());
    // Still cut off: the last applied registry serves.
    assert_eq!(served(&a, "initech", None).await, "eu");

    etcd.resume(0);
    let relisted = until(Duration::from_secs(20), || async {
        served(&a, "initech", None).await == "404 unknown_tenant"
            && served(&a, "hooli", None).await == "eu"
    })
    .await;
    assert!(
        relisted.is_some(),
        "the deletion and the new tenant were not seen after compaction"
    );
    let resyncs = a.scrape().await;
    let resyncs: Vec<&str> = resyncs
        .lines()
        .filter(|l| l.starts_with("residency_registry_resyncs_total"))
        .collect();
    assert!(
        resyncs.contains(&r#"residency_registry_resyncs_total{reason="compacted"} 1"#),
        "{resyncs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_applied_waits_for_a_stopped_router_and_names_it() {
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let mut slow = Router::new(&etcd, "/wait", "edge-slow", dir.path());
    slow.process = true;
    let a = slow.start().await;
    import(&a);
    let b = Router::new(&etcd, "/wait", "edge-b", dir.path())
        .start()
        .await;
    assert!(until(Duration::from_secs(5), || async {
        served(&b, "acme", None).await == "us"
    })
    .await
    .is_some());

    a.router.process().signal("STOP");
    let response = put(
        &b,
        "acme",
        json!({"region": "eu"}),
        None,
        "?wait=applied&timeout_ms=1500",
    )
    .await;
    let (status, headers, body) = json(response).await;
    a.router.process().signal("CONT");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["pending_routers"], json!(["edge-slow"]));
    assert!(headers.contains_key("x-registry-revision"));
    // Once it runs again it catches up, and a confirmed write is confirmed by both.
    let response = put(
        &b,
        "acme",
        json!({"region": "us"}),
        None,
        "?wait=applied&timeout_ms=10000",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(served(&a, "acme", None).await, "us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_etcd_leader_during_writes_loses_no_acknowledged_write_and_the_chain_verifies()
{
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let a = Router::new(&etcd, "/leader", "edge-a", dir.path())
        .start()
        .await;
    import(&a);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    // Writes go on, bounded in time, until 40 land after the kill: how many are refused
    // while the members elect a new leader depends on the machine's speed, not on us.
    let mut killed_at = None;
    let mut acknowledged_after_kill = 0;
    for n in 0.. {
        if n == 20 {
            let leader = etcd.leader();
            etcd.kill(leader);
            killed_at = Some(Instant::now());
        }
        if acknowledged_after_kill == 40
            || killed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(20))
        {
            break;
        }
        let tenant = format!("t-{n}");
        let response = put(
            &a,
            &tenant,
            json!({"region": if n % 2 == 0 { "us" } else { "eu" }}),
            None,
            "",
        )
        .await;
        match response.status().as_u16() {
            201 => {
                acknowledged.push(tenant);
                acknowledged_after_kill += usize::from(killed_at.is_some());
            }
            503 => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("write {n}: {other}"),
        }
    }
    assert_eq!(
        acknowledged_after_kill, 40,
        "writes did not resume within 20 s of killing the leader ({refused} refused)"
    );
    let export = router_command()
        .args(["registry", "export", "--config"])
        .arg(a.config_path())
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let exported: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    let ids: std::collections::HashSet<&str> = exported["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    for tenant in &acknowledged {
        assert!(
            ids.contains(tenant.as_str()),
            "acknowledged {tenant} is not in etcd"
        );
    }
    let verified = verify_fleet_audit(&a);
    assert!(verified.contains("ok: "), "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mass_deletion_in_etcd_is_held_by_the_guard_until_forced() {
    let _one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let mut router = Router::new(&etcd, "/held", "edge-a", dir.path());
    // The guard as it stands for a registry of thousands, on the test's four tenants.
    router.tables = "[reload]\nalways_allowed_moves = 0\nmax_moved_percent = 50\n";
    let a = router.start().await;
    import(&a);
    assert!(until(Duration::from_secs(5), || async {
        served(&a, "acme", None).await == "us"
    })
    .await
    .is_some());

    // Someone empties the registry behind the API's back: every tenant would become unknown.
    etcd.etcdctl(&["del", "--prefix", "/held/tenants/"]);
    let held = until(Duration::from_secs(5), || async {
        a.metric("residency_registry_held_changes", &[]).await == 1.0
    })
    .await;
    assert!(
        held.is_some(),
        "the deletion was not held: acme {}; {}",
        served(&a, "acme", None).await,
        etcd.etcdctl(&["get", "--prefix", "/held/"])
    );
    assert_eq!(
        served(&a, "acme", None).await,
        "us",
        "held: the registry keeps serving"
    );

    let answer = a.reload(true).await;
    assert!(answer.ok, "{answer:?}");
    let applied = until(Duration::from_secs(15), || async {
        served(&a, "acme", None).await == "404 unknown_tenant"
    })
    .await;
    assert!(
        applied.is_some(),
        "reload --force did not release the held change"
    );
    assert_eq!(a.metric("residency_registry_held_changes", &[]).await, 0.0);
}
