//! `registry-scale`: the registry at a million tenants.
//!
//! Reports load + validate + build + swap time, heap bytes per tenant, resident memory per
//! tenant, lookup + decision time per request (median of batches), and allocations per
//! decision, and what one admin API change costs. Run it with `load-tests/registry-scale.sh`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use clap::Parser;
use load_tests::median;
use load_tests::scale::{spread, tenant_id, write_registry, CONFIG};
use regions::{HeaderValues, MethodClass, UnixTime};
use residency_dataplane::clock::Clock;
use residency_dataplane::health::states_for;
use residency_dataplane::metrics::Metrics;
use residency_dataplane::routing::{decide_for, route, RequestFacts};
use residency_dataplane::state::RouterState;

#[derive(Parser)]
#[command(about = "Registry load time, memory and lookup + decision time at scale")]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    tenants: usize,
    /// Loads to time (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("router.toml"), CONFIG).unwrap();
    let json_bytes = write_registry(&dir.path().join("tenants.json"), args.tenants);
    let config_path = dir.path().join("router.toml");

    // What the router holds once a registry is live: one state behind the ArcSwap.
    let state_from = |path: &Path| {
        let snapshot = residency_config::load(path).expect("the generated config is valid");
        let health = states_for(&snapshot, None);
        RouterState::new(snapshot, &health, &Metrics::standalone(), &Clock::start())
    };
    let small_path = small_config(dir.path());
    let live = ArcSwap::from_pointee(state_from(&small_path));
    let rss_before = resident_kib();
    let mut seconds = Vec::new();
    let mut heap_per_tenant = 0.0;
    for _ in 0..args.runs {
        // A tiny state is live before each load, so the measure sees only what one load keeps.
        live.store(Arc::new(state_from(&small_path)));
        let started = Instant::now();
        let info = allocation_counter::measure(|| {
            live.store(Arc::new(state_from(&config_path)));
        });
        seconds.push(started.elapsed().as_secs_f64());
        heap_per_tenant = info.bytes_current as f64 / args.tenants as f64;
    }
    let rss_after = resident_kib();

    // Lookup + decision through the same function the proxy calls, on random tenants.
    let state = live.load_full();
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let ids: Vec<String> = (0..1000)
        .map(|k| tenant_id(spread(k, args.tenants)))
        .collect();
    let facts = RequestFacts {
        host: None,
        path: "/",
        method: "GET",
        upgrade: false,
        peer: Some(peer),
        tls: None,
    };
    let now = UnixTime(1_800_000_000);
    let tenant_ids: Vec<regions::TenantId> = ids
        .iter()
        .map(|id| regions::TenantId::parse(id.as_bytes()).unwrap())
        .collect();
    // The measure: registry lookup + the residency decision (live health view and
    // site preference included), given an identified tenant.
    let mut decide_ns = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        for id in &tenant_ids {
            std::hint::black_box(decide_for(
                &state,
                Some(*id),
                MethodClass::Read,
                None,
                None,
                now,
            ));
        }
        decide_ns.push(started.elapsed().as_nanos() as f64 / ids.len() as f64);
    }
    let mut lookup_ns = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        for id in &tenant_ids {
            std::hint::black_box(state.snapshot.registry.get(std::hint::black_box(id)));
        }
        lookup_ns.push(started.elapsed().as_nanos() as f64 / ids.len() as f64);
    }
    // Warm up once: the first decision starts process-wide helpers (the coarse clock).
    route(
        &state,
        &facts,
        |_| HeaderValues::One(ids[0].as_bytes()),
        std::iter::empty(),
        now,
    );
    let mut batch_ns = Vec::with_capacity(200);
    let mut decisions = 0u64;
    let info = allocation_counter::measure(|| {
        for _ in 0..200 {
            let started = Instant::now();
            for id in &ids {
                let routed = route(
                    &state,
                    &facts,
                    |_| HeaderValues::One(id.as_bytes()),
                    std::iter::empty(),
                    now,
                );
                assert!(routed.decision.is_ok());
                decisions += 1;
            }
            batch_ns.push(started.elapsed().as_nanos() as f64 / ids.len() as f64);
        }
    });

    // One admin API change: a copy of the registry with the change, then the registry file
    // rewritten durably (temporary file, fsync, rename, fsync the directory).
    let store = residency_config::FileStore;
    let moved = regions::TenantRecord {
        home: regions::RegionId(1),
        replication: None,
    };
    let (mut copy_ms, mut commit_ms) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        let changed = state
            .snapshot
            .registry
            .with_change(&tenant_ids[0], Some(moved));
        copy_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let change = residency_config::TenantChange {
            id: tenant_ids[0],
            after: Some(moved),
        };
        let started = Instant::now();
        residency_config::RegistryStore::commit(&store, &change, &changed, &state.snapshot)
            .unwrap();
        commit_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    println!(
        "| {} tenants ({} MB of JSON) | |",
        args.tenants,
        json_bytes / 1_000_000
    );
    println!("|---|---|");
    println!(
        "| load + validate + build + swap (median of {}) | {:.3} s |",
        args.runs,
        median(&mut seconds)
    );
    println!("| heap held per tenant (counting allocator) | {heap_per_tenant:.1} bytes |");
    println!(
        "| resident memory per tenant (RSS after - RSS with a 4-tenant state) | {:.1} bytes |",
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / args.tenants as f64
    );
    println!(
        "| lookup + decision, median of 200 batches of 1000 | {:.0} ns |",
        median(&mut batch_ns)
    );
    println!(
        "| registry lookup + decision (tenant already identified) | {:.0} ns |",
        median(&mut decide_ns)
    );
    println!(
        "| registry lookup alone | {:.0} ns |",
        median(&mut lookup_ns)
    );
    println!(
        "| heap allocations per decision | {} |",
        info.count_total as f64 / decisions as f64
    );
    println!(
        "| admin API change: registry copy with the change (median of 5) | {:.1} ms |",
        median(&mut copy_ms)
    );
    println!(
        "| admin API change: registry file rewritten durably (median of 5) | {:.1} ms |",
        median(&mut commit_ms)
    );
}

/// A four-tenant config, swapped in before each measured load.
fn small_config(dir: &Path) -> std::path::PathBuf {
    let small = dir.join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("router.toml"), CONFIG).unwrap();
    write_registry(&small.join("tenants.json"), 4);
    small.join("router.toml")
}
