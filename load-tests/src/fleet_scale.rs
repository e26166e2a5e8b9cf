//! `fleet-scale`: fleet mode at a million tenants, against a real 3-member etcd cluster.
//!
//! Reports, in one run: the import of a registry file into etcd; the cold start of a router
//! from etcd next to one from the same registry as a file; resident memory per tenant of
//! both; the request path of both under the same wrk load (a ratio); and the time from an
//! admin write to a second router serving it, over many moves (p50/p99). Run it with
//! `load-tests/fleet-scale.sh`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use load_tests::load::{wrk, Load};
use load_tests::scale::{home_region, registry_json, spread, tenant_id};
use load_tests::{backend, free_port, median, Running};
use residency_testkit::{write_config, EtcdCluster, DEMO_SITES};

#[derive(Parser)]
#[command(about = "Fleet mode at scale: import, cold start, memory, request path, write-to-apply")]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    tenants: usize,
    /// Admin writes timed from acknowledgement on router A to router B serving them.
    #[arg(long, default_value_t = 1000)]
    moves: usize,
    /// Seconds of wrk load per router.
    #[arg(long, default_value_t = 4)]
    seconds: u32,
}

const OPERATOR: &str = "fleet-scale-operator";
const ROUTER: &str = "target/release/residency-router";

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One HTTP/1.1 exchange on a fresh connection: status and the whole answer.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

fn served_region(addr: SocketAddr, tenant: &str) -> Option<String> {
    let (_, answer) = http(
        addr,
        &format!("GET / HTTP/1.1\r\nhost: x\r\nx-tenant-id: {tenant}\r\nconnection: close\r\n\r\n"),
    );
    answer
        .lines()
        .find_map(|l| l.strip_prefix("x-residency-region: "))
        .map(|r| r.trim().to_owned())
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

/// A router's config in `dir`: the registry file, or `registry` (fleet mode) instead.
fn config(
    dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[Vec<SocketAddr>],
    registry: Option<&str>,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let tables = format!(
        "[server]\nthreads = 1\nshutdown_grace_seconds = 0\nupgrade_socket = \"upgrade.sock\"\n\
         [admin]\naudit_log = \"audit.log\"\n[[admin.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
        residency_admin::auth::token_hash(OPERATOR)
    );
    // The registry file is written once, beside the file router's config.
    let path = write_config(
        dir,
        listen,
        &[("admin", admin)],
        backends,
        "{\"tenants\": []}",
        &tables,
        &[""; 4],
    )
    .unwrap();
    if let Some(registry) = registry {
        let toml = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            toml.replacen(
                "registry = \"tenants.json\"",
                &format!("registry = {registry}"),
                1,
            ),
        )
        .unwrap();
    }
    path
}

struct Started {
    _router: Running,
    listen: SocketAddr,
    admin: SocketAddr,
    startup: Duration,
    rss_kib: u64,
}

/// Starts the release router and waits until it routes `probe` (its registry is live).
fn start(config: &Path, listen: SocketAddr, admin: SocketAddr, probe: &str) -> Started {
    let began = Instant::now();
    let log = std::fs::File::create(config.with_extension("log")).unwrap();
    let child = Command::new(ROUTER)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the router");
    let router = Running(child);
    while served_region(listen, probe).is_none() {
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "the router never served {probe}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let startup = began.elapsed();
    let rss_kib = resident_kib(router.0.id());
    Started {
        _router: router,
        listen,
        admin,
        startup,
        rss_kib,
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let backends: Vec<Vec<SocketAddr>> = DEMO_SITES
        .iter()
        .map(|(region, site, _, _)| vec![runtime.block_on(backend::start(site, region)).unwrap()])
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let etcd = EtcdCluster::start(3);
    let endpoints: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    let fleet = |id: &str| {
        format!("{{ etcd = {{ endpoints = [{}], prefix = \"/scale\", cache = \"registry.cache\", router_id = \"{id}\" }} }}", endpoints.join(", "))
    };
    let probe = tenant_id(args.tenants - 1);

    // The registry, as a file for the file router and imported into etcd for the fleet.
    let (file_listen, file_admin) = (free_port(), free_port());
    let file_config = config(&dir.join("file"), file_listen, file_admin, &backends, None);
    let json = registry_json(args.tenants);
    std::fs::write(dir.join("file/tenants.json"), &json).unwrap();
    let (a_listen, a_admin) = (free_port(), free_port());
    let a_config = config(
        &dir.join("a"),
        a_listen,
        a_admin,
        &backends,
        Some(&fleet("edge-a")),
    );
    let began = Instant::now();
    let import = Command::new(ROUTER)
        .args(["registry", "import", "--config"])
        .arg(&a_config)
        .arg(dir.join("file/tenants.json"))
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let import_s = began.elapsed().as_secs_f64();
    println!(
        "import: {} tenants ({:.1} MB of JSON) into etcd in {import_s:.1} s ({:.0} tenants/s)",
        args.tenants,
        json.len() as f64 / 1e6,
        args.tenants as f64 / import_s
    );

    let file = start(&file_config, file_listen, file_admin, &probe);
    let a = start(&a_config, a_listen, a_admin, &probe);
    let per_tenant = |s: &Started| s.rss_kib as f64 * 1024.0 / args.tenants as f64;
    println!(
        "cold start to serving: file {:.2} s, etcd {:.2} s (ratio {:.2})",
        file.startup.as_secs_f64(),
        a.startup.as_secs_f64(),
        a.startup.as_secs_f64() / file.startup.as_secs_f64()
    );
    println!(
        "resident memory: file {} MiB ({:.0} B/tenant), etcd {} MiB ({:.0} B/tenant), ratio {:.2}",
        file.rss_kib / 1024,
        per_tenant(&file),
        a.rss_kib / 1024,
        per_tenant(&a),
        a.rss_kib as f64 / file.rss_kib as f64
    );

    // The request path under the same load: a tenant spread over the table.
    let header = format!("x-tenant-id: {}", tenant_id(spread(12_345, args.tenants)));
    let headers = [header.as_str()];
    let load = |target| Load {
        target,
        path: "/",
        headers: &headers,
        connections: 16,
        seconds: args.seconds,
        expected: 200,
    };
    // Alternating rounds, medians: the two routers share the machine with etcd.
    let (mut file_rps, mut fleet_rps, mut file_p99, mut fleet_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let sample = wrk(&load(file.listen), dir);
        file_rps.push(sample.rps);
        file_p99.push(sample.p99_us);
        let sample = wrk(&load(a.listen), dir);
        fleet_rps.push(sample.rps);
        fleet_p99.push(sample.p99_us);
    }
    let (file_rps, fleet_rps) = (median(&mut file_rps), median(&mut fleet_rps));
    println!(
        "request path (wrk, 16 connections, 3 x {} s each, medians): file {file_rps:.0} rps p99 {:.0} us; etcd {fleet_rps:.0} rps p99 {:.0} us; rps ratio {:.2}",
        args.seconds, median(&mut file_p99), median(&mut fleet_p99), fleet_rps / file_rps
    );
    drop(file);

    // Write to A, time until B serves it.
    let (b_listen, b_admin) = (free_port(), free_port());
    let b_config = config(
        &dir.join("b"),
        b_listen,
        b_admin,
        &backends,
        Some(&fleet("edge-b")),
    );
    let b = start(&b_config, b_listen, b_admin, &probe);
    let (mut acked, mut applied) = (Vec::new(), Vec::new());
    for k in 0..args.moves {
        let i = spread(k + 1, args.tenants);
        let tenant = tenant_id(i);
        let to = if home_region(i) == "us" { "eu" } else { "us" };
        let body = format!("{{\"region\":\"{to}\"}}");
        let request = format!(
            "PUT /v1/tenants/{tenant} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {OPERATOR}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        let (status, answer) = http(a.admin, &request);
        assert_eq!(status, 200, "{answer}");
        acked.push(sent.elapsed().as_secs_f64() * 1e3);
        while served_region(b.listen, &tenant).as_deref() != Some(to) {
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "router B never served the move of {tenant}"
            );
        }
        applied.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{} moves with 2 routers: acknowledged by A (in etcd, audited, served by A) p50 {:.2} ms p99 {:.2} ms; served by B p50 {:.2} ms p99 {:.2} ms",
        args.moves,
        percentile(&mut acked, 0.5),
        percentile(&mut acked, 0.99),
        percentile(&mut applied, 0.5),
        percentile(&mut applied, 0.99)
    );
    drop((a, b));
}
