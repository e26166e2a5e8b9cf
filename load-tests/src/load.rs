//! The load generators: wrk for HTTP/1.1, h2load for h2 (h2c with prior knowledge). Each run
//! is bounded by its duration and reports throughput and latency percentiles.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// One load run against one target.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Responses with another status than the scenario expects, plus socket errors.
    pub unexpected: u64,
}

/// What a run sends and what it expects back.
pub struct Load<'a> {
    pub target: SocketAddr,
    pub path: &'a str,
    pub headers: &'a [&'a str],
    pub connections: u32,
    pub seconds: u32,
    /// The status every answer should have.
    pub expected: u16,
}

/// wrk prints these from its `done` hook: exact percentiles from its histogram, in µs.
const WRK_REPORT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f %.1f\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// wrk, one thread, on the caller's core.
pub fn wrk(load: &Load, scratch: &Path) -> Sample {
    let script = scratch.join("report.lua");
    if !script.exists() {
        std::fs::write(&script, WRK_REPORT).unwrap();
    }
    let mut command = Command::new("wrk");
    command
        .args(["-t1", "-s"])
        .arg(&script)
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds));
    for header in load.headers {
        command.args(["-H", header]);
    }
    let output = command
        .arg(format!("http://{}{}", load.target, load.path))
        .output()
        .expect("wrk is installed (load-tests/run.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"));
    let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    let (requests, micros, status_errors, socket_errors) = (v[0], v[1], v[2], v[3]);
    // wrk counts statuses of 400 and above; which one it was, one request afterwards tells.
    let wrong_status = if load.expected >= 400 {
        if status_of(load.target, load.path, load.headers) == load.expected {
            requests - status_errors
        } else {
            requests
        }
    } else {
        status_errors
    };
    Sample {
        rps: requests / (micros / 1e6),
        p50_us: v[4],
        p99_us: v[5],
        p999_us: v[6],
        unexpected: (wrong_status + socket_errors) as u64,
    }
}

/// h2load, one thread, `streams` concurrent streams per connection. Percentiles come from its
/// per-request log (`start`, `status`, `duration in µs` per line).
pub fn h2load(load: &Load, streams: u32, scratch: &Path) -> Sample {
    let log = scratch.join("h2load.log");
    // h2load appends to its log: each run starts from an empty one.
    let _ = std::fs::remove_file(&log);
    let mut command = Command::new("h2load");
    command
        .args(["-t", "1"])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", &streams.to_string()])
        .args(["-D", &load.seconds.to_string()])
        .arg("--log-file")
        .arg(&log);
    for header in load.headers {
        command.args(["-H", header]);
    }
    let output = command
        .arg(format!("http://{}{}", load.target, load.path))
        .output()
        .expect("h2load is installed (load-tests/run.sh installs nghttp2-client)");
    let text = String::from_utf8_lossy(&output.stdout);
    let rps = h2load_rps(&text);
    let records = std::fs::read_to_string(&log).unwrap_or_default();
    let mut durations = Vec::new();
    let mut wrong = 0;
    for line in records.lines() {
        let mut fields = line.split('\t');
        let (Some(_), Some(status), Some(micros)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if status.parse::<u16>().ok() != Some(load.expected) {
            wrong += 1;
        }
        durations.push(micros.parse::<f64>().unwrap_or(f64::NAN));
    }
    let issued = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    durations.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        durations
            .get(((durations.len() as f64 * q) as usize).min(durations.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Sample {
        rps,
        p50_us: at(0.50),
        p99_us: at(0.99),
        p999_us: at(0.999),
        // Requests issued but never answered count as errors too.
        unexpected: wrong + issued.saturating_sub(durations.len() as u64),
    }
}

/// The requests/s of h2load's `finished in 5.00s, 41234.20 req/s, ...` line.
pub fn h2load_rps(output: &str) -> f64 {
    output
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|p| p.trim_end_matches(" req/s").parse().ok())
        .unwrap_or_else(|| panic!("unexpected h2load output:\n{output}"))
}

/// The status of one HTTP/1.1 request: the harness checks every target gives each scenario's
/// expected answer before measuring it.
pub fn status_of(target: SocketAddr, path: &str, headers: &[&str]) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(target).expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    // As wrk does: a `Host` header of the caller's (exactly so spelled) replaces its own.
    if !headers.iter().any(|h| h.starts_with("Host:")) {
        request.push_str(&format!("Host: {target}\r\n"));
    }
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The sum of every series of the counter `name` on a Prometheus endpoint.
pub fn scrape_counter(metrics: SocketAddr, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics).expect("connect to /metrics");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Sends exactly `requests` keep-alive HTTP/1.1 requests over 16 connections with h2load, and
/// returns how many were answered 2xx.
pub fn h2load_exactly(target: SocketAddr, path: &str, headers: &[&str], requests: u64) -> u64 {
    let mut command = Command::new("h2load");
    command.args(["--h1", "-t", "1", "-c", "16", "-n", &requests.to_string()]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command
        .arg(format!("http://{target}{path}"))
        .output()
        .expect("h2load is installed (load-tests/run.sh installs nghttp2-client)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("status codes: "))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("unexpected h2load output:\n{text}"))
}
