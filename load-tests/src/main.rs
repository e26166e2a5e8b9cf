//! `load-harness`: the router side by side with nginx and HAProxy doing the same job, a bare
//! Pingora forwarder as the framework's ceiling and a bare hyper forwarder as what a lean Rust
//! proxy does, measured in one run.
//!
//! Every proxy runs on core 0 with one worker; the load generator (wrk, or h2load for h2) and
//! the site backends run on core 1 (`load-tests/run.sh` pins this process there). With
//! `--workers 2` every proxy gets two workers and both cores, which it then shares with the
//! load generator and the backends. The router
//! has its full residency logic, metrics and access log on; nginx and HAProxy map the tenant
//! header to a region and the region to a pool of site backends, reject unknown tenants,
//! block a region host of another region, add the same headers and write an access log, all
//! generated from the same tenant list. Targets alternate within each scenario, and the
//! scenarios repeat for several rounds, so drift on the machine affects all of them alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use load_tests::backend;
use load_tests::load::{h2load, h2load_exactly, scrape_counter, status_of, wrk, Load, Sample};
use load_tests::peers::{haproxy_config, nginx_config, Site};
use load_tests::report::{chart, markdown, ratio, Row};
use load_tests::scale::registry_json;
use load_tests::{free_port, pinned, run_router, wait_for, Running};
use residency_testkit::{write_config, DEMO_SITES};

#[derive(Parser)]
#[command(about = "The router next to nginx, HAProxy and a bare Pingora forwarder, in one run")]
struct Args {
    /// Seconds per load run.
    #[arg(long, default_value_t = 4)]
    duration: u32,
    /// Rounds; within a round every scenario runs once against every target.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Tenants in the large registry.
    #[arg(long, default_value_t = 1_000_000)]
    large: usize,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
    #[arg(long, default_value = "target/release/residency-router")]
    router: PathBuf,
    /// Another build of the router (an earlier commit's), measured in every scenario as
    /// `baseline router` with the same configuration: before/after in one run.
    #[arg(long)]
    baseline: Option<PathBuf>,
    #[arg(long, default_value = "target/release/bare-pingora")]
    bare_pingora: PathBuf,
    #[arg(long, default_value = "target/release/bare-hyper")]
    bare_hyper: PathBuf,
    /// Worker threads (processes for nginx) of every proxy. Above 1 the proxies are not pinned
    /// to core 0, and share the machine with the load generator.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Another proxy to measure on the routed HTTP/1.1 scenarios with small responses, as
    /// `NAME=COMMAND` (repeatable): the harness runs `sh -c COMMAND` beside the other proxies,
    /// with `{listen}` replaced by the address it must serve and `{backend}` by the one site
    /// backend it forwards to.
    #[arg(long)]
    external: Vec<String>,
    /// `NAME=PATH`: the request path the external proxy NAME routes by, when its tenant is in
    /// the path (default `/`).
    #[arg(long)]
    external_path: Vec<String>,
    /// Instead of the load rounds: run the router and the forwarders under callgrind and count
    /// the instructions each executes per request over this many keep-alive requests
    /// (`h2load --h1`, 16 connections; start-up excluded). Exact and repeatable, unlike
    /// timings on a shared VM.
    #[arg(long)]
    callgrind: Option<u64>,
    /// Results go to a new folder under this one.
    #[arg(long, default_value = "load-tests/results")]
    results: PathBuf,
}

/// With one worker the proxies run on this core, everything else on the other.
const PROXY_CORE: &str = "0";
/// With more, the proxies may run on every core.
const ALL_CORES: &str = "0-1";
/// The counter of new backend connections the router keeps (and reports per run).
const OPENED: &str = "residency_upstream_connections_opened_total";
const SMALL_REGISTRY: usize = 1_000;
/// A tenant homed in `us` (even ids are) that does not replicate (ids divisible by 10 do), in
/// the middle of the small registry.
const TENANT: &str = "x-tenant-id: tenant-0000502";

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Http1,
    H2,
}

struct Scenario {
    name: &'static str,
    large_registry: bool,
    headers: &'static [&'static str],
    path: &'static str,
    connections: u32,
    protocol: Protocol,
    expected_status: u16,
}

/// The base scenario; the others differ from it in one respect.
const ROUTED: Scenario = Scenario {
    name: "1k tenants",
    large_registry: false,
    headers: &[TENANT],
    path: "/",
    connections: 64,
    protocol: Protocol::Http1,
    expected_status: 200,
};

const SCENARIOS: &[Scenario] = &[
    ROUTED,
    Scenario {
        name: "1M tenants",
        large_registry: true,
        ..ROUTED
    },
    Scenario {
        name: "unknown tenant, 404",
        headers: &["x-tenant-id: nobody"],
        expected_status: 404,
        ..ROUTED
    },
    Scenario {
        name: "cross-region, 421",
        headers: &[TENANT, "Host: eu.api.example.com"],
        expected_status: 421,
        ..ROUTED
    },
    Scenario {
        name: "512 connections",
        connections: 512,
        ..ROUTED
    },
    Scenario {
        name: "64 KiB responses",
        path: backend::BIG_PATH,
        ..ROUTED
    },
    Scenario {
        name: "h2c, 10 streams",
        protocol: Protocol::H2,
        ..ROUTED
    },
];

/// One target and its processes. `None` where it does not apply.
struct Target {
    name: String,
    /// HTTP/1.1, small registry.
    http: SocketAddr,
    /// HTTP/2 with prior knowledge, small registry.
    h2c: Option<SocketAddr>,
    /// HTTP/1.1, large registry.
    large: Option<SocketAddr>,
    /// The bare forwarders and the backend know no tenants: routed scenarios only.
    knows_tenants: bool,
    /// Requests carry the tenant in this path instead of the scenario's: HTTP/1.1 with small
    /// responses only.
    path: Option<String>,
    /// Where the router counts its new upstream connections: (HTTP/1.1 and h2c, large).
    metrics: Option<(SocketAddr, SocketAddr)>,
    _processes: Vec<Running>,
}

impl Target {
    fn path<'a>(&'a self, scenario: &'a Scenario) -> &'a str {
        self.path.as_deref().unwrap_or(scenario.path)
    }

    /// New upstream connections so far, where the target counts them.
    fn opened(&self, scenario: &Scenario) -> Option<f64> {
        let (small, large) = self.metrics?;
        let metrics = if scenario.large_registry {
            large
        } else {
            small
        };
        Some(scrape_counter(metrics, OPENED))
    }

    fn address(&self, scenario: &Scenario) -> Option<SocketAddr> {
        if !self.knows_tenants && scenario.expected_status != 200 {
            return None;
        }
        // External proxies: HTTP/1.1 with small responses (Synapse answers h2c prior
        // knowledge, but not with its routes).
        if self.path.is_some()
            && (scenario.path != ROUTED.path || scenario.protocol == Protocol::H2)
        {
            return None;
        }
        match (scenario.protocol, scenario.large_registry) {
            (Protocol::H2, _) => self.h2c,
            (Protocol::Http1, true) => self.large,
            (Protocol::Http1, false) => Some(self.http),
        }
    }
}

/// Where proxies run: core 0 alone with one worker each, every core with more.
fn proxy_cores(args: &Args) -> &'static str {
    if args.workers == 1 {
        PROXY_CORE
    } else {
        ALL_CORES
    }
}

/// How a Rust proxy of this project is started: pinned, or under callgrind.
fn launch(args: &Args, program: &Path) -> Command {
    if args.callgrind.is_none() {
        return pinned(proxy_cores(args), program);
    }
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--callgrind-out-file=callgrind.out.%p"])
        .current_dir(std::env::temp_dir())
        .arg(program.canonicalize().expect("the binary exists"));
    command
}

/// Instructions per request of the process `pid` (started by [`launch`] under callgrind):
/// counters zeroed, `requests` routed requests sent to `target`, counters dumped.
fn instructions_per_request(pid: u32, target: &Target, requests: u64) -> f64 {
    let control = |flag: &str| {
        let status = Command::new("callgrind_control")
            .args([flag, &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("callgrind_control (valgrind) is installed");
        assert!(status.success(), "callgrind_control {flag} {pid}");
    };
    control("--zero");
    let answered = h2load_exactly(target.http, target.path(&ROUTED), ROUTED.headers, requests);
    assert_eq!(
        answered, requests,
        "{} answered every request 2xx",
        target.name
    );
    control("--dump");
    // The newest dump of this process holds the counts since the zeroing.
    let prefix = format!("callgrind.out.{pid}.");
    let dump = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("callgrind wrote a dump");
    let text = std::fs::read_to_string(dump.path()).unwrap();
    let total: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a summary line");
    total / requests as f64
}

/// The router; returns its proxy and metrics addresses.
fn start_router(
    args: &Args,
    binary: &Path,
    dir: &Path,
    sites: &[Site],
    tenants: usize,
) -> (SocketAddr, SocketAddr, Running) {
    let addr = free_port();
    let metrics = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let backends: Vec<Vec<SocketAddr>> = sites.iter().map(|s| vec![s.addr]).collect();
    let extra = format!(
        "\n[server]\nthreads = {}\n\n[access_log]\npath = \"access.log\"\n",
        args.workers
    );
    let config = write_config(
        dir,
        addr,
        &[("metrics", metrics)],
        &backends,
        &registry_json(tenants),
        &extra,
        &[""; 4],
    )
    .unwrap();
    // The demo exposes its decisions to clients; a production router (and this comparison)
    // does not. h2c serves the h2 scenario.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("expose_decision = true\n") && text.starts_with("[listen]\n"),
        "the demo config changed shape: update the harness's edits"
    );
    let text = text
        .replace("expose_decision = true\n", "expose_decision = false\n")
        .replacen("[listen]\n", "[listen]\nh2c = true\n", 1);
    std::fs::write(&config, text).unwrap();
    let child = run_router(launch(args, binary), &config, &dir.join("router.log"), addr);
    (addr, metrics, Running(child))
}

/// nginx or HAProxy, started from its generated config; returns the HTTP/1.1 and h2c
/// addresses.
fn start_peer(
    args: &Args,
    name: &str,
    dir: &Path,
    sites: &[Site],
    tenants: usize,
) -> (SocketAddr, SocketAddr, Running) {
    std::fs::create_dir_all(dir).unwrap();
    let (http, h2c) = (free_port(), free_port());
    let mut command = if name == "nginx" {
        let conf = nginx_config(dir, tenants, sites, http, h2c, args.workers).unwrap();
        let mut command = pinned(proxy_cores(args), Path::new("nginx"));
        command.arg("-c").arg(conf).arg("-p").arg(dir);
        command
    } else {
        let conf = haproxy_config(dir, tenants, sites, http, h2c, args.workers).unwrap();
        let mut command = pinned(proxy_cores(args), Path::new("haproxy"));
        command.arg("-f").arg(conf);
        command
    };
    let log = std::fs::File::create(dir.join("access.log")).unwrap();
    let errors = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = command
        .stdout(log)
        .stderr(errors)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} (load-tests/run.sh installs it): {e}"));
    let mut running = Running(child);
    std::thread::sleep(std::time::Duration::from_millis(200));
    if let Ok(Some(status)) = running.0.try_wait() {
        let errors = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        panic!("{name} exited ({status}):\n{errors}");
    }
    wait_for(http, name);
    wait_for(h2c, name);
    (http, h2c, running)
}

fn main() {
    let args = Args::parse();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = args.results.join(format!("run-{stamp}"));
    std::fs::create_dir_all(&out).unwrap();
    let work = tempfile::tempdir().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sites: Vec<Site> = DEMO_SITES
        .iter()
        .map(|&(region, name, _, _)| Site {
            name,
            region,
            addr: runtime.block_on(backend::start(name, region)).unwrap(),
        })
        .collect();

    eprintln!(
        "starting the router, nginx and HAProxy with {SMALL_REGISTRY} and {} tenants, and the bare forwarders ({} worker(s) each)",
        args.large, args.workers
    );
    let mut targets = Vec::new();
    let routers = std::iter::once(("router", &args.router))
        .chain(args.baseline.iter().map(|b| ("baseline router", b)));
    for (name, binary) in routers {
        let dir = |size: &str| {
            work.path()
                .join(format!("{}-{size}", name.replace(' ', "-")))
        };
        let (small, small_metrics, small_router) =
            start_router(&args, binary, &dir("1k"), &sites, SMALL_REGISTRY);
        let (large, large_metrics, large_router) =
            start_router(&args, binary, &dir("large"), &sites, args.large);
        targets.push(Target {
            name: name.into(),
            http: small,
            h2c: Some(small),
            large: Some(large),
            knows_tenants: true,
            path: None,
            // An earlier build may not count its upstream connections.
            metrics: (name == "router").then_some((small_metrics, large_metrics)),
            _processes: vec![small_router, large_router],
        });
    }
    for name in ["nginx", "haproxy"] {
        let (http, h2c, small) = start_peer(
            &args,
            name,
            &work.path().join(format!("{name}-1k")),
            &sites,
            SMALL_REGISTRY,
        );
        let (large, _, large_running) = start_peer(
            &args,
            name,
            &work.path().join(format!("{name}-large")),
            &sites,
            args.large,
        );
        targets.push(Target {
            name: name.into(),
            http,
            h2c: Some(h2c),
            large: Some(large),
            knows_tenants: true,
            path: None,
            metrics: None,
            _processes: vec![small, large_running],
        });
    }
    let backend = sites[0].addr.to_string();
    for (name, binary) in [
        ("bare pingora", &args.bare_pingora),
        ("bare hyper", &args.bare_hyper),
    ] {
        let listen = free_port();
        let child = launch(&args, binary)
            .args(["--listen", &listen.to_string(), "--backend", &backend])
            .args(["--threads", &args.workers.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (load-tests/run.sh builds it): {e}",
                    binary.display()
                )
            });
        let running = Running(child);
        wait_for(listen, name);
        targets.push(Target {
            name: name.into(),
            http: listen,
            h2c: Some(listen),
            large: None,
            knows_tenants: false,
            path: None,
            metrics: None,
            _processes: vec![running],
        });
    }
    for (i, external) in args.external.iter().enumerate() {
        let (name, command) = external
            .split_once('=')
            .expect("--external is NAME=COMMAND");
        let path = args
            .external_path
            .iter()
            .filter_map(|p| p.split_once('='))
            .find(|(of, _)| *of == name)
            .map_or("/", |(_, path)| path);
        let listen = free_port();
        let command = command
            .replace("{listen}", &listen.to_string())
            .replace("{backend}", &backend);
        let dir = work.path().join(format!("external-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("output.log")).unwrap();
        let child = pinned(proxy_cores(&args), Path::new("sh"))
            .args(["-c", &format!("exec {command}")])
            .current_dir(&dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let running = Running(child);
        wait_for(listen, name);
        targets.push(Target {
            name: name.to_owned(),
            http: listen,
            h2c: Some(listen),
            large: None,
            knows_tenants: false,
            path: Some(path.to_owned()),
            metrics: None,
            _processes: vec![running],
        });
    }
    targets.push(Target {
        name: "backend alone".into(),
        http: sites[0].addr,
        h2c: None,
        large: None,
        knows_tenants: false,
        path: None,
        metrics: None,
        _processes: Vec::new(),
    });

    if let Some(requests) = args.callgrind {
        let mut report = format!(
            "Instructions per routed request (callgrind, {requests} keep-alive HTTP/1.1 requests \
             over 16 connections, start-up excluded):\n\n| target | instructions per request |\n|---|---:|\n"
        );
        for target in targets
            .iter()
            .filter(|t| t.name.ends_with("router") || t.name.starts_with("bare"))
        {
            let pid = target._processes[0].0.id();
            // One request first: connections to backends and lazy set-up are not counted.
            h2load_exactly(target.http, target.path(&ROUTED), ROUTED.headers, 100);
            let per_request = instructions_per_request(pid, target, requests);
            eprintln!(
                "{:14} {per_request:>9.0} instructions per request",
                target.name
            );
            report.push_str(&format!("| {} | {per_request:.0} |\n", target.name));
        }
        println!("{report}");
        std::fs::write(out.join("instructions.md"), &report).unwrap();
        return;
    }

    let scenarios: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| {
            args.only
                .as_ref()
                .is_none_or(|only| s.name.contains(only.as_str()))
        })
        .collect();
    // (scenario, target, address) in measuring order, each checked for its expected answer.
    let mut plan = Vec::new();
    for scenario in &scenarios {
        for target in &targets {
            let Some(addr) = target.address(scenario) else {
                continue;
            };
            if scenario.protocol == Protocol::Http1 {
                let status = status_of(addr, target.path(scenario), scenario.headers);
                assert_eq!(
                    status, scenario.expected_status,
                    "{} answers {status} in scenario {:?}",
                    target.name, scenario.name
                );
            }
            plan.push((*scenario, target, addr));
        }
    }

    let mut rows: Vec<Row> = plan
        .iter()
        .map(|(scenario, target, _)| Row {
            scenario: scenario.name.to_owned(),
            target: target.name.clone(),
            runs: Vec::new(),
            opened: Vec::new(),
        })
        .collect();
    eprintln!(
        "{} runs of {} s per round, {} rounds",
        plan.len(),
        args.duration,
        args.rounds
    );
    for round in 0..args.rounds {
        for (i, (scenario, target, addr)) in plan.iter().enumerate() {
            let load = Load {
                target: *addr,
                path: target.path(scenario),
                headers: scenario.headers,
                connections: scenario.connections,
                seconds: args.duration,
                expected: scenario.expected_status,
            };
            let opened_before = target.opened(scenario);
            let sample: Sample = match scenario.protocol {
                Protocol::Http1 => wrk(&load, work.path()),
                Protocol::H2 => h2load(&load, 10, work.path()),
            };
            let opened = opened_before
                .zip(target.opened(scenario))
                .map(|(a, b)| b - a);
            eprintln!(
                "round {} {:38} {:14} {:>9.0} req/s  p99 {:>7.2} ms  unexpected {}{}",
                round + 1,
                scenario.name,
                target.name,
                sample.rps,
                sample.p99_us / 1000.0,
                sample.unexpected,
                opened.map_or(String::new(), |n| format!("  new upstream connections {n}"))
            );
            rows[i].runs.push(sample);
            rows[i].opened.extend(opened);
        }
    }

    let placement = if args.workers == 1 {
        format!(
            "Proxies on core {PROXY_CORE} with one worker each; load generator and backends on the \
             other core."
        )
    } else {
        format!(
            "Proxies with {} workers each on every core, shared with the load generator and the \
             backends.",
            args.workers
        )
    };
    let mut report = format!(
        "{placement} {} rounds of {} s per target and scenario, medians; `unexpected` counts \
         answers other than the scenario's expected status, summed over the rounds; new \
         upstream connections are the router's `{OPENED}` over each run (median).\n\n",
        args.rounds, args.duration
    );
    report.push_str(&markdown(&rows));
    report.push_str("\nRatios (the performance goals are stated in these):\n\n");
    let peers: Vec<&str> = targets
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !["router", "backend alone"].contains(name))
        .collect();
    for scenario in &scenarios {
        for peer in &peers {
            if let Some(r) = ratio(&rows, (scenario.name, "router"), (scenario.name, peer)) {
                report.push_str(&format!("- {}: router / {peer} = {r:.2}\n", scenario.name));
            }
        }
    }
    let against_routed = [
        (&SCENARIOS[2], "unknown tenant / routed"),
        (&SCENARIOS[3], "cross-region block / routed"),
        (&SCENARIOS[1], "1M tenants / 1k tenants"),
    ];
    for (scenario, label) in against_routed {
        match ratio(&rows, (scenario.name, "router"), (ROUTED.name, "router")) {
            Some(r) => report.push_str(&format!("- router, {label}: {r:.2}\n")),
            None => report.push_str(&format!("- router, {label}: not measured\n")),
        }
    }
    println!("{report}");
    std::fs::write(out.join("results.md"), &report).unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    match chart(&rows, &names, &out) {
        Ok(()) => eprintln!("written: {0}/results.md, {0}/results.png", out.display()),
        Err(e) => eprintln!("written: {}/results.md; no chart: {e}", out.display()),
    }
}
