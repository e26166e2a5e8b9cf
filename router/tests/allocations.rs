//! The per-request decision path allocates nothing: identification, registry lookup, GeoIP,
//! site preference, health view and `regions::decide`, on allowed and blocked requests alike.
//! Counted with a counting global allocator, not timed.

use std::net::IpAddr;
use std::path::Path;

use regions::{HeaderValues, UnixTime};
use residency_dataplane::clock::Clock;
use residency_dataplane::health::states_for;
use residency_dataplane::metrics::Metrics;
use residency_dataplane::routing::{route, RequestFacts};
use residency_dataplane::state::RouterState;

fn state_with_geoip() -> (tempfile::TempDir, RouterState) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(examples.join("router.toml"))
        .unwrap()
        .replace(
            "trusted_proxies = []",
            "trusted_proxies = [\"127.0.0.1/32\"]",
        )
        + "\n[geoip]\ndatabase = \"geo.mmdb\"\n";
    std::fs::write(dir.path().join("router.toml"), config).unwrap();
    std::fs::copy(
        examples.join("tenants.json"),
        dir.path().join("tenants.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("geo.mmdb"),
        geoip::testing::city_database(&geoip::testing::WORLD),
    )
    .unwrap();
    let snapshot = residency_config::load(&dir.path().join("router.toml")).unwrap();
    let health = states_for(&snapshot, None);
    (
        dir,
        RouterState::new(snapshot, &health, &Metrics::standalone(), &Clock::start()),
    )
}

struct Case {
    host: Option<&'static str>,
    path: &'static str,
    method: &'static str,
    tenant_header: Option<&'static [u8]>,
    forwarded_for: &'static [&'static [u8]],
    routed: bool,
}

const CASES: &[Case] = &[
    // Header tenant, located client (GeoIP + distance ranking).
    Case {
        host: Some("api.example.com"),
        path: "/orders",
        method: "GET",
        tenant_header: Some(b"Acme"),
        forwarded_for: &[b"3.0.9.9"],
        routed: true,
    },
    // Host tenant, read replica reachable by failover.
    Case {
        host: Some("globex.app.example.com:8080"),
        path: "/",
        method: "GET",
        tenant_header: None,
        forwarded_for: &[b"6.6.6.6, 81.0.3.4"],
        routed: true,
    },
    // Path tenant, region hint to an allowed replica.
    Case {
        host: Some("us.api.example.com"),
        path: "/t/initech/x",
        method: "POST",
        tenant_header: None,
        forwarded_for: &[],
        routed: true,
    },
    // Blocked: cross-region, unknown, invalid, ambiguous, no tenant.
    Case {
        host: Some("eu.api.example.com"),
        path: "/",
        method: "GET",
        tenant_header: Some(b"acme"),
        forwarded_for: &[],
        routed: false,
    },
    Case {
        host: None,
        path: "/",
        method: "GET",
        tenant_header: Some(b"nobody"),
        forwarded_for: &[],
        routed: false,
    },
    Case {
        host: None,
        path: "/",
        method: "GET",
        tenant_header: Some(b"bad_id"),
        forwarded_for: &[],
        routed: false,
    },
    Case {
        host: None,
        path: "/t/globex/",
        method: "GET",
        tenant_header: Some(b"acme"),
        forwarded_for: &[],
        routed: false,
    },
    Case {
        host: Some("localhost"),
        path: "/",
        method: "GET",
        tenant_header: None,
        forwarded_for: &[],
        routed: false,
    },
];

fn run_all(state: &RouterState) -> usize {
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let mut routed = 0;
    for case in CASES {
        let facts = RequestFacts {
            host: case.host,
            path: case.path,
            method: case.method,
            upgrade: false,
            peer: Some(peer),
            tls: None,
        };
        let header = |_: &str| match case.tenant_header {
            Some(value) => HeaderValues::One(value),
            None => HeaderValues::Absent,
        };
        let result = route(
            state,
            &facts,
            header,
            case.forwarded_for.iter().copied(),
            UnixTime(1_780_000_000),
        );
        assert_eq!(
            result.decision.is_ok(),
            case.routed,
            "{:?} {}",
            case.host,
            case.path
        );
        routed += usize::from(result.decision.is_ok());
    }
    routed
}

#[test]
fn deciding_allocates_nothing() {
    let (_dir, state) = state_with_geoip();
    // First use initialises process-wide clocks; later requests must not allocate at all.
    run_all(&state);
    let info = allocation_counter::measure(|| {
        for _ in 0..1000 {
            assert_eq!(run_all(&state), 3);
        }
    });
    assert_eq!(
        info.count_total,
        0,
        "{} allocations for {} decisions",
        info.count_total,
        1000 * CASES.len()
    );
}
