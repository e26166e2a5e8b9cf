//! Metrics: the documentation cannot drift from the definitions, and requests driven through
//! the real router move exactly the series they should, as read from its real `/metrics`.

use std::path::Path;

use crate::common::{json, Cluster, Options};

#[test]
fn docs_metrics_md_is_generated_from_the_definitions() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let generated = residency_dataplane::metrics::markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/metrics.md is out of date: run `UPDATE_DOCS=1 cargo test -p residency-router --test it metrics::`"
    );
    for definition in residency_dataplane::metrics::DEFINITIONS {
        assert!(
            !definition.labels.contains(&"tenant"),
            "{} has a tenant label",
            definition.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_move_exactly_their_series() {
    let cluster = Cluster::start_with(Options {
        metrics: true,
        ..Options::default()
    })
    .await;

    // A 421: one cross-region block, us tenant asking for eu.
    let blocked = [
        ("reason", "cross_region_blocked"),
        ("tenant_region", "us"),
        ("requested_region", "eu"),
    ];
    let before = cluster.metric("residency_blocked_total", &blocked).await;
    let response = cluster
        .get("/", "acme")
        .header("host", "eu.api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 421);
    assert_eq!(
        cluster.metric("residency_blocked_total", &blocked).await,
        before + 1.0
    );

    // A 400 without any tenant: regions unknown.
    let required = [
        ("reason", "tenant_required"),
        ("tenant_region", "none"),
        ("requested_region", "none"),
    ];
    let before = cluster.metric("residency_blocked_total", &required).await;
    cluster.client.get(cluster.url("/")).send().await.unwrap();
    assert_eq!(
        cluster.metric("residency_blocked_total", &required).await,
        before + 1.0
    );

    // A proxied 200, on the site that served it.
    let (status, _, body) = json(cluster.get("/", "acme").send().await.unwrap()).await;
    assert_eq!(status, 200);
    let site = body["site"].as_str().unwrap().to_owned();
    let ok = [
        ("tenant_region", "us"),
        ("served_region", "us"),
        ("site", site.as_str()),
        ("code_class", "2xx"),
    ];
    assert_eq!(
        cluster
            .logged_metric("residency_requests_total", &ok, 1.0)
            .await,
        1.0
    );
    let count = [("served_region", "us"), ("site", site.as_str())];
    assert_eq!(
        cluster
            .logged_metric("residency_request_duration_seconds_count", &count, 1.0)
            .await,
        1.0
    );

    // A read served by the replica region because the request named it.
    let (status, _, body) = json(
        cluster
            .get("/", "globex")
            .header("host", "us.api.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["region"].as_str()), (200, Some("us")));
    let hint = [
        ("tenant_region", "eu"),
        ("served_region", "us"),
        ("cause", "hint"),
    ];
    assert_eq!(
        cluster
            .logged_metric("residency_cross_region_served_total", &hint, 1.0)
            .await,
        1.0
    );

    // A backend answering 502: an upstream error and a 5xx request on its site.
    for backend in cluster
        .site("frankfurt")
        .iter()
        .chain(cluster.site("dublin"))
    {
        backend.set_status(502);
    }
    let (status, _, body) = json(cluster.get("/", "initech").send().await.unwrap()).await;
    assert_eq!(status, 502);
    let site = body["site"].as_str().unwrap().to_owned();
    let errors = [
        ("region", "eu"),
        ("site", site.as_str()),
        ("kind", "status_5xx"),
    ];
    assert_eq!(
        cluster
            .metric("residency_upstream_errors_total", &errors)
            .await,
        1.0
    );
    let failed = [
        ("tenant_region", "eu"),
        ("served_region", "eu"),
        ("site", site.as_str()),
        ("code_class", "5xx"),
    ];
    assert_eq!(
        cluster
            .logged_metric("residency_requests_total", &failed, 1.0)
            .await,
        1.0
    );

    // State gauges: tenants per region, backends up, and the configuration generation.
    assert_eq!(
        cluster
            .metric("residency_tenants", &[("region", "us")])
            .await,
        1.0
    );
    assert_eq!(
        cluster
            .metric("residency_tenants", &[("region", "eu")])
            .await,
        3.0
    );
    let oregon = cluster.site("oregon")[0].addr().to_string();
    let up = [
        ("region", "us"),
        ("site", "oregon"),
        ("backend", oregon.as_str()),
    ];
    assert_eq!(cluster.metric("residency_backend_up", &up).await, 1.0);
    assert_eq!(
        cluster
            .metric(
                "residency_site_healthy_backends",
                &[("region", "us"), ("site", "virginia")]
            )
            .await,
        2.0
    );
    assert_eq!(
        cluster.metric("residency_config_generation", &[]).await,
        1.0
    );
    assert!(cluster.reload(false).await.ok);
    assert_eq!(
        cluster.metric("residency_config_generation", &[]).await,
        2.0
    );
    assert_eq!(
        cluster
            .metric("residency_config_reloads_total", &[("result", "success")])
            .await,
        1.0
    );
    assert_eq!(
        cluster
            .metric(
                "residency_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            )
            .await,
        1.0
    );

    // Every home site gone: a read of the read-replica tenant fails over to us.
    cluster.kill_site("frankfurt");
    cluster.kill_site("dublin");
    let (status, _, body) = json(cluster.get("/", "globex").send().await.unwrap()).await;
    assert_eq!((status, body["region"].as_str()), (200, Some("us")));
    let failover = [
        ("tenant_region", "eu"),
        ("served_region", "us"),
        ("cause", "failover"),
    ];
    assert_eq!(
        cluster
            .logged_metric("residency_cross_region_served_total", &failover, 1.0)
            .await,
        1.0
    );
}

/// New backend connections are counted, and `proxy.upstream_keepalive_pool` bounds how many
/// idle ones are kept: four backends taking turns (the two `us` sites alternate, and each
/// balances over its two backends) reuse theirs with the default pool, and open a new one for
/// every request when the pool holds fewer than four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_opened_follow_the_keepalive_pool() {
    const REQUESTS: usize = 12;
    async fn opened_for(proxy: &'static str) -> f64 {
        let cluster = Cluster::start_with(Options {
            metrics: true,
            backends_per_site: [2, 2, 1, 1],
            proxy,
            ..Options::default()
        })
        .await;
        let opened = |site| [("region", "us"), ("site", site)];
        let count = async || {
            cluster
                .metric(
                    "residency_upstream_connections_opened_total",
                    &opened("virginia"),
                )
                .await
                + cluster
                    .metric(
                        "residency_upstream_connections_opened_total",
                        &opened("oregon"),
                    )
                    .await
        };
        let before = count().await;
        for _ in 0..REQUESTS {
            let (status, _, body) = json(cluster.get("/", "acme").send().await.unwrap()).await;
            assert_eq!((status, body["region"].as_str()), (200, Some("us")));
        }
        count().await - before
    }
    // The default pool: one connection per backend, reused from then on.
    assert_eq!(opened_for("").await, 4.0);
    // One idle connection per worker thread (two in the test router) for four backends in
    // turn: the one the next request needs was always the least recently used, and closed.
    assert_eq!(
        opened_for("upstream_keepalive_pool = 1\n").await,
        REQUESTS as f64
    );
}
