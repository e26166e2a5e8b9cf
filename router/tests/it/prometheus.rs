//! The SRE kit against the real tools: promtool on the shipped rules and on the router's real
//! `/metrics`, a real Prometheus server scraping the router, and the Grafana dashboard
//! referring only to metrics that exist. promtool and prometheus come from Debian's
//! `prometheus` package, which the test command installs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Cluster, Options};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn tool(name: &str) -> Command {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .unwrap()
            .status
            .success(),
        "{name} is not installed: run scripts/test.sh (it installs Debian's prometheus package)"
    );
    Command::new(name)
}

#[test]
fn shipped_rules_pass_promtool_checks_and_alert_unit_tests() {
    let dir = deploy().join("prometheus");
    for args in [
        &["check", "rules", "residency-rules.yml"][..],
        &["test", "rules", "residency-rules.test.yml"],
        &["check", "config", "prometheus.yml"],
    ] {
        let out = tool("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Metric names an expression refers to: `residency_*` identifiers.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("residency_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn defined(name: &str) -> bool {
    residency_dataplane::metrics::DEFINITIONS.iter().any(|d| {
        name == d.name
            || (d.kind == residency_dataplane::metrics::Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{}{s}", d.name)))
    })
}

#[test]
fn dashboard_and_rules_refer_only_to_existing_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/residency-router.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 10);
    exprs.push(std::fs::read_to_string(deploy().join("prometheus/residency-rules.yml")).unwrap());
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(defined(&name), "`{name}` does not exist (in `{expr}`)");
        }
    }
    // Every metric family is on the dashboard.
    let all = exprs.join(" ");
    for d in residency_dataplane::metrics::DEFINITIONS
        .iter()
        .filter(|d| d.name != "residency_build_info")
    {
        assert!(all.contains(d.name), "{} is on no panel", d.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let cluster = Cluster::start_with(Options {
        metrics: true,
        ..Options::default()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(cluster.get("/", "acme").send().await.unwrap().status(), 200);
    }
    let blocked = cluster
        .get("/", "acme")
        .header("host", "eu.api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 421);
    let text = cluster.scrape().await;

    let mut check = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus, on loopback with its own data directory, scraping every 200 ms.
    let dir = tempfile::tempdir().unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: router\n    static_configs:\n      - targets: [\"{}\"]\n",
            cluster.metrics.unwrap()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut prometheus = tool("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let query = |q: &str| format!("http://{web}/api/v1/query?query={q}");
    let started = Instant::now();
    let mut found = (0.0, 0.0);
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let value = |body: serde_json::Value| -> f64 {
            body["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let Ok(r) = cluster
            .client
            .get(query("sum(residency_requests_total)"))
            .send()
            .await
        else {
            continue;
        };
        let requests = value(r.json().await.unwrap_or_default());
        let Ok(r) = cluster
            .client
            .get(query(
                "sum(residency_blocked_total{reason=\"cross_region_blocked\"})",
            ))
            .send()
            .await
        else {
            continue;
        };
        let blocks = value(r.json().await.unwrap_or_default());
        found = (requests, blocks);
        if requests >= 5.0 && blocks >= 1.0 {
            break;
        }
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(
        found,
        (5.0, 1.0),
        "Prometheus saw {found:?}; log:\n{}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
}
