//! One request's residency decision, from plain request facts: no Pingora types, so tests
//! and benchmarks drive exactly the code the proxy runs.

use std::net::IpAddr;

use regions::{
    decide, normalize_host, Block, Decision, HeaderValues, MethodClass, RegionId, Route,
    SourceKind, TenantId, TenantLookup, UnixTime,
};

use crate::preference::{GeoHint, RequestPreference};
use crate::state::RouterState;

/// What the decision needs to know about a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'r> {
    /// Host header, or the authority of an absolute-form target; port and case as sent.
    pub host: Option<&'r str>,
    /// The path, without the query.
    pub path: &'r str,
    pub method: &'r str,
    /// The request asks for a protocol upgrade (WebSocket).
    pub upgrade: bool,
    /// The socket peer.
    pub peer: Option<IpAddr>,
    /// `Some` for requests on `listen.https`: the server name the client sent, if any.
    pub tls: Option<TlsFacts<'r>>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TlsFacts<'r> {
    pub server_name: Option<&'r str>,
}

/// The decision and what was learnt on the way (kept for headers, errors and logs).
#[derive(Debug)]
pub struct Routed {
    pub tenant: Option<TenantId>,
    /// Which source named the tenant.
    pub source: Option<SourceKind>,
    /// The tenant is in the registry (only then do backends get `x-residency-tenant`).
    pub registered: bool,
    pub hint: Option<RegionId>,
    pub strip_path_prefix: Option<usize>,
    /// The address GeoIP located (SPEC 6), and what it said.
    pub client: Option<IpAddr>,
    pub geo: Option<GeoHint>,
    pub decision: Result<Route, Block>,
}

/// Identification, registry lookup, GeoIP preference and `regions::decide`, in that order.
/// Records nothing: the proxy counts, `POST /v1/explain` only looks.
pub fn route<'r>(
    state: &RouterState,
    facts: &RequestFacts<'r>,
    header: impl Fn(&str) -> HeaderValues<'r>,
    forwarded_for: impl DoubleEndedIterator<Item = &'r [u8]>,
    now: UnixTime,
) -> Routed {
    let snapshot = &state.snapshot;
    // An empty Host is no Host (RFC 9112 3.2); any other that is not `host[:port]` is read
    // differently by different servers (`globex.app.example.com:x` is globex to Express and
    // no tenant to a strict reader), so it is refused rather than read as "no Host".
    let host = facts.host.filter(|h| !h.is_empty());
    let mut routed = Routed {
        tenant: None,
        source: None,
        registered: false,
        hint: None,
        strip_path_prefix: None,
        client: None,
        geo: None,
        decision: Err(Block::new(regions::BlockCode::TenantRequired)),
    };
    if host.is_some_and(|h| !regions::is_plain_authority(h)) {
        routed.decision = Err(Block::new(regions::BlockCode::BadRequest));
        return routed;
    }
    let host = host.map(normalize_host);
    let hint = host.and_then(|h| snapshot.topology.region_for_host(h));
    routed.hint = hint;
    // A region host is a region hint, never a tenant id.
    let tenant_host = if hint.is_some() { None } else { host };
    if let Some(tls) = facts.tls {
        // The connection was authenticated with the certificate of its server name; a request
        // for a host that certificate does not cover belongs on another connection.
        let certificates = &snapshot.tls.certificates;
        if host.is_some() && !certificates.same_certificate(tls.server_name, host) {
            routed.decision = Err(Block {
                requested_region: hint,
                ..Block::new(regions::BlockCode::MisdirectedRequest)
            });
            return routed;
        }
    }
    let sni = facts
        .tls
        .and_then(|tls| tls.server_name)
        .map(normalize_host);
    let tenant_sni = sni.filter(|name| snapshot.topology.region_for_host(name).is_none());
    let identified = match snapshot
        .identifier
        .identify(tenant_host, tenant_sni, facts.path, header)
    {
        Ok(identified) => identified,
        Err(e) => {
            routed.decision = Err(Block {
                requested_region: hint,
                ..Block::new(e.code())
            });
            return routed;
        }
    };
    let tenant = identified.tenant.map(|(id, _)| id);
    let client = facts
        .peer
        .map(|peer| geoip::client_address(peer, forwarded_for, &snapshot.proxy.trusted_proxies));
    let geo = client.and_then(|ip| GeoHint::lookup(snapshot, ip));
    let method = MethodClass::of(facts.method, facts.upgrade);
    let (decision, registered) = decide_for(state, tenant, method, hint, geo, now);
    routed.tenant = tenant;
    routed.source = identified.tenant.map(|(_, source)| source);
    routed.registered = registered;
    routed.strip_path_prefix = identified.strip_path_prefix;
    routed.client = client;
    routed.geo = geo;
    routed.decision = match decision {
        Decision::Route(route) => Ok(route),
        Decision::Block(block) => Err(block),
    };
    routed
}

/// The step of [`route`] after identification: registry lookup and `regions::decide`, with
/// the live health view and the site preference. Also returns whether the tenant is in the
/// registry. Public so the benchmarks measure this very code.
pub fn decide_for(
    state: &RouterState,
    tenant: Option<TenantId>,
    method: MethodClass,
    hint: Option<RegionId>,
    geo: Option<GeoHint>,
    now: UnixTime,
) -> (Decision, bool) {
    let snapshot = &state.snapshot;
    let status = snapshot.registry_status;
    if tenant.is_some() && !status.loaded {
        let block = regions::Block::new(regions::BlockCode::RegistryUnavailable);
        return (Decision::Block(block), false);
    }
    let mut record = tenant.and_then(|id| snapshot.registry.get(&id));
    if status.replication_suspended {
        // Staleness only takes privileges away: a replication exception revoked while this
        // router could not hear of it must not stay usable indefinitely; home regions stay.
        if let Some(record) = &mut record {
            record.replication = None;
        }
    }
    let lookup = match (tenant, &record) {
        (None, _) => TenantLookup::Absent,
        (Some(id), Some(record)) => TenantLookup::Known(id, record),
        (Some(id), None) => TenantLookup::Unknown(id),
    };
    let preference = RequestPreference::new(&snapshot.topology, &state.rotation, geo);
    let decision = decide(
        &snapshot.topology,
        snapshot.unknown,
        lookup,
        method,
        hint,
        &state.pools.view(),
        &preference,
        now,
    );
    (decision, record.is_some())
}
