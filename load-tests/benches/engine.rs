//! The residency engine per request, at registry sizes of 1k, 100k and 1M tenants:
//! - tenant extraction from a header, a host pattern and a path prefix;
//! - registry lookup + decision for an identified tenant (health view and site preference
//!   included), for a known tenant, an unknown one and a cross-region request;
//! - the whole request decision the proxy makes (`routing::route`: identify, look up, decide).
//!
//! GeoIP lookups have their own benchmark: `cargo bench -p residency-geoip`.
//! Run: `cargo bench -p load-tests --bench engine`.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use load_tests::scale::{spread, tenant_id, write_registry, CONFIG};
use regions::{
    HeaderValues, HostPattern, MethodClass, PathPattern, RegionId, TenantIdentifier, TenantSource,
    UnixTime,
};
use residency_dataplane::clock::Clock;
use residency_dataplane::health::states_for;
use residency_dataplane::metrics::Metrics;
use residency_dataplane::routing::{decide_for, route, RequestFacts};
use residency_dataplane::state::RouterState;

const NOW: UnixTime = UnixTime(1_800_000_000);

fn extraction(c: &mut Criterion) {
    let mut group = c.benchmark_group("tenant extraction");
    let header = TenantIdentifier::new(vec![TenantSource::header("x-tenant-id").unwrap()]);
    group.bench_function("header", |b| {
        b.iter(|| {
            black_box(header.identify(None, None, "/orders", |_| {
                HeaderValues::One(black_box(b"tenant-0000500"))
            }))
        })
    });
    let host = TenantIdentifier::new(vec![TenantSource::Host(
        HostPattern::parse("{tenant}.app.example.com").unwrap(),
    )]);
    group.bench_function("host", |b| {
        b.iter(|| {
            black_box(host.identify(
                Some(black_box("tenant-0000500.app.example.com")),
                None,
                "/orders",
                |_| HeaderValues::Absent,
            ))
        })
    });
    let path = TenantIdentifier::new(vec![TenantSource::Path(
        PathPattern::parse("/t/{tenant}/", false).unwrap(),
    )]);
    group.bench_function("path", |b| {
        b.iter(|| {
            black_box(
                path.identify(None, None, black_box("/t/tenant-0000500/orders"), |_| {
                    HeaderValues::Absent
                }),
            )
        })
    });
    group.finish();
}

fn state_with(tenants: usize) -> (tempfile::TempDir, RouterState) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("router.toml"), CONFIG).unwrap();
    write_registry(&dir.path().join("tenants.json"), tenants);
    let snapshot = residency_config::load(&dir.path().join("router.toml")).unwrap();
    let health = states_for(&snapshot, None);
    let state = RouterState::new(snapshot, &health, &Metrics::standalone(), &Clock::start());
    (dir, state)
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup + decision");
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    for tenants in [1_000, 100_000, 1_000_000] {
        let (_dir, state) = state_with(tenants);
        // 1000 tenants spread over the registry, so lookups miss the cache as they would.
        let ids: Vec<regions::TenantId> = (0..1000)
            .map(|k| regions::TenantId::parse(tenant_id(spread(k, tenants)).as_bytes()).unwrap())
            .collect();
        let unknown = regions::TenantId::parse(b"nobody").unwrap();
        let decide = |id: &regions::TenantId, hint: Option<RegionId>| {
            decide_for(&state, Some(*id), MethodClass::Read, hint, None, NOW).0
        };
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("routed", tenants), &tenants, |b, _| {
            b.iter(|| {
                next = (next + 1) % ids.len();
                black_box(decide(black_box(&ids[next]), None))
            })
        });
        group.bench_with_input(
            BenchmarkId::new("unknown tenant", tenants),
            &tenants,
            |b, _| b.iter(|| black_box(decide(black_box(&unknown), None))),
        );
        // Tenants of us (even ids) that do not replicate (ids divisible by 10 do), at the eu
        // region host (region 1): every one is blocked.
        let blocked: Vec<regions::TenantId> = (0..tenants)
            .step_by(2)
            .filter(|i| i % 10 != 0)
            .step_by((tenants / 2000).max(1))
            .map(|i| regions::TenantId::parse(tenant_id(i).as_bytes()).unwrap())
            .collect();
        let mut k = 0;
        group.bench_with_input(
            BenchmarkId::new("cross-region", tenants),
            &tenants,
            |b, _| {
                b.iter(|| {
                    k = (k + 1) % blocked.len();
                    let decision = decide(black_box(&blocked[k]), Some(RegionId(1)));
                    assert!(matches!(decision, regions::Decision::Block(_)));
                    black_box(decision)
                })
            },
        );
        let names: Vec<String> = (0..1000).map(|k| tenant_id(spread(k, tenants))).collect();
        let facts = RequestFacts {
            host: Some("api.example.com"),
            path: "/orders",
            method: "GET",
            upgrade: false,
            peer: Some(peer),
            tls: None,
        };
        group.bench_with_input(
            BenchmarkId::new("whole request (identify + lookup + decision)", tenants),
            &tenants,
            |b, _| {
                b.iter(|| {
                    next = (next + 1) % names.len();
                    let id = names[next].as_bytes();
                    black_box(route(
                        &state,
                        &facts,
                        |_| HeaderValues::One(id),
                        std::iter::empty(),
                        NOW,
                    ))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, extraction, decisions);
criterion_main!(benches);
