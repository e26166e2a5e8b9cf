//! The one decision function: which sites may serve this request, in which order.

use smallvec::SmallVec;

use crate::tenant::{Replication, ReplicationMode, TenantId, TenantRecord, UnixTime};
use crate::topology::{RegionId, SiteId, Topology};

/// Routes with at most this many sites live on the stack.
pub const MAX_INLINE_ROUTE: usize = 8;

/// The part of the HTTP method the residency rule cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodClass {
    /// GET, HEAD, OPTIONS: what a `read-replica` region may serve.
    Read,
    /// Every other method.
    Write,
}

impl MethodClass {
    /// `upgrade`: the request asks for a protocol upgrade (WebSocket). An upgraded connection
    /// can carry writes, so it is never a read, whatever its method.
    pub fn of(method: &str, upgrade: bool) -> Self {
        match method {
            "GET" | "HEAD" | "OPTIONS" if !upgrade => MethodClass::Read,
            _ => MethodClass::Write,
        }
    }
}

/// What identification and the registry said about the request's tenant.
#[derive(Clone, Copy, Debug)]
pub enum TenantLookup<'a> {
    /// No source named a tenant.
    Absent,
    /// A well-formed id that the registry does not know.
    Unknown(TenantId),
    /// A registered tenant.
    Known(TenantId, &'a TenantRecord),
}

/// What to do with requests that have no registered tenant (SPEC 4, `unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownTenantPolicy {
    Reject,
    /// Serve tenant-less and unregistered traffic from this region only (e.g. sign-up pages).
    Fallback(RegionId),
}

/// Live health of sites, as seen by the caller's health checks.
pub trait SiteHealth {
    /// A site is healthy when at least one of its backends may take traffic.
    fn is_healthy(&self, site: SiteId) -> bool;
}

impl<F: Fn(SiteId) -> bool> SiteHealth for F {
    fn is_healthy(&self, site: SiteId) -> bool {
        self(site)
    }
}

/// How the caller wants the sites *inside* one region ordered (GeoIP nearness, weighted
/// rotation). It can never add a site or a region: it only ranks the allowed ones.
pub trait SitePreference {
    /// Lower ranks are tried first; equal ranks keep the topology's order.
    fn rank(&self, site: SiteId) -> u32;
}

/// Keep the topology's order.
pub struct ConfigOrder;

impl SitePreference for ConfigOrder {
    fn rank(&self, _site: SiteId) -> u32 {
        0
    }
}

/// Why a site is in a route; metrics and audit logs report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteReason {
    /// A site of the tenant's home region (or of the fallback region for tenant-less traffic).
    Home,
    /// The request's region hint named this replica region.
    HintedReplica(ReplicationMode),
    /// A replica site, tried only after every home site has failed.
    ReplicaFailover(ReplicationMode),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutedSite {
    pub site: SiteId,
    pub region: RegionId,
    pub reason: RouteReason,
}

/// Allowed sites in the order they should be tried. Never empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub home_region: RegionId,
    pub sites: SmallVec<[RoutedSite; MAX_INLINE_ROUTE]>,
    /// When the replication behind the replica sites ends. A request can outlive its decision
    /// (retries after timeouts), so callers re-check with [`Route::still_allows`].
    pub replicas_expire_at: Option<UnixTime>,
}

impl Route {
    /// Whether `routed` may still serve at `now`: home sites always, replica sites only until
    /// the replication expires.
    pub fn still_allows(&self, routed: &RoutedSite, now: UnixTime) -> bool {
        routed.reason == RouteReason::Home || self.replicas_expire_at.is_none_or(|end| now < end)
    }
}

/// Stable error codes from SPEC section 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockCode {
    TenantRequired,
    UnknownTenant,
    AmbiguousTenant,
    InvalidTenant,
    CrossRegionBlocked,
    RegionUnavailable,
    /// The request's Host is served another certificate than the TLS connection it came on.
    MisdirectedRequest,
    /// The request cannot be read one way only: a Host that is not `host[:port]`, two Hosts,
    /// a Host that disagrees with the target's authority, or broken framing.
    BadRequest,
    /// Fleet mode: the router has no registry yet (etcd down at start and no valid cache).
    /// Never routed to a default region instead.
    RegistryUnavailable,
}

impl BlockCode {
    pub const ALL: [BlockCode; 9] = [
        BlockCode::TenantRequired,
        BlockCode::UnknownTenant,
        BlockCode::AmbiguousTenant,
        BlockCode::InvalidTenant,
        BlockCode::CrossRegionBlocked,
        BlockCode::RegionUnavailable,
        BlockCode::MisdirectedRequest,
        BlockCode::BadRequest,
        BlockCode::RegistryUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BlockCode::TenantRequired => "tenant_required",
            BlockCode::UnknownTenant => "unknown_tenant",
            BlockCode::AmbiguousTenant => "ambiguous_tenant",
            BlockCode::InvalidTenant => "invalid_tenant",
            BlockCode::CrossRegionBlocked => "cross_region_blocked",
            BlockCode::RegionUnavailable => "region_unavailable",
            BlockCode::MisdirectedRequest => "misdirected_request",
            BlockCode::BadRequest => "bad_request",
            BlockCode::RegistryUnavailable => "registry_unavailable",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            BlockCode::TenantRequired
            | BlockCode::AmbiguousTenant
            | BlockCode::InvalidTenant
            | BlockCode::BadRequest => 400,
            BlockCode::UnknownTenant => 404,
            BlockCode::CrossRegionBlocked | BlockCode::MisdirectedRequest => 421,
            BlockCode::RegionUnavailable | BlockCode::RegistryUnavailable => 503,
        }
    }

    /// The human-readable half of the JSON error body.
    pub fn message(self) -> &'static str {
        match self {
            BlockCode::TenantRequired => {
                "no tenant found in the request; send it in a configured tenant source"
            }
            BlockCode::UnknownTenant => "tenant is not registered",
            BlockCode::AmbiguousTenant => "the request names more than one tenant",
            BlockCode::InvalidTenant => "tenant id must be 1 to 64 characters of a-z, 0-9 and '-'",
            BlockCode::CrossRegionBlocked => {
                "the requested region may not serve this tenant's request"
            }
            BlockCode::RegionUnavailable => {
                "no healthy backend in any region allowed for this tenant; retry later"
            }
            BlockCode::MisdirectedRequest => {
                "this connection's certificate does not cover the requested host; open a new \
                 connection to it"
            }
            BlockCode::BadRequest => {
                "the request is malformed: its framing, Host or target cannot be read one way only"
            }
            BlockCode::RegistryUnavailable => {
                "this router has not loaded the tenant registry yet (its registry store is unreachable); retry later"
            }
        }
    }
}

/// Why a request is not routed, with the context the error body reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub code: BlockCode,
    pub home_region: Option<RegionId>,
    pub requested_region: Option<RegionId>,
}

impl Block {
    pub fn new(code: BlockCode) -> Self {
        Block {
            code,
            home_region: None,
            requested_region: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Route(Route),
    Block(Block),
}

/// The replication this very request may use: enabled, unexpired, and its mode allows the
/// method.
pub fn usable_replication(
    record: &TenantRecord,
    method: MethodClass,
    now: UnixTime,
) -> Option<Replication> {
    record.replication.filter(|r| {
        r.is_active_at(now) && (r.mode == ReplicationMode::Active || method == MethodClass::Read)
    })
}

/// Decides where a request may go (SPEC sections 2 and 4).
///
/// Order of the returned sites:
/// - with a hint naming the home region: healthy home sites only;
/// - with a hint naming a replica region the request may use: healthy sites of that region only;
/// - without a hint: healthy home sites, then healthy sites of every replica region the request
///   may use, tagged [`RouteReason::ReplicaFailover`]. Callers try them in order, so a replica
///   only serves once every home site has failed for this request or is already unhealthy.
///
/// Inside each region, sites are ordered by `preference` (GeoIP nearness, weighted rotation);
/// regions keep the order above whatever the preference says.
#[allow(clippy::too_many_arguments)] // each is one independent fact about the request
pub fn decide(
    topology: &Topology,
    unknown: UnknownTenantPolicy,
    tenant: TenantLookup<'_>,
    method: MethodClass,
    hint: Option<RegionId>,
    health: &impl SiteHealth,
    preference: &impl SitePreference,
    now: UnixTime,
) -> Decision {
    let fallback_record;
    let record = match (tenant, unknown) {
        (TenantLookup::Known(_, record), _) => record,
        (TenantLookup::Absent, UnknownTenantPolicy::Reject) => {
            return Decision::Block(Block {
                requested_region: hint,
                ..Block::new(BlockCode::TenantRequired)
            })
        }
        (TenantLookup::Unknown(_), UnknownTenantPolicy::Reject) => {
            return Decision::Block(Block {
                requested_region: hint,
                ..Block::new(BlockCode::UnknownTenant)
            })
        }
        (_, UnknownTenantPolicy::Fallback(region)) => {
            fallback_record = TenantRecord {
                home: region,
                replication: None,
            };
            &fallback_record
        }
    };

    let home = record.home;
    let usable_replication = usable_replication(record, method, now);

    let mut route = Route {
        home_region: home,
        sites: SmallVec::new(),
        replicas_expire_at: usable_replication.and_then(|r| r.expires_at),
    };
    let mut push_region = |region: RegionId, reason: RouteReason| {
        let first = route.sites.len();
        for &site in &topology.region(region).sites {
            if health.is_healthy(site) {
                route.sites.push(RoutedSite {
                    site,
                    region,
                    reason,
                });
            }
        }
        // Order the region's sites by (rank, id); ids grow in topology order, so equal ranks
        // keep it. Each site is ranked once: a rank can be a GeoIP distance.
        let added = &mut route.sites[first..];
        if added.len() > 1 {
            if added.len() <= MAX_INLINE_ROUTE {
                let mut ranks = [0u32; MAX_INLINE_ROUTE];
                for (rank, routed) in ranks.iter_mut().zip(added.iter()) {
                    *rank = preference.rank(routed.site);
                }
                // Insertion sort: a region holds a handful of sites.
                for i in 1..added.len() {
                    let mut j = i;
                    while j > 0 && (ranks[j - 1], added[j - 1].site) > (ranks[j], added[j].site) {
                        ranks.swap(j - 1, j);
                        added.swap(j - 1, j);
                        j -= 1;
                    }
                }
            } else {
                added.sort_by_cached_key(|s| (preference.rank(s.site), s.site));
            }
        }
    };

    match hint {
        Some(requested) if requested == home => push_region(home, RouteReason::Home),
        Some(requested) => match usable_replication {
            Some(r) if r.regions.contains(requested) => {
                push_region(requested, RouteReason::HintedReplica(r.mode))
            }
            _ => {
                return Decision::Block(Block {
                    code: BlockCode::CrossRegionBlocked,
                    home_region: Some(home),
                    requested_region: Some(requested),
                })
            }
        },
        None => {
            push_region(home, RouteReason::Home);
            if let Some(r) = usable_replication {
                for region in r.regions.iter().filter(|&region| region != home) {
                    push_region(region, RouteReason::ReplicaFailover(r.mode));
                }
            }
        }
    }

    if route.sites.is_empty() {
        Decision::Block(Block {
            code: BlockCode::RegionUnavailable,
            home_region: Some(home),
            requested_region: hint,
        })
    } else {
        Decision::Route(route)
    }
}

#[cfg(test)]
mod tests;
