//! Hot reload against the real binary: tenants moving region, in-flight requests, invalid
//! files, the mass-move guard, SIGHUP, the file watcher, health carried over, and 100 reloads
//! under continuous load with every request consistent with exactly one snapshot.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::{
    failures, json, router_command, Cluster, Load, Options, Outcome, FAST_SHUTDOWN, TEST_TENANTS,
};
use residency_testkit::{write_config, DEMO_SITES};

/// Puts one kind of bad file in place.
type Breaker<'a> = Box<dyn Fn() + 'a>;

fn moved(tenant: &str, to: &str) -> String {
    TEST_TENANTS.replace(
        &format!("\"id\": \"{tenant}\",     \"region\": \"us\""),
        &format!("\"id\": \"{tenant}\",     \"region\": \"{to}\""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tenant_is_served_in_its_new_region_while_in_flight_requests_finish_where_they_began(
) {
    let cluster = Cluster::start_with(Options {
        process: true,
        ..Options::default()
    })
    .await;
    assert_eq!(cluster.region_of("acme").await, "us");
    for backend in cluster
        .site("virginia")
        .iter()
        .chain(cluster.site("oregon"))
    {
        backend.set_delay(Duration::from_millis(800));
    }
    let in_flight = tokio::spawn(cluster.get("/", "acme").send());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let registry = moved("acme", "eu");
    assert_ne!(registry, TEST_TENANTS);
    cluster.replace_registry(&registry);
    let answer = cluster.reload(false).await;
    assert!(answer.ok, "{answer:?}");
    let report = answer.report.unwrap();
    assert_eq!(report.moved_tenants, 1);
    assert_eq!(report.moves[0].from, "us");
    assert_eq!(report.moves[0].to, "eu");
    assert_eq!(report.generation, 2);
    assert!(cluster
        .router
        .log_text()
        .contains("1 tenants change region: us->eu 1"));

    // Started before the reload: finishes in us. Started after: served in eu.
    let (status, _, body) = json(in_flight.await.unwrap().unwrap()).await;
    assert_eq!((status, body["region"].as_str()), (200, Some("us")));
    assert_eq!(cluster.region_of("acme").await, "eu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_truncated_or_vanished_files_keep_the_running_configuration() {
    let cluster = Cluster::start_with(Options {
        process: true,
        ..Options::default()
    })
    .await;
    let registry_path = cluster.dir.path().join("tenants.json");
    let config_path = cluster.config_path();
    let good_config = std::fs::read_to_string(&config_path).unwrap();
    let bad_cases: [(&str, Breaker); 4] = [
        (
            "invalid config",
            Box::new(|| {
                std::fs::write(&config_path, good_config.replace("[tenancy]", "[tenancy\n"))
                    .unwrap()
            }),
        ),
        (
            "invalid registry",
            Box::new(|| cluster.replace_registry(&moved("acme", "mars"))),
        ),
        (
            "truncated registry",
            Box::new(|| cluster.replace_registry(&TEST_TENANTS[..TEST_TENANTS.len() / 2])),
        ),
        (
            "vanished registry",
            Box::new(|| std::fs::remove_file(&registry_path).unwrap()),
        ),
    ];
    for (what, break_it) in bad_cases {
        break_it();
        let answer = cluster.reload(false).await;
        assert!(!answer.ok, "{what}: {answer:?}");
        assert!(
            answer.error.unwrap().contains("running one keeps serving"),
            "{what}"
        );
        assert_eq!(
            cluster.region_of("acme").await,
            "us",
            "{what}: the old snapshot stopped serving"
        );
        // Restore for the next case.
        std::fs::write(&config_path, &good_config).unwrap();
        cluster.replace_registry(TEST_TENANTS);
    }
    // The CLI refuses a broken file before it even asks the router.
    std::fs::write(&config_path, good_config.replace("[tenancy]", "[tenancy\n")).unwrap();
    let out = router_command()
        .args(["reload", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::write(&config_path, &good_config).unwrap();
    // And with good files the real CLI reloads.
    let out = router_command()
        .args(["reload", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\": true"));
    assert!(cluster
        .router
        .log_text()
        .contains("reload failed; the running configuration keeps serving"));
}

fn many_tenants(count: usize, eu_from: usize) -> String {
    let tenants: Vec<String> = (0..count)
        .map(|i| {
            let region = if i >= eu_from { "eu" } else { "us" };
            format!("{{ \"id\": \"t-{i}\", \"region\": \"{region}\" }}")
        })
        .collect();
    format!("{{ \"tenants\": [{}] }}", tenants.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mass_move_guard_refuses_until_forced() {
    let cluster = Cluster::start().await;
    cluster.replace_registry(&many_tenants(40, 40));
    assert!(cluster.reload(false).await.ok);
    assert_eq!(cluster.region_of("t-0").await, "us");

    // 30 of 40 tenants (75%) leaving us at once looks like the wrong file.
    cluster.replace_registry(&many_tenants(40, 10));
    let refused = cluster.reload(false).await;
    assert!(!refused.ok);
    let error = refused.error.unwrap();
    assert!(
        error.contains("30 of 40 tenants") && error.contains("--force"),
        "{error}"
    );
    assert_eq!(cluster.region_of("t-39").await, "us");

    let forced = cluster.reload(true).await;
    assert!(forced.ok, "{forced:?}");
    assert_eq!(forced.report.unwrap().moved_tenants, 30);
    assert_eq!(cluster.region_of("t-39").await, "eu");
    assert_eq!(cluster.region_of("t-0").await, "us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_watcher_picks_up_a_renamed_registry() {
    let cluster = Cluster::start_with(Options {
        tables: format!("{FAST_SHUTDOWN}\n[reload]\nwatch_interval_ms = 100\n"),
        ..Options::default()
    })
    .await;
    cluster.replace_registry(&moved("acme", "eu"));
    let started = Instant::now();
    while cluster.region_of("acme").await != "eu" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the watcher did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "registry renamed -> served from it after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let mut cluster = Cluster::start_with(Options {
        process: true,
        tables: format!("{FAST_SHUTDOWN}\n[reload]\nwatch = false\n"),
        ..Options::default()
    })
    .await;
    cluster.replace_registry(&moved("acme", "eu"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cluster.region_of("acme").await,
        "us",
        "reloaded without a trigger"
    );
    cluster.router.process().signal("HUP");
    let started = Instant::now();
    while cluster.region_of("acme").await != "eu" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cluster
            .router
            .process_mut()
            .child
            .try_wait()
            .unwrap()
            .is_none(),
        "SIGHUP ended the router"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_state_survives_a_reload() {
    let cluster = Cluster::start_with(Options {
        tables: format!(
            "{FAST_SHUTDOWN}\n[health]\ncheck = \"http\"\ninterval_ms = 200\ntimeout_ms = 100\nunhealthy_threshold = 2\nhealthy_threshold = 3\n"
        ),
        ..Options::default()
    })
    .await;
    let v0 = &cluster.site("virginia")[0];
    v0.set_health_status(503);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = v0.requests();
    cluster.replace_registry(&moved("initech", "eu"));
    assert!(cluster.reload(false).await.ok);
    // A fresh state would start "up" and route to it at once.
    for _ in 0..12 {
        cluster.region_of("acme").await;
    }
    assert_eq!(
        v0.requests(),
        before,
        "the reload forgot that the backend is down"
    );
}

/// Config A routes `acme` to us through every site's first backend; config B routes it to
/// eu through every site's second backend. Any response must match one of them entirely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_fail_nothing_and_never_mix_snapshots() {
    let cluster = Cluster::start_with(Options {
        backends_per_site: [2, 2, 2, 2],
        tables: format!("{FAST_SHUTDOWN}\n[reload]\nwatch = false\n"),
        ..Options::default()
    })
    .await;
    let pick = |i: usize| -> Vec<Vec<std::net::SocketAddr>> {
        cluster
            .sites
            .iter()
            .map(|site| vec![site[i].addr()])
            .collect()
    };
    let set = |i: usize, region: &str| -> HashSet<String> {
        DEMO_SITES
            .iter()
            .zip(&cluster.sites)
            .filter(|(s, _)| s.0 == region)
            .map(|(_, backends)| backends[i].addr().to_string())
            .collect()
    };
    let (a_us, b_eu) = (set(0, "us"), set(1, "eu"));
    let tables = format!("\n\n{FAST_SHUTDOWN}\n[reload]\nwatch = false\n");
    let dir = cluster.dir.path().to_owned();
    let listen = cluster.router.addr();
    let write = |which: usize| {
        let tenants = if which == 0 {
            TEST_TENANTS.to_owned()
        } else {
            moved("acme", "eu")
        };
        write_config(&dir, listen, &[], &pick(which), &tenants, &tables, &[""; 4]).unwrap();
    };
    write(0);
    assert!(cluster.reload(false).await.ok);

    let load = Load::start(&cluster, "acme", 4);
    // Steady load first, for the p99 without reloads; then 100 reloads, alternating.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let storm = Instant::now();
    for i in 1..=100 {
        write(i % 2);
        let answer = cluster.reload(false).await;
        assert!(answer.ok, "reload {i}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let storm_took = storm.elapsed();
    let seen = load.stop().await;

    let failed = failures(&seen).len();
    let mixed: Vec<_> = seen
        .iter()
        .filter(|o| {
            !((o.region == "us" && a_us.contains(&o.backend))
                || (o.region == "eu" && b_eu.contains(&o.backend)))
        })
        .collect();
    let (steady, in_storm): (Vec<&Outcome>, Vec<&Outcome>) =
        seen.iter().partition(|o| o.started < storm);
    let served_a = in_storm.iter().filter(|o| o.region == "us").count();
    let served_b = in_storm.iter().filter(|o| o.region == "eu").count();
    let p99 = |outcomes: &[&Outcome]| {
        let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
        latencies.sort();
        latencies[latencies.len() * 99 / 100]
    };
    let (steady, reloading) = (p99(&steady), p99(&in_storm));
    eprintln!(
        "{} requests ({} during 100 reloads in {storm_took:?}: {served_a} by A, {served_b} by B), \
         {failed} failed, {} mixed; p99 {steady:?} steady vs {reloading:?} during reloads",
        seen.len(),
        in_storm.len(),
        mixed.len()
    );
    assert_eq!(failed, 0);
    assert!(
        mixed.is_empty(),
        "responses mixing two snapshots: {:?}",
        &mixed[..mixed.len().min(5)]
    );
    assert!(
        served_a > 0 && served_b > 0,
        "the storm never switched snapshots"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_tenants_counts_against_the_guard_and_a_file_cannot_loosen_its_own_guard() {
    let cluster = Cluster::start().await;
    cluster.replace_registry(&many_tenants(40, 40));
    assert!(cluster.reload(false).await.ok);

    // 30 of 40 tenants vanishing (a truncated export) is refused like a mass move.
    cluster.replace_registry(&many_tenants(10, 10));
    let refused = cluster.reload(false).await;
    assert!(!refused.ok, "{refused:?}");
    assert!(refused.error.unwrap().contains("30 of 40 tenants"));

    // Loosening the guard in the same deploy does not let the deploy through.
    let config = cluster.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[reload]\nmax_moved_percent = 100\n"),
    )
    .unwrap();
    assert!(
        !cluster.reload(false).await.ok,
        "the new file relaxed its own guard"
    );
    // Once the looser guard is running, the same change goes through without --force.
    cluster.replace_registry(&many_tenants(40, 40));
    let answer = cluster.reload(false).await;
    assert!(answer.ok, "{answer:?}");
    cluster.replace_registry(&many_tenants(10, 10));
    assert!(cluster.reload(false).await.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_checks_off_frees_a_backend_they_had_marked_down() {
    let cluster = Cluster::start_with(Options {
        tables: format!(
            "{FAST_SHUTDOWN}\n[health]\ncheck = \"http\"\ninterval_ms = 200\ntimeout_ms = 100\nunhealthy_threshold = 1\n"
        ),
        ..Options::default()
    })
    .await;
    let v0 = &cluster.site("virginia")[0];
    v0.set_health_status(503);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = v0.requests();
    for _ in 0..9 {
        cluster.region_of("acme").await;
    }
    assert_eq!(v0.requests(), before, "the checks did not take it out");

    let config = cluster.config_path();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("check = \"http\"", "check = \"none\"");
    std::fs::write(&config, text).unwrap();
    assert!(cluster.reload(false).await.ok);
    for _ in 0..9 {
        cluster.region_of("acme").await;
    }
    assert!(
        v0.requests() > before,
        "a stale 'down' from disabled checks kept the backend out"
    );
}
