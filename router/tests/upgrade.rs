//! Pingora's zero-downtime upgrade, through `run --upgrade` and SIGQUIT: under continuous
//! requests, the old process hands its listener to the new one and not one request fails.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, Options, FAST_SHUTDOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_hands_the_listener_to_an_upgraded_process_without_failing_a_request() {
    // As in production: the old process keeps serving its open connections for the grace
    // period, telling keep-alive clients to reconnect (to the new process).
    let mut cluster = Cluster::start_with(Options {
        tables: FAST_SHUTDOWN.replace("shutdown_grace_seconds = 0", "shutdown_grace_seconds = 2"),
        ..Options::default()
    })
    .await;
    let log = std::fs::File::create(cluster.dir.path().join("upgraded.log")).unwrap();
    let mut upgraded = Command::new(env!("CARGO_BIN_EXE_residency-router"))
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

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop) = (cluster.client.clone(), cluster.url("/"), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).header("x-tenant-id", "acme").send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => {
                            failed += 1;
                            errors.push(format!("status {}", r.status()));
                        }
                        Err(e) => {
                            failed += 1;
                            errors.push(format!("{e:?}"));
                        }
                    }
                }
                (ok, failed, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.router.signal("QUIT");
    let old_exit = loop {
        if let Some(status) = cluster.router.child.try_wait().unwrap() {
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
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
    for client in clients {
        let (o, f, e) = client.await.unwrap();
        ok += o;
        failed += f;
        errors.extend(e);
    }
    let still_serving = cluster
        .get("/", "acme")
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _ = upgraded.kill();
    let _ = upgraded.wait();
    eprintln!("upgrade under load: {ok} requests succeeded, {failed} failed; old process exited {old_exit:?}");
    assert_eq!(
        still_serving.ok(),
        Some(200),
        "the upgraded process is not serving"
    );
    assert!(ok > 50);
    assert_eq!(failed, 0, "requests failed during the upgrade: {errors:?}");
}
