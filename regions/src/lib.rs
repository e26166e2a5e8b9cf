//! The residency engine: who lives where, and where a request may go.
//!
//! Everything here is pure: no I/O, no clocks, no Pingora. The router feeds it facts about a
//! request (tenant record, method, region hint, site health, the current time) and gets back a
//! [`Decision`]: either an ordered list of sites, every one of them allowed by the residency rule,
//! or a [`Block`] with the error code the client sees.
//!
//! The residency rule (SPEC section 2): a request of tenant T only ever goes to region R when
//! R is T's home region, or R is a replica region of T whose replication is enabled, unexpired
//! and whose mode allows the request method. [`decide`] is the only place that turns a tenant
//! into regions, so the rule lives in one function and its property test.

mod decision;
mod geo;
mod identify;
mod reading;
mod tenant;
mod topology;

pub use decision::{
    decide, usable_replication, Block, BlockCode, ConfigOrder, Decision, MethodClass, Route,
    RouteReason, RoutedSite, SiteHealth, SitePreference, TenantLookup, UnknownTenantPolicy,
    MAX_INLINE_ROUTE,
};
pub use geo::great_circle_km;
pub use identify::{
    is_normalized_path, HeaderValues, HostPattern, Identified, IdentifyError, PathPattern,
    PatternError, SourceKind, TenantIdentifier, TenantSource,
};
pub use reading::{is_plain_authority, lenient_path};
pub use tenant::{
    InvalidTenantId, RegionSet, Replication, ReplicationMode, TenantId, TenantRecord, UnixTime,
    MAX_TENANT_ID_LEN,
};
pub use topology::{normalize_host, Region, RegionId, Site, SiteId, Topology, TopologyError};
