use proptest::prelude::*;

use super::*;
use crate::tenant::{RegionSet, Replication};

const US: RegionId = RegionId(0);
const EU: RegionId = RegionId(1);
const VIRGINIA: SiteId = SiteId(0);
const OREGON: SiteId = SiteId(1);
const FRANKFURT: SiteId = SiteId(2);
const DUBLIN: SiteId = SiteId(3);
const NOW: UnixTime = UnixTime(1_800_000_000);

fn topology() -> Topology {
    let us = vec!["us.api.example.com".to_owned()];
    let eu = vec!["eu.api.example.com".to_owned()];
    Topology::new([
        (
            "us",
            us.as_slice(),
            vec![
                ("virginia".into(), 38.9, -77.4),
                ("oregon".into(), 45.8, -119.7),
            ],
        ),
        (
            "eu",
            eu.as_slice(),
            vec![
                ("frankfurt".into(), 50.1, 8.7),
                ("dublin".into(), 53.3, -6.3),
            ],
        ),
    ])
    .unwrap()
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s.as_bytes()).unwrap()
}

fn eu_tenant(mode: ReplicationMode, expires_at: Option<UnixTime>) -> TenantRecord {
    TenantRecord {
        home: EU,
        replication: Some(Replication {
            regions: [US].into_iter().collect(),
            mode,
            expires_at,
        }),
    }
}

const ALL_UP: fn(SiteId) -> bool = |_| true;

fn run(
    record: &TenantRecord,
    method: MethodClass,
    hint: Option<RegionId>,
    health: impl Fn(SiteId) -> bool,
) -> Decision {
    decide(
        &topology(),
        UnknownTenantPolicy::Reject,
        TenantLookup::Known(id("t"), record),
        method,
        hint,
        &health,
        &ConfigOrder,
        NOW,
    )
}

fn sites(decision: &Decision) -> Vec<(SiteId, RouteReason)> {
    match decision {
        Decision::Route(route) => route.sites.iter().map(|s| (s.site, s.reason)).collect(),
        Decision::Block(block) => panic!("expected a route, got {block:?}"),
    }
}

fn code(decision: &Decision) -> BlockCode {
    match decision {
        Decision::Block(block) => block.code,
        Decision::Route(route) => panic!("expected a block, got {route:?}"),
    }
}

#[test]
fn home_tenant_goes_to_its_home_sites_in_order() {
    let acme = TenantRecord {
        home: US,
        replication: None,
    };
    let d = run(&acme, MethodClass::Write, None, ALL_UP);
    assert_eq!(
        sites(&d),
        vec![(VIRGINIA, RouteReason::Home), (OREGON, RouteReason::Home)]
    );
}

#[test]
fn unhealthy_home_sites_are_skipped() {
    let acme = TenantRecord {
        home: US,
        replication: None,
    };
    let d = run(&acme, MethodClass::Read, None, |s| s != VIRGINIA);
    assert_eq!(sites(&d), vec![(OREGON, RouteReason::Home)]);
}

#[test]
fn no_tenant_with_reject_policy_is_tenant_required() {
    let d = decide(
        &topology(),
        UnknownTenantPolicy::Reject,
        TenantLookup::Absent,
        MethodClass::Read,
        None,
        &ALL_UP,
        &ConfigOrder,
        NOW,
    );
    assert_eq!(d, Decision::Block(Block::new(BlockCode::TenantRequired)));
    assert_eq!(BlockCode::TenantRequired.http_status(), 400);
}

#[test]
fn unregistered_tenant_with_reject_policy_is_unknown_tenant() {
    let d = decide(
        &topology(),
        UnknownTenantPolicy::Reject,
        TenantLookup::Unknown(id("nobody")),
        MethodClass::Read,
        Some(EU),
        &ALL_UP,
        &ConfigOrder,
        NOW,
    );
    assert_eq!(
        d,
        Decision::Block(Block {
            code: BlockCode::UnknownTenant,
            home_region: None,
            requested_region: Some(EU),
        })
    );
    assert_eq!(BlockCode::UnknownTenant.http_status(), 404);
}

#[test]
fn fallback_policy_serves_tenantless_and_unknown_traffic_in_the_fallback_region_only() {
    for tenant in [TenantLookup::Absent, TenantLookup::Unknown(id("signup"))] {
        let d = decide(
            &topology(),
            UnknownTenantPolicy::Fallback(EU),
            tenant,
            MethodClass::Write,
            None,
            &ALL_UP,
            &ConfigOrder,
            NOW,
        );
        assert_eq!(
            sites(&d),
            vec![(FRANKFURT, RouteReason::Home), (DUBLIN, RouteReason::Home)]
        );
        let hinted = decide(
            &topology(),
            UnknownTenantPolicy::Fallback(EU),
            tenant,
            MethodClass::Read,
            Some(US),
            &ALL_UP,
            &ConfigOrder,
            NOW,
        );
        assert_eq!(code(&hinted), BlockCode::CrossRegionBlocked);
    }
}

#[test]
fn hint_to_home_routes_home_only_even_with_replication() {
    let globex = eu_tenant(ReplicationMode::Active, None);
    let d = run(&globex, MethodClass::Read, Some(EU), ALL_UP);
    assert_eq!(
        sites(&d),
        vec![(FRANKFURT, RouteReason::Home), (DUBLIN, RouteReason::Home)]
    );
    // Home down with a home hint: the client asked for eu, so nothing else serves it.
    let down = run(&globex, MethodClass::Read, Some(EU), |s| s == VIRGINIA);
    assert_eq!(code(&down), BlockCode::RegionUnavailable);
}

#[test]
fn hint_to_a_region_without_replication_is_cross_region_blocked() {
    let initech = TenantRecord {
        home: EU,
        replication: None,
    };
    let d = run(&initech, MethodClass::Read, Some(US), ALL_UP);
    assert_eq!(
        d,
        Decision::Block(Block {
            code: BlockCode::CrossRegionBlocked,
            home_region: Some(EU),
            requested_region: Some(US),
        })
    );
    assert_eq!(BlockCode::CrossRegionBlocked.http_status(), 421);
}

#[test]
fn read_replica_hint_serves_reads_and_blocks_writes() {
    let globex = eu_tenant(ReplicationMode::ReadReplica, None);
    let reason = RouteReason::HintedReplica(ReplicationMode::ReadReplica);
    let d = run(&globex, MethodClass::Read, Some(US), ALL_UP);
    assert_eq!(sites(&d), vec![(VIRGINIA, reason), (OREGON, reason)]);
    let w = run(&globex, MethodClass::Write, Some(US), ALL_UP);
    assert_eq!(code(&w), BlockCode::CrossRegionBlocked);
}

#[test]
fn active_hint_serves_every_method() {
    let initech = eu_tenant(ReplicationMode::Active, None);
    let reason = RouteReason::HintedReplica(ReplicationMode::Active);
    for method in [MethodClass::Read, MethodClass::Write] {
        let d = run(&initech, method, Some(US), ALL_UP);
        assert_eq!(sites(&d), vec![(VIRGINIA, reason), (OREGON, reason)]);
    }
}

#[test]
fn read_replica_failover_comes_after_home_for_reads_only() {
    let globex = eu_tenant(ReplicationMode::ReadReplica, None);
    let reason = RouteReason::ReplicaFailover(ReplicationMode::ReadReplica);
    let read = run(&globex, MethodClass::Read, None, ALL_UP);
    assert_eq!(
        sites(&read),
        vec![
            (FRANKFURT, RouteReason::Home),
            (DUBLIN, RouteReason::Home),
            (VIRGINIA, reason),
            (OREGON, reason)
        ]
    );
    let write = run(&globex, MethodClass::Write, None, ALL_UP);
    assert_eq!(
        sites(&write),
        vec![(FRANKFURT, RouteReason::Home), (DUBLIN, RouteReason::Home)]
    );
}

#[test]
fn home_region_down_read_replica_serves_get_and_blocks_post() {
    let globex = eu_tenant(ReplicationMode::ReadReplica, None);
    let us_only = |s: SiteId| s == VIRGINIA || s == OREGON;
    let read = run(&globex, MethodClass::Read, None, us_only);
    let reason = RouteReason::ReplicaFailover(ReplicationMode::ReadReplica);
    assert_eq!(sites(&read), vec![(VIRGINIA, reason), (OREGON, reason)]);
    let write = run(&globex, MethodClass::Write, None, us_only);
    assert_eq!(
        write,
        Decision::Block(Block {
            code: BlockCode::RegionUnavailable,
            home_region: Some(EU),
            requested_region: None,
        })
    );
    assert_eq!(BlockCode::RegionUnavailable.http_status(), 503);
}

#[test]
fn home_region_down_active_serves_every_method() {
    let initech = eu_tenant(ReplicationMode::Active, None);
    let us_only = |s: SiteId| s == VIRGINIA || s == OREGON;
    for method in [MethodClass::Read, MethodClass::Write] {
        let d = run(&initech, method, None, us_only);
        let reason = RouteReason::ReplicaFailover(ReplicationMode::Active);
        assert_eq!(sites(&d), vec![(VIRGINIA, reason), (OREGON, reason)]);
    }
}

#[test]
fn expired_replication_allows_nothing_outside_home() {
    for mode in [ReplicationMode::ReadReplica, ReplicationMode::Active] {
        let expired = eu_tenant(mode, Some(NOW));
        let us_only = |s: SiteId| s == VIRGINIA || s == OREGON;
        for method in [MethodClass::Read, MethodClass::Write] {
            assert_eq!(
                code(&run(&expired, method, None, us_only)),
                BlockCode::RegionUnavailable
            );
            assert_eq!(
                code(&run(&expired, method, Some(US), ALL_UP)),
                BlockCode::CrossRegionBlocked
            );
        }
        // One second before expiry it still works.
        let live = eu_tenant(mode, Some(UnixTime(NOW.0 + 1)));
        assert!(matches!(
            run(&live, MethodClass::Read, Some(US), ALL_UP),
            Decision::Route(_)
        ));
    }
}

#[test]
fn every_site_down_is_region_unavailable() {
    let acme = TenantRecord {
        home: US,
        replication: None,
    };
    let d = run(&acme, MethodClass::Read, None, |_| false);
    assert_eq!(code(&d), BlockCode::RegionUnavailable);
}

#[test]
fn method_classes() {
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(MethodClass::of(m, false), MethodClass::Read);
        // A WebSocket upgrade can carry writes: never allowed on a read replica.
        assert_eq!(MethodClass::of(m, true), MethodClass::Write);
    }
    for m in ["POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE", "get"] {
        assert_eq!(MethodClass::of(m, false), MethodClass::Write);
    }
}

#[test]
fn replica_sites_stop_being_allowed_when_replication_expires_mid_request() {
    let expiry = UnixTime(NOW.0 + 10);
    let initech = eu_tenant(ReplicationMode::Active, Some(expiry));
    let Decision::Route(route) = run(&initech, MethodClass::Write, None, ALL_UP) else {
        panic!("expected a route");
    };
    assert_eq!(route.replicas_expire_at, Some(expiry));
    let (home, replica) = (route.sites[0], route.sites[2]);
    assert_eq!(replica.region, US);
    assert!(route.still_allows(&replica, NOW));
    assert!(!route.still_allows(&replica, expiry));
    assert!(route.still_allows(&home, UnixTime(i64::MAX)));
}

#[test]
fn codes_and_statuses_match_the_spec_table() {
    let table: Vec<_> = BlockCode::ALL
        .iter()
        .map(|c| (c.as_str(), c.http_status()))
        .collect();
    assert_eq!(
        table,
        vec![
            ("tenant_required", 400),
            ("unknown_tenant", 404),
            ("ambiguous_tenant", 400),
            ("invalid_tenant", 400),
            ("cross_region_blocked", 421),
            ("region_unavailable", 503),
            // Issue 7: a request on a TLS connection whose certificate does not cover its Host.
            ("misdirected_request", 421),
            // Issue 14: a request whose Host or framing cannot be read one way only.
            ("bad_request", 400),
            // Issue 16: fleet mode, no registry yet (etcd down at start, no valid cache).
            ("registry_unavailable", 503),
        ]
    );
}

// ---- property: the residency rule over random worlds ----

#[derive(Debug, Clone)]
struct World {
    /// Random ranks per site: the preference may reorder sites but never widen the route.
    ranks: Vec<u32>,
    topology: Topology,
    record: TenantRecord,
    healthy: Vec<bool>,
    method: MethodClass,
    hint: Option<RegionId>,
    now: UnixTime,
}

fn world() -> impl Strategy<Value = World> {
    // 1..6 regions with 0..4 sites each.
    prop::collection::vec(0usize..4, 1..6)
        .prop_flat_map(|sites_per_region| {
            let regions = sites_per_region.len();
            let total_sites: usize = sites_per_region.iter().sum();
            (
                Just(sites_per_region),
                0..regions,
                prop::option::of((
                    prop::collection::vec(0..regions, 0..4),
                    prop::bool::ANY,
                    prop::option::of(0i64..200),
                )),
                prop::collection::vec(prop::bool::ANY, total_sites),
                prop::collection::vec(0u32..4, total_sites),
                prop::bool::ANY,
                prop::option::of(0..regions),
                0i64..200,
            )
        })
        .prop_map(
            |(sites_per_region, home, replication, healthy, ranks, read, hint, now)| {
                let names: Vec<String> = (0..sites_per_region.len())
                    .map(|r| format!("r{r}"))
                    .collect();
                let no_hosts: Vec<String> = vec![];
                let mut site_counter = 0;
                let topology = Topology::new(names.iter().zip(&sites_per_region).map(|(n, &k)| {
                    let sites = (0..k)
                        .map(|_| {
                            site_counter += 1;
                            (format!("s{site_counter}"), 0.0, 0.0)
                        })
                        .collect();
                    (n.as_str(), no_hosts.as_slice(), sites)
                }))
                .unwrap();
                let record = TenantRecord {
                    home: RegionId(home as u8),
                    replication: replication.map(|(regions, active, expires)| Replication {
                        regions: regions
                            .into_iter()
                            .map(|r| RegionId(r as u8))
                            .filter(|&r| r != RegionId(home as u8))
                            .collect::<RegionSet>(),
                        mode: if active {
                            ReplicationMode::Active
                        } else {
                            ReplicationMode::ReadReplica
                        },
                        expires_at: expires.map(UnixTime),
                    }),
                };
                World {
                    ranks,
                    topology,
                    record,
                    healthy,
                    method: if read {
                        MethodClass::Read
                    } else {
                        MethodClass::Write
                    },
                    hint: hint.map(|h| RegionId(h as u8)),
                    now: UnixTime(now),
                }
            },
        )
}

struct Ranks<'a>(&'a [u32]);

impl SitePreference for Ranks<'_> {
    fn rank(&self, site: SiteId) -> u32 {
        self.0[usize::from(site.0)]
    }
}

/// SPEC 2, written independently of `decide`.
fn residency_allows(w: &World, region: RegionId) -> bool {
    region == w.record.home
        || w.record.replication.is_some_and(|r| {
            r.regions.contains(region)
                && r.expires_at.is_none_or(|e| w.now < e)
                && (r.mode == ReplicationMode::Active || w.method == MethodClass::Read)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_routed_site_satisfies_the_residency_rule(w in world()) {
        let health = |s: SiteId| w.healthy[usize::from(s.0)];
        let preference = Ranks(&w.ranks);
        let decision = decide(
            &w.topology,
            UnknownTenantPolicy::Reject,
            TenantLookup::Known(id("t"), &w.record),
            w.method,
            w.hint,
            &health,
            &preference,
            w.now,
        );
        let allowed_healthy_exists = w
            .topology
            .sites()
            .any(|(s, site)| health(s) && residency_allows(&w, site.region));
        match decision {
            Decision::Route(route) => {
                prop_assert!(!route.sites.is_empty());
                prop_assert_eq!(route.home_region, w.record.home);
                let mut seen_replica = false;
                let mut previous: Option<RoutedSite> = None;
                for routed in &route.sites {
                    let site = w.topology.site(routed.site);
                    prop_assert_eq!(site.region, routed.region);
                    prop_assert!(residency_allows(&w, routed.region), "{:?} broke residency", routed);
                    prop_assert!(health(routed.site));
                    if let Some(hint) = w.hint {
                        prop_assert_eq!(routed.region, hint);
                    }
                    // Inside one region, sites follow the preference's ranks.
                    if let Some(prev) = previous.filter(|p: &RoutedSite| p.region == routed.region) {
                        prop_assert!(
                            (w.ranks[usize::from(prev.site.0)], prev.site)
                                < (w.ranks[usize::from(routed.site.0)], routed.site)
                        );
                    }
                    previous = Some(*routed);
                    // Home sites always come before any replica site.
                    if routed.region == w.record.home {
                        prop_assert!(!seen_replica);
                    } else {
                        seen_replica = true;
                    }
                }
            }
            Decision::Block(block) => match block.code {
                BlockCode::RegionUnavailable => {
                    // Nothing allowed (and, with a hint, in the hinted region) is healthy.
                    let any = w.topology.sites().any(|(s, site)| {
                        health(s)
                            && residency_allows(&w, site.region)
                            && w.hint.is_none_or(|h| h == site.region)
                    });
                    prop_assert!(!any);
                }
                BlockCode::CrossRegionBlocked => {
                    let hint = w.hint.expect("cross-region block needs a hint");
                    prop_assert!(!residency_allows(&w, hint));
                }
                other => prop_assert!(false, "unexpected block {:?}", other),
            },
        }
        // Without a hint, a route exists exactly when an allowed healthy site exists.
        if w.hint.is_none() {
            let routed = matches!(
                decide(&w.topology, UnknownTenantPolicy::Reject,
                       TenantLookup::Known(id("t"), &w.record), w.method, None, &health,
                       &preference, w.now),
                Decision::Route(_)
            );
            prop_assert_eq!(routed, allowed_healthy_exists);
        }
    }
}

#[test]
fn preference_orders_sites_inside_a_region_only() {
    // Prefer dublin over frankfurt, and virginia (us) most of all: us must still come last.
    let ranks = [0, 5, 3, 1];
    let globex = eu_tenant(ReplicationMode::ReadReplica, None);
    let d = decide(
        &topology(),
        UnknownTenantPolicy::Reject,
        TenantLookup::Known(id("globex"), &globex),
        MethodClass::Read,
        None,
        &ALL_UP,
        &Ranks(&ranks),
        NOW,
    );
    let order: Vec<SiteId> = sites(&d).into_iter().map(|(s, _)| s).collect();
    assert_eq!(order, vec![DUBLIN, FRANKFURT, VIRGINIA, OREGON]);
}
