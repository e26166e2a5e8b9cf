//! `load-harness`: measures the router against the same backend reached directly, in one run,
//! alternating targets over several rounds so drift on the machine affects all of them alike.
//!
//! Scenarios:
//! - `direct`: wrk straight at a site backend (the ceiling);
//! - `router`: the release router, residency logic on, GeoIP off;
//! - `router-geoip`: the same with a City database and a trusted `x-forwarded-for`, so every
//!   request does a GeoIP lookup and a distance ranking;
//! - `router-reloading`: the `router` target while another thread reloads it every 50 ms
//!   through its control socket, alternating two registries in which a tenant changes region;
//! - `router-metrics`: the `router` target with `listen.metrics` set, so every request records
//!   its metrics (the `router` target records none).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use clap::Parser;
use load_tests::{free_port, median, run_router};
use residency_router::demo::{write_config, SiteBackend, DEMO_SITES, DEMO_TENANTS};

#[derive(Parser)]
#[command(about = "Router throughput next to the backend alone, and GeoIP on vs off, in one run")]
struct Args {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Rounds; every target runs once per round, in alternation.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// The router binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/residency-router")]
    router: PathBuf,
    /// Where wrk's raw output goes.
    #[arg(long, default_value = "load-tests/results")]
    results: PathBuf,
}

struct Router {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo tenants plus `mover`, homed in `mover_region`.
fn tenants(mover_region: &str) -> String {
    DEMO_TENANTS.replacen(
        "{ \"tenants\": [",
        &format!("{{ \"tenants\": [\n  {{ \"id\": \"mover\", \"region\": \"{mover_region}\" }},"),
        1,
    )
}

fn start_router(
    binary: &Path,
    dir: &Path,
    backends: &[Vec<SocketAddr>],
    tables: &str,
    metrics: bool,
) -> Router {
    let addr = free_port();
    let metrics = metrics.then(free_port);
    let proxy = format!("trusted_proxies = [\"127.0.0.1/32\"]\n\n{tables}");
    let listeners: Vec<(&str, SocketAddr)> = metrics.iter().map(|&m| ("metrics", m)).collect();
    let config = write_config(
        dir,
        addr,
        &listeners,
        backends,
        &tenants("us"),
        &proxy,
        &[""; 4],
    )
    .unwrap();
    let log = dir.join(format!("router-{}.log", addr.port()));
    let child = run_router(Command::new(binary), &config, &log, addr);
    Router { child, addr }
}

#[derive(Default, Clone)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(args: &Args, name: &str, url: &str, headers: &[&str]) -> Sample {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "--latency"])
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration));
    for header in headers {
        cmd.args(["-H", header]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk is installed (load-tests/run.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(args.results.join(format!("{name}.txt")), &text).unwrap();
    let field = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    let millis = |v: Option<String>| {
        let v = v.unwrap_or_default();
        if let Some(us) = v.strip_suffix("us") {
            us.parse::<f64>().unwrap_or(0.0) / 1000.0
        } else if let Some(ms) = v.strip_suffix("ms") {
            ms.parse().unwrap_or(0.0)
        } else if let Some(s) = v.strip_suffix('s') {
            s.parse::<f64>().unwrap_or(0.0) * 1000.0
        } else {
            0.0
        }
    };
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .flat_map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
        })
        .sum();
    Sample {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: millis(field("50%")),
        p99_ms: millis(field("99%")),
        errors,
    }
}

fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.results).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let backends: Vec<SiteBackend> = runtime.block_on(async {
        let mut started = Vec::new();
        for (region, site, _, _) in DEMO_SITES {
            started.push(SiteBackend::start(site, region).await.unwrap());
        }
        started
    });
    let addrs: Vec<Vec<SocketAddr>> = backends.iter().map(|b| vec![b.addr()]).collect();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("geo.mmdb"),
        geoip::testing::city_database(&geoip::testing::WORLD),
    )
    .unwrap();
    let plain = start_router(
        &args.router,
        dir.path(),
        &addrs,
        "[server]\ncontrol_socket = \"control.sock\"\n[reload]\nwatch = false\n",
        false,
    );
    let metrics_dir = tempfile::tempdir().unwrap();
    let with_metrics = start_router(&args.router, metrics_dir.path(), &addrs, "", true);
    let geo_dir = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("geo.mmdb"), geo_dir.path().join("geo.mmdb")).unwrap();
    let with_geoip = start_router(
        &args.router,
        geo_dir.path(),
        &addrs,
        "[geoip]\ndatabase = \"geo.mmdb\"",
        false,
    );

    // New York: a located client of the us tenant; ranks virginia and oregon by distance.
    let headers = ["x-tenant-id: acme", "x-forwarded-for: 3.0.9.9"];
    let targets = [
        ("direct", format!("http://{}/hello", backends[0].addr())),
        ("router", format!("http://{}/hello", plain.addr)),
        ("router-geoip", format!("http://{}/hello", with_geoip.addr)),
        ("router-reloading", format!("http://{}/hello", plain.addr)),
        (
            "router-metrics",
            format!("http://{}/hello", with_metrics.addr),
        ),
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); targets.len()];
    for round in 0..args.rounds {
        for (i, (name, url)) in targets.iter().enumerate() {
            let storm = (*name == "router-reloading").then(|| reload_storm(dir.path()));
            let sample = wrk(&args, &format!("{name}-{round}"), url, &headers);
            if let Some((stop, thread)) = storm {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let reloads = thread.join().expect("reload thread");
                eprintln!("round {round}: {reloads} reloads during the run");
            }
            eprintln!("round {round} {name}: {:.0} req/s", sample.rps);
            samples[i].push(sample);
        }
    }

    let summary: Vec<Sample> = samples
        .iter()
        .map(|runs| Sample {
            rps: median(&mut runs.iter().map(|s| s.rps).collect::<Vec<_>>()),
            p50_ms: median(&mut runs.iter().map(|s| s.p50_ms).collect::<Vec<_>>()),
            p99_ms: median(&mut runs.iter().map(|s| s.p99_ms).collect::<Vec<_>>()),
            errors: runs.iter().map(|s| s.errors).sum(),
        })
        .collect();
    println!(
        "wrk -t1 -c{} -d{}s, {} rounds, medians; every process shares the machine's cores\n",
        args.connections, args.duration, args.rounds
    );
    println!("| target | requests/s | p50 | p99 | errors | vs direct |");
    println!("|---|---|---|---|---|---|");
    for ((name, _), s) in targets.iter().zip(&summary) {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2} |",
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.errors,
            s.rps / summary[0].rps
        );
    }
    println!("\nGeoIP on / off: {:.3}", summary[2].rps / summary[1].rps);
    println!("Metrics on / off: {:.3}", summary[4].rps / summary[1].rps);
    println!(
        "Reloading every 50 ms / steady: throughput {:.3}, p99 {:.2} ms vs {:.2} ms",
        summary[3].rps / summary[1].rps,
        summary[3].p99_ms,
        summary[1].p99_ms
    );
}

/// Reloads the router in `dir` every 50 ms, alternating the home region of `mover`, until
/// stopped. Returns the number of applied reloads.
fn reload_storm(
    dir: &Path,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<u32>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (dir, flag) = (dir.to_owned(), std::sync::Arc::clone(&stop));
    let thread = std::thread::spawn(move || {
        let mut applied = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let region = if applied % 2 == 0 { "eu" } else { "us" };
            let staged = dir.join("tenants.json.new");
            std::fs::write(&staged, tenants(region)).unwrap();
            std::fs::rename(&staged, dir.join("tenants.json")).unwrap();
            let answer = residency_router::reload::request_reload(&dir.join("control.sock"), false)
                .expect("the control socket answers");
            assert!(answer.ok, "{:?}", answer.error);
            applied += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        applied
    });
    (stop, thread)
}
