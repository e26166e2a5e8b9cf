use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use regions::{RegionId, SiteId, Topology};
use residency_config::Snapshot;

use crate::clock::Clock;
use crate::health::HealthStates;
use crate::metrics::{Handles, Metrics};
use crate::pools::Pools;
use crate::preference::SiteRotation;

/// Everything one request reads, loaded once at its start and kept for its whole life
/// (retries included), so a later swap never mixes two configurations in one request.
pub struct RouterState {
    pub snapshot: Arc<Snapshot>,
    pub pools: Pools,
    pub rotation: SiteRotation,
    /// Metric handles for this configuration's regions and sites.
    pub metrics: Handles,
    /// The router's metric families, which every configuration it serves records into.
    pub families: Arc<Metrics>,
    /// The router's clock, the same for every configuration.
    pub clock: Clock,
    pub names: NameValues,
    /// 1 for the configuration the process started with, +1 per applied reload.
    pub generation: u64,
    /// `Retry-After` on 503s: the longest health-check interval, by when a check may have
    /// found a backend again.
    pub retry_after_secs: u64,
}

impl RouterState {
    pub fn new(
        snapshot: Snapshot,
        health: &HealthStates,
        families: &Arc<Metrics>,
        clock: &Clock,
    ) -> Self {
        let retry_after_secs = snapshot
            .sites
            .iter()
            .map(|s| s.health.interval.as_secs_f64().ceil() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        RouterState {
            pools: Pools::new(&snapshot, health, clock),
            rotation: SiteRotation::new(&snapshot),
            metrics: Handles::new(&snapshot, families),
            families: Arc::clone(families),
            clock: clock.clone(),
            names: NameValues::new(&snapshot.topology),
            generation: 1,
            snapshot: Arc::new(snapshot),
            retry_after_secs,
        }
    }
}

/// Region and site names as header values, built once per configuration: a request shares
/// them (a reference count) instead of copying each name into a new header buffer.
pub struct NameValues {
    regions: Vec<HeaderValue>,
    sites: Vec<HeaderValue>,
}

impl NameValues {
    fn new(topology: &Topology) -> Self {
        let value = |name: &str| {
            HeaderValue::from_str(name).expect("validated region and site names are header-safe")
        };
        NameValues {
            regions: topology.regions().map(|(_, r)| value(&r.name)).collect(),
            sites: topology.sites().map(|(_, s)| value(&s.name)).collect(),
        }
    }

    pub fn region(&self, id: RegionId) -> HeaderValue {
        self.regions[usize::from(id.0)].clone()
    }

    pub fn site(&self, id: SiteId) -> HeaderValue {
        self.sites[usize::from(id.0)].clone()
    }
}

/// The swappable pointer to the current state. Reloads and admin changes store a new one.
pub type SharedState = Arc<ArcSwap<RouterState>>;

pub fn shared(
    snapshot: Snapshot,
    health: &HealthStates,
    families: &Arc<Metrics>,
    clock: &Clock,
) -> SharedState {
    Arc::new(ArcSwap::from_pointee(RouterState::new(
        snapshot, health, families, clock,
    )))
}
