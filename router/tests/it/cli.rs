//! The command line: validate, help, and graceful shutdown of `run`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{json, router_command, Cluster, Options};

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/router.toml")
}

#[test]
fn validate_accepts_the_shipped_example() {
    let out = router_command()
        .args(["validate", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok (2 regions, 4 sites, 5 backends, 3 tenants)"),
        "{stdout}"
    );
}

#[test]
fn validate_rejects_a_broken_config_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("lat = 50.1", "lat = 150.1")
        .replace("unknown  = \"reject\"", "unknown  = \"allow\"");
    std::fs::write(dir.path().join("router.toml"), text).unwrap();
    std::fs::copy(
        example().with_file_name("tenants.json"),
        dir.path().join("tenants.json"),
    )
    .unwrap();
    let out = router_command()
        .args(["validate", "--config"])
        .arg(dir.path().join("router.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 problems found"), "{stderr}");
    assert!(
        stderr.contains("regions[1].sites[0].lat: latitude 150.1 is out of range"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tenancy.unknown: `allow` is not a policy"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_an_invalid_config() {
    let out = router_command()
        .args(["run", "--config", "/nonexistent/router.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["demo", "--help"],
    ] {
        let out = router_command().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let mut cluster = Cluster::start_with(Options {
        process: true,
        tables: "[server]\nshutdown_grace_seconds = 2\nthreads = 2".into(),
        ..Options::default()
    })
    .await;
    for backend in cluster.site("virginia") {
        backend.set_delay(Duration::from_millis(800));
    }
    let in_flight = tokio::spawn(cluster.get("/", "acme").send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.router.process().signal("TERM");
    let (status, _, body) = json(in_flight.await.unwrap().unwrap()).await;
    assert_eq!((status, body["region"].as_str()), (200, Some("us")));

    let started = Instant::now();
    let exit = loop {
        if let Some(status) = cluster.router.process_mut().child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "router did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(cluster
        .router
        .log_text()
        .contains("residency-router stopped"));
}

#[tokio::test]
async fn probe_exits_zero_only_on_a_2xx_answer() {
    let cluster = Cluster::start_with(Options {
        admin: true,
        ..Options::default()
    })
    .await;
    let admin = cluster.admin.unwrap();
    let probe = |url: String| {
        tokio::task::spawn_blocking(move || {
            router_command()
                .args(["probe", &url, "--timeout-ms", "1000"])
                .output()
                .unwrap()
        })
    };
    let live = probe(format!("http://{admin}/livez")).await.unwrap();
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    // An authenticated route without a token: 401.
    let refused = probe(format!("http://{admin}/v1/tenants")).await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains(": 401"));
    // Nothing listening, and a URL the probe does not speak.
    let closed = crate::common::free_port();
    let down = probe(format!("http://{closed}/livez")).await.unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));
    let tls = probe(format!("https://{admin}/livez")).await.unwrap();
    assert_eq!(tls.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&tls.stderr).contains("plain HTTP only"));
}
