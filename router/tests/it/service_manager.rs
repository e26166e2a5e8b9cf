//! The router as deploy/ runs it: what it tells systemd (`Type=notify`), the upgrade it starts
//! itself on SIGUSR2, and admin tokens kept in a file that is swapped as Kubernetes swaps a
//! mounted Secret.

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use crate::common::*;

/// The service manager's side of `NOTIFY_SOCKET`: every message heard, in order.
struct Manager {
    socket: tokio::net::UnixDatagram,
    heard: Vec<String>,
}

impl Manager {
    fn of(cluster: &mut Cluster) -> Manager {
        let socket = cluster.notify.take().expect("Options::notify");
        socket.set_nonblocking(true).unwrap();
        Manager {
            socket: tokio::net::UnixDatagram::from_std(socket).unwrap(),
            heard: Vec::new(),
        }
    }

    /// Whatever has arrived, without waiting.
    fn heard_so_far(&mut self) {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.socket.try_recv(&mut buf) {
            self.heard
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// The next message that `wanted` accepts, within 20 s.
    async fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.heard.push(message.clone());
                    if wanted(&message) {
                        return message;
                    }
                }
                Ok(Err(e)) => panic!("notify socket: {e}"),
                Err(_) => panic!("systemd never heard {what}; it heard {:?}", self.heard),
            }
        }
    }
}

fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn says(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

/// A process this test did not spawn (the successor): SIGKILLed if the test ends early.
struct Adopted(u32);

impl Adopted {
    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.0.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.0);
    }

    /// Gone, or a zombie nobody has reaped yet (its parent exited before it).
    fn exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.0)).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// Waits until the router process exits; panics with `what` and its log after `limit`.
async fn exits_within(cluster: &mut Cluster, limit: Duration, what: &str) {
    let started = Instant::now();
    while cluster
        .router
        .process_mut()
        .child
        .try_wait()
        .unwrap()
        .is_none()
    {
        assert!(
            started.elapsed() < limit,
            "{what}:\n{}",
            cluster.router.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readyz(cluster: &Cluster) -> (u16, serde_json::Value) {
    let url = format!("http://{}/readyz", cluster.admin.unwrap());
    match cluster.client.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or_default()),
        Err(_) => (0, serde_json::Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_and_stopping_and_a_sigusr2_upgrade_moves_the_main_pid_without_failing_a_request(
) {
    let mut cluster = Cluster::start_with(Options {
        process: true,
        notify: true,
        admin: true,
        tables: FAST_SHUTDOWN.replace("shutdown_grace_seconds = 0", "shutdown_grace_seconds = 2"),
        ..Options::default()
    })
    .await;
    let mut systemd = Manager::of(&mut cluster);
    let old_pid = cluster.router.process().child.id().to_string();

    let ready = systemd.until("READY=1", |m| says(m, "READY=1")).await;
    assert_eq!(field(&ready, "MAINPID"), Some(old_pid.as_str()), "{ready}");
    assert_eq!(
        field(&ready, "STATUS"),
        Some("serving 4 tenants, configuration generation 1"),
        "{ready}"
    );
    assert_eq!(
        readyz(&cluster).await.0,
        200,
        "READY=1 is what /readyz says"
    );

    // SIGUSR2: the router starts its successor itself and hands it the listeners, under load.
    let load = Load::start(&cluster, "acme", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.router.process().signal("USR2");
    // The old process names the successor as the main process as it hands over, and is no
    // stopping service: the successor then says it is ready.
    let handing_over = systemd
        .until("MAINPID of the successor", |m| {
            field(m, "MAINPID").is_some_and(|pid| pid != old_pid)
        })
        .await;
    assert!(!says(&handing_over, "READY=1"), "{handing_over}");
    let successor_pid = field(&handing_over, "MAINPID").unwrap().to_owned();
    let successor = Adopted(successor_pid.parse().unwrap());
    let ready = systemd
        .until("READY=1 from the successor", |m| says(m, "READY=1"))
        .await;
    assert_eq!(
        field(&ready, "MAINPID"),
        Some(successor_pid.as_str()),
        "{ready}"
    );
    assert!(
        !systemd.heard.iter().any(|m| says(m, "STOPPING=1")),
        "an upgrade is no stop: {:?}",
        systemd.heard
    );
    exits_within(
        &mut cluster,
        Duration::from_secs(20),
        "the old process did not exit",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Its exit is no stop either.
    systemd.heard_so_far();
    assert!(
        !systemd.heard.iter().any(|m| says(m, "STOPPING=1")),
        "an upgrade is no stop: {:?}",
        systemd.heard
    );
    let outcomes = load.stop().await;
    let failed = failures(&outcomes);
    assert!(outcomes.len() > 50, "{} requests", outcomes.len());
    assert!(
        failed.is_empty(),
        "requests failed during the upgrade: {:?}",
        &failed[..failed.len().min(3)]
    );
    let served = cluster
        .get("/", "acme")
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(served.ok(), Some(200), "the successor serves");

    // The successor takes the admin listener once the old process let it go.
    let started = Instant::now();
    while readyz(&cluster).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the successor's /readyz"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM: a stop.
    successor.signal("TERM");
    systemd.until("STOPPING=1", |m| says(m, "STOPPING=1")).await;
    let started = Instant::now();
    while !successor.exited() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the successor did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGUSR2 and returns the router's log once it says the upgrade was not done.
async fn refused_upgrade(cluster: &Cluster) -> String {
    cluster.router.process().signal("USR2");
    let started = Instant::now();
    loop {
        let log = cluster.router.log_text();
        if log.contains("upgrade not done; this process keeps serving") {
            return log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no refused upgrade in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_cannot_start_leaves_the_router_serving() {
    let cluster = Cluster::start_with(Options {
        process: true,
        ..Options::default()
    })
    .await;
    // The files on disk no longer load (a bad deploy): the successor exits at once.
    let config = cluster.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[[regions]]", "[[regoins]]")).unwrap();
    let log = refused_upgrade(&cluster).await;
    assert!(log.contains("the successor exited first"), "{log}");
    let served = cluster
        .get("/", "acme")
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(served.ok(), Some(200), "the old process keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_without_a_registry_does_not_take_over() {
    // Fleet mode with etcd nowhere and no cache: the successor would refuse every tenant.
    let dead = free_port();
    let cluster = Cluster::start_with(Options {
        process: true,
        registry: Some(format!(
            "{{ etcd = {{ endpoints = [\"http://{dead}\"], prefix = \"/gone\", cache = \"registry.cache\", timeout_ms = 300 }} }}"
        )),
        ..Options::default()
    })
    .await;
    let log = refused_upgrade(&cluster).await;
    assert!(log.contains("the successor exited first"), "{log}");
    let socket = cluster.dir.path().join("upgrade.sock");
    assert!(
        !socket.exists(),
        "the successor never waited for the listeners"
    );
    // The old process still answers (503: it has no registry either).
    let served = cluster
        .get("/", "acme")
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(served.ok(), Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_a_successor_starts_is_still_a_stop() {
    let mut cluster = Cluster::start_with(Options {
        process: true,
        ..Options::default()
    })
    .await;
    // The successor reads a config whose upgrade socket is elsewhere: it never waits where the
    // old process looks, and gives up only after some 5 s of waiting for the listeners.
    let config = cluster.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("upgrade.sock", "elsewhere.sock")).unwrap();
    cluster.router.process().signal("USR2");
    let started = Instant::now();
    while !cluster
        .router
        .log_text()
        .contains("SIGUSR2: successor started")
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no successor");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.router.process().signal("TERM");
    exits_within(
        &mut cluster,
        Duration::from_secs(3),
        "SIGTERM waited for the successor",
    )
    .await;
}

/// As the kubelet updates a mounted Secret: the files are symlinks through `..data` to a
/// timestamped directory, and an update swaps `..data` in one rename.
fn mount_secret(dir: &std::path::Path, version: &str, tokens: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("tokens.toml"), tokens).unwrap();
    let next = dir.join("..data_tmp");
    symlink(format!("..{version}"), &next).unwrap();
    std::fs::rename(&next, dir.join("..data")).unwrap();
    let file = dir.join("tokens.toml");
    if std::fs::symlink_metadata(&file).is_err() {
        symlink("..data/tokens.toml", file).unwrap();
    }
}

fn token_entry(name: &str, token: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        residency_admin::auth::token_hash(token)
    )
}

#[tokio::test]
async fn admin_tokens_in_a_mounted_secret_are_swapped_live() {
    let cluster = Cluster::start_with(Options {
        admin: true,
        tables: format!("{FAST_SHUTDOWN}[reload]\nwatch_interval_ms = 100\n"),
        ..Options::default()
    })
    .await;
    let secret = cluster.dir.path().join("secret");
    mount_secret(
        &secret,
        "2026_12_03_first",
        &token_entry("dashboards", "first-secret"),
    );
    let status = |token: &'static str| {
        let request = cluster
            .client
            .get(format!("http://{}/v1/tenants/acme", cluster.admin.unwrap()))
            .bearer_auth(token);
        async move {
            request
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    // Each check waits for the reload (the generation `/readyz` reports) rather than polling
    // with a token that is refused: refusals are rate limited per client.
    let generation = || async { readyz(&cluster).await.1["generation"].as_u64().unwrap() };
    let reloaded_after = |before: u64| async move {
        let started = Instant::now();
        while generation().await <= before {
            assert!(started.elapsed() < Duration::from_secs(10), "no reload");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(status("first-secret").await, 401);
    // The config starts naming the file: its token is accepted after the reload.
    let config = cluster.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    let before = generation().await;
    std::fs::write(
        &config,
        text.replacen(
            "[admin]\n",
            "[admin]\ntokens_file = \"secret/tokens.toml\"\n",
            1,
        ),
    )
    .unwrap();
    reloaded_after(before).await;
    assert_eq!(status("first-secret").await, 200);
    assert_eq!(status(VIEWER).await, 200, "the config's own tokens stay");

    // Rotation: the Secret's new version replaces the token; the config did not change.
    let before = generation().await;
    mount_secret(
        &secret,
        "2026_12_03_second",
        &token_entry("dashboards", "second-secret"),
    );
    reloaded_after(before).await;
    assert_eq!(status("second-secret").await, 200);
    assert_eq!(status("first-secret").await, 401, "the rotated-out token");
}
