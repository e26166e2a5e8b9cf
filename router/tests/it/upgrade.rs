//! Pingora's zero-downtime upgrade, through `run --upgrade` and SIGQUIT: under continuous
//! requests, the old process hands its listener to the new one and not one request fails.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{failures, router_command, Cluster, Load, Options, FAST_SHUTDOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_hands_the_listener_to_an_upgraded_process_without_failing_a_request() {
    // As in production: the old process keeps serving its open connections for the grace
    // period, telling keep-alive clients to reconnect (to the new process).
    let mut cluster = Cluster::start_with(Options {
        process: true,
        tables: FAST_SHUTDOWN.replace("shutdown_grace_seconds = 0", "shutdown_grace_seconds = 2"),
        ..Options::default()
    })
    .await;
    let log = std::fs::File::create(cluster.dir.path().join("upgraded.log")).unwrap();
    let mut upgraded = router_command()
        .args(["run", "--upgrade", "--config"])
        .arg(cluster.config_path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The new process waits on the upgrade socket for the old one's listeners.
    let socket = cluster.dir.path().join("upgrade.sock");
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new process never waited for the sockets"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let load = Load::start(&cluster, "acme", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.router.process().signal("QUIT");
    let old_exit = loop {
        if let Some(status) = cluster.router.process_mut().child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the old process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Keep going for a while on the new process alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.stop().await;
    let failed = failures(&outcomes);
    let still_serving = cluster
        .get("/", "acme")
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _ = upgraded.kill();
    let _ = upgraded.wait();
    eprintln!(
        "upgrade under load: {} requests, {} failed; old process exited {old_exit:?}",
        outcomes.len(),
        failed.len()
    );
    assert_eq!(
        still_serving.ok(),
        Some(200),
        "the upgraded process is not serving"
    );
    assert!(outcomes.len() > 50);
    assert!(
        failed.is_empty(),
        "requests failed during the upgrade: {:?}",
        &failed[..failed.len().min(3)]
    );
}
