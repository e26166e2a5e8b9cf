//! `tls-bench`: the router terminating TLS 1.3 next to nginx terminating TLS 1.3 with the same
//! certificate in front of the same backend, measured with h2load in one run, alternating
//! targets over several rounds.
//!
//! Scenarios, each as requests per second (median of the rounds):
//! - `handshakes`: `connections` new TLS connections at once, one HTTP/1.1 request each (the
//!   handshake rate);
//! - `h1`: HTTP/1.1 over TLS, keep-alive, `connections` connections;
//! - `h2`: HTTP/2 over TLS, `connections` connections, 10 streams each;
//! - `h1-plain`: `h1` without TLS, the same proxy on its plain HTTP listener: what TLS costs
//!   each of them.
//!
//! The router and nginx run on core 0 (one worker each), h2load and the backends on core 1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Parser;
use load_tests::load::h2load_rps;
use load_tests::{free_port, median, pinned, run_router, wait_for, Running};
use residency_config::testing::Ca;
use residency_testkit::{write_config, SiteBackend, DEMO_SITES, DEMO_TENANTS};

#[derive(Parser)]
#[command(about = "TLS 1.3 handshake and request rates: the router next to nginx, in one run")]
struct Args {
    /// Requests per h2load run in the `h1` and `h2` scenarios.
    #[arg(long, default_value_t = 100_000)]
    requests: u32,
    /// Concurrent connections (and new handshakes per `handshakes` run).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Handshakes per `handshakes` run.
    #[arg(long, default_value_t = 2000)]
    handshakes: u32,
    /// Rounds; every target runs every scenario once per round, in alternation.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value = "target/release/residency-router")]
    router: PathBuf,
    /// Where the markdown table is written.
    #[arg(long, default_value = "load-tests/results")]
    results: PathBuf,
}

/// A target: its process, TLS address and plain HTTP address.
type Target = (Running, SocketAddr, SocketAddr);

fn start_router(args: &Args, dir: &Path, backends: &[Vec<SocketAddr>]) -> Target {
    let (http, https) = (free_port(), free_port());
    let tables =
        "[tls]\n[[tls.certificates]]\nname = \"api\"\ncert = \"api.pem\"\nkey = \"api.key\"\n\
                  [server]\nthreads = 1\n";
    let config = write_config(
        dir,
        http,
        &[("https", https)],
        backends,
        DEMO_TENANTS,
        &format!("\n{tables}"),
        &[""; 4],
    )
    .unwrap();
    let child = run_router(
        pinned("0", &args.router),
        &config,
        &dir.join("router.log"),
        https,
    );
    (Running(child), https, http)
}

/// nginx with the same certificate and TLS 1.3 only. `keepalive_requests` is lifted because
/// nginx ends a connection after 1000 requests by default and h2load does not reconnect h2
/// connections: the rest would count as failed (the router sets no such limit). It proxies to
/// the sites of acme's region, round robin, as the router does.
fn start_nginx(dir: &Path, pool: &[SocketAddr]) -> Target {
    let (http, https) = (free_port(), free_port());
    let servers: String = pool.iter().map(|a| format!("server {a}; ")).collect();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 10000000;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           upstream backend {{ {servers}keepalive 64; }}\n\
           server {{\n    listen {https} ssl http2;\n    listen {http};\n    ssl_protocols TLSv1.3;\n\
             ssl_certificate {dir}/api.pem;\n    ssl_certificate_key {dir}/api.key;\n\
             location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = pinned("0", Path::new("nginx"))
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (load-tests/tls-bench.sh installs it)");
    wait_for(https, "nginx");
    (Running(child), https, http)
}

#[derive(Clone, Copy, Default)]
struct Sample {
    rps: f64,
    mean_ms: f64,
    /// Requests without a 2xx answer: failed, errored, timed out, or another status (a
    /// router answering 421 or 400 fast must not look like a fast router).
    not_2xx: u64,
}

/// Runs h2load and reads `finished in ..., N req/s`, the mean request time and the requests
/// not answered 2xx.
fn h2load(target: SocketAddr, scenario: &str, args: &Args) -> Sample {
    let mut command = pinned("1", Path::new("h2load"));
    command.args(["-t", "1", "-H", "x-tenant-id: acme"]);
    match scenario {
        "handshakes" => command.args([
            "--h1",
            "-n",
            &args.handshakes.to_string(),
            "-c",
            &args.handshakes.to_string(),
        ]),
        "h1" | "h1-plain" => command.args([
            "--h1",
            "-n",
            &args.requests.to_string(),
            "-c",
            &args.connections.to_string(),
        ]),
        _ => command.args([
            "-n",
            &args.requests.to_string(),
            "-c",
            &args.connections.to_string(),
            "-m",
            "10",
        ]),
    };
    let scheme = if scenario == "h1-plain" {
        "http"
    } else {
        "https"
    };
    let output = command
        .arg(format!(
            "{scheme}://acme.app.example.com:{}/",
            target.port()
        ))
        .arg("--connect-to")
        .arg(target.to_string())
        .output()
        .expect("h2load is installed (load-tests/tls-bench.sh installs nghttp2-client)");
    let text = String::from_utf8_lossy(&output.stdout);
    let number_after = |needle: &str| -> Option<f64> {
        let rest = &text[text.find(needle)? + needle.len()..];
        let token: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        token.parse().ok()
    };
    let rps = h2load_rps(&text);
    // `time for request:  min  max  mean  sd  +/- sd`, in us or ms.
    let mean_ms = text
        .lines()
        .find(|l| l.starts_with("time for request:"))
        .and_then(|l| l.split_whitespace().nth(5))
        .map(to_ms)
        .unwrap_or(f64::NAN);
    // `requests: N total, ...` and `status codes: N 2xx, ...`.
    let total = number_after("requests: ").expect("h2load printed `requests:`");
    let ok = number_after("status codes: ").expect("h2load printed `status codes:`");
    Sample {
        rps,
        mean_ms,
        not_2xx: (total - ok) as u64,
    }
}

fn to_ms(value: &str) -> f64 {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        _ => number,
    }
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("bench CA");
    ca.issue(&["*.app.example.com", "us.api.example.com"])
        .write(dir.path(), "api");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // One backend per site, so the router's health checks find every site up from the start.
    let sites: Vec<SiteBackend> = DEMO_SITES
        .iter()
        .map(|&(region, site, _, _)| runtime.block_on(SiteBackend::start(site, region)).unwrap())
        .collect();
    let backends: Vec<Vec<SocketAddr>> = sites.iter().map(|b| vec![b.addr()]).collect();
    let us_pool: Vec<SocketAddr> = DEMO_SITES
        .iter()
        .zip(&sites)
        .filter(|((region, ..), _)| *region == "us")
        .map(|(_, b)| b.addr())
        .collect();
    let (_router, router_tls, router_http) = start_router(&args, dir.path(), &backends);
    let (_nginx, nginx_tls, nginx_http) = start_nginx(dir.path(), &us_pool);

    let scenarios = ["handshakes", "h1", "h2", "h1-plain"];
    let targets = [
        ("router", router_tls, router_http),
        ("nginx", nginx_tls, nginx_http),
    ];
    let mut samples = vec![Vec::new(); scenarios.len() * targets.len()];
    for round in 1..=args.rounds {
        for (s, scenario) in scenarios.iter().enumerate() {
            for (t, (name, tls, http)) in targets.iter().enumerate() {
                let addr = if *scenario == "h1-plain" { http } else { tls };
                let sample = h2load(*addr, scenario, &args);
                eprintln!(
                    "round {round} {scenario:10} {name:6} {:>10.0} req/s  mean {:.2} ms  not 2xx {}",
                    sample.rps, sample.mean_ms, sample.not_2xx
                );
                samples[s * targets.len() + t].push(sample);
            }
        }
    }

    let mut table = format!(
        "TLS 1.3, same certificate (ECDSA P-256), one worker each on core 0, h2load on core 1; \
         median of {} rounds.\n\n\
         | scenario | router req/s | nginx req/s | router / nginx | router mean ms | nginx mean ms | not 2xx (router, nginx) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        args.rounds
    );
    for (s, scenario) in scenarios.iter().enumerate() {
        let stats = |t: usize| {
            let runs = &samples[s * targets.len() + t];
            let rps = median(&mut runs.iter().map(|x| x.rps).collect::<Vec<_>>());
            let mean = median(&mut runs.iter().map(|x| x.mean_ms).collect::<Vec<_>>());
            let not_2xx: u64 = runs.iter().map(|x| x.not_2xx).sum();
            (rps, mean, not_2xx)
        };
        let (router, nginx) = (stats(0), stats(1));
        table.push_str(&format!(
            "| {scenario} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {}, {} |\n",
            router.0,
            nginx.0,
            router.0 / nginx.0,
            router.1,
            nginx.1,
            router.2,
            nginx.2
        ));
    }
    println!("{table}");
    std::fs::create_dir_all(&args.results).unwrap();
    let out = args.results.join("tls.md");
    std::fs::write(&out, &table).unwrap();
    eprintln!("written to {}", out.display());
}
