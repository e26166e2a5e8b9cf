//! Registry and audit log agree after real storage faults, injected under the running router:
//! a registry directory that turns read-only (the new registry cannot be staged), a rename
//! the kernel refuses (the registry file is a mount point), and a directory fsync that fails
//! (`strace` injects EIO). After each, the audit log, the registry file, `GET
//! /v1/tenants/{id}` and the data plane all say the same thing.
//!
//! Needs root (for `mount`) and `strace`, as `scripts/test.sh` provides.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{
    admin_cluster, admin_process_cluster, wait_for_port, Cluster, Router, RouterProcess, OPERATOR,
};
use serde_json::{json, Value};

/// `PUT /v1/tenants/{tenant}` with `{"region": region}`: status and body.
async fn put_region(
    cluster: &Cluster,
    tenant: &str,
    region: &str,
    request_id: &str,
) -> (u16, Value) {
    let response = cluster
        .client
        .put(format!(
            "http://{}/v1/tenants/{tenant}",
            cluster.admin.unwrap()
        ))
        .bearer_auth(OPERATOR)
        .header("x-request-id", request_id)
        .json(&json!({ "region": region }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What the admin API says the tenant's home region is.
async fn api_region(cluster: &Cluster, tenant: &str) -> String {
    let response = cluster
        .client
        .get(format!(
            "http://{}/v1/tenants/{tenant}",
            cluster.admin.unwrap()
        ))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["region"].as_str().unwrap().to_owned()
}

/// What the registry file on disk says the tenant's home region is.
fn file_region(cluster: &Cluster, tenant: &str) -> String {
    let text = std::fs::read_to_string(cluster.dir.path().join("tenants.json")).unwrap();
    let registry: Value = serde_json::from_str(&text).unwrap();
    registry["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == tenant)
        .map(|t| t["region"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{tenant} is not in the file: {text}"))
}

/// The audit outcomes recorded for one request id, in order.
fn audited(cluster: &Cluster, request_id: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(cluster.dir.path().join("audit/audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["request_id"] == request_id)
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect()
}

/// Every place that can say where acme lives, at once.
async fn where_acme_lives(cluster: &Cluster) -> [String; 3] {
    [
        api_region(cluster, "acme").await,
        file_region(cluster, "acme"),
        cluster.region_of("acme").await,
    ]
}

fn no_staged_file_left(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "staged files left behind: {left:?}");
}

/// A mount made for one test, unmounted when dropped (before the temporary directory goes).
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) {
        let out = Command::new("mount").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "mount {args:?} failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bind-mounts `path` onto itself: the same file or directory, now a mount point.
    fn bind_onto_itself(path: &Path) -> Mount {
        let p = path.to_str().unwrap();
        Mount::run(&["--bind", p, p]);
        Mount(path.to_owned())
    }

    fn read_only(path: &Path) -> Mount {
        let mount = Mount::bind_onto_itself(path);
        Mount::run(&["-o", "remount,bind,ro", path.to_str().unwrap()]);
        mount
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_registry_that_cannot_be_staged_changes_nothing_and_audits_nothing() {
    let cluster = admin_cluster().await;
    assert_eq!(where_acme_lives(&cluster).await, ["us", "us", "us"]);
    {
        // The registry's directory turns read-only under the running router; the audit log
        // (a file already open for appending) still takes entries.
        let _ro = Mount::read_only(cluster.dir.path());
        let (status, body) = put_region(&cluster, "acme", "eu", "ro-1").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("store_unavailable")),
            "{body}"
        );
        assert_eq!(where_acme_lives(&cluster).await, ["us", "us", "us"]);
        assert_eq!(
            audited(&cluster, "ro-1"),
            Vec::<String>::new(),
            "nothing happened, so nothing is audited"
        );
    }
    // Once the disk is back, the same change goes through.
    let (status, body) = put_region(&cluster, "acme", "eu", "ro-2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(where_acme_lives(&cluster).await, ["eu", "eu", "eu"]);
    assert_eq!(audited(&cluster, "ro-2"), ["applied"]);
    no_staged_file_left(cluster.dir.path());
}

#[tokio::test]
async fn a_refused_rename_leaves_the_old_registry_live_and_audits_the_failure() {
    let cluster = admin_cluster().await;
    let registry = cluster.dir.path().join("tenants.json");
    {
        // A file that is a mount point cannot be renamed over: rename(2) fails with EBUSY
        // after the new registry was staged and its change audited.
        let _busy = Mount::bind_onto_itself(&registry);
        let (status, body) = put_region(&cluster, "acme", "eu", "busy-1").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("store_unavailable")),
            "{body}"
        );
        assert_eq!(where_acme_lives(&cluster).await, ["us", "us", "us"]);
        assert_eq!(
            audited(&cluster, "busy-1"),
            ["applied", "failed"],
            "the audit log says the audited change did not happen"
        );
        no_staged_file_left(cluster.dir.path());
    }
    let (status, _) = put_region(&cluster, "acme", "eu", "busy-2").await;
    assert_eq!(status, 200);
    assert_eq!(where_acme_lives(&cluster).await, ["eu", "eu", "eu"]);
    crate::common::assert_audit_verifies(&cluster);
}

/// Kills the router that `strace` started (`strace` itself is the harness's child; killing it
/// alone would leave the router running, detached).
struct Traced(u32);

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[tokio::test]
async fn a_failed_directory_fsync_keeps_the_live_state_on_what_the_file_says() {
    let mut cluster = admin_process_cluster().await;
    // The same router again, under strace: every fsync of the registry's directory fails.
    let _ = cluster.router.process_mut().child.kill();
    let _ = cluster.router.process_mut().child.wait();
    let dir = cluster.dir.path().canonicalize().unwrap();
    let trace = dir.join("strace.log");
    let log = dir.join("router-traced.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new("strace")
        .args(["-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-o"])
        .arg(&trace)
        .arg("-P")
        .arg(&dir)
        .args(["-e", "trace=fsync", "-e", "inject=fsync:error=EIO"])
        .arg(env!("CARGO_BIN_EXE_residency-router"))
        .args(["run", "--config"])
        .arg(cluster.config_path())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("strace runs (scripts/test.sh installs it)");
    let strace_pid = child.id();
    cluster.router = Router::Process(RouterProcess {
        child,
        addr: cluster.router.addr(),
        log,
    });
    wait_for_port(cluster.router.addr());
    wait_for_port(cluster.admin.unwrap());
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).unwrap();
    let _router = Traced(children.split_whitespace().next().unwrap().parse().unwrap());
    cluster.client = reqwest::Client::builder().no_proxy().build().unwrap();

    let (status, body) = put_region(&cluster, "acme", "eu", "nosync-1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("store_not_durable")),
        "{body}"
    );
    assert_eq!(body["applied"], true, "{body}");
    // The file holds the change, so the API, the data plane and the audit log do too.
    assert_eq!(where_acme_lives(&cluster).await, ["eu", "eu", "eu"]);
    assert_eq!(audited(&cluster, "nosync-1"), ["applied"]);
    no_staged_file_left(cluster.dir.path());
    let injected = std::fs::read_to_string(&trace).unwrap();
    assert!(
        injected
            .lines()
            .any(|l| l.contains("fsync(") && l.contains("(INJECTED)")),
        "strace injected the fault: {injected}"
    );
}
