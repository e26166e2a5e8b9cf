//! How one request orders the sites inside each allowed region (SPEC 6).
//!
//! - City database: nearest site by great-circle distance to the client;
//! - Country database: the site configured for the client's country first;
//! - otherwise (no database, private address, lookup miss): weighted rotation across the
//!   region's sites, each site weighted by the sum of its backends' weights.
//!
//! Only the order inside a region changes; `regions::decide` keeps home before replicas and
//! never lets a preference add a site.

use std::net::IpAddr;

use config::Snapshot;
use geoip::Location;
use regions::{great_circle_km, SiteId, SitePreference, Topology};

use crate::pools::smooth_weighted_schedule;

/// Per region, the sites in smooth weighted round-robin order.
pub struct SiteRotation {
    per_region: Vec<Vec<SiteId>>,
}

impl SiteRotation {
    pub fn new(snapshot: &Snapshot) -> Self {
        let per_region = snapshot
            .topology
            .regions()
            .map(|(_, region)| {
                let weights: Vec<u32> = region
                    .sites
                    .iter()
                    .map(|&site| {
                        snapshot
                            .site(site)
                            .backends
                            .iter()
                            .map(|b| b.weight)
                            .sum::<u32>()
                            .max(1)
                    })
                    .collect();
                if weights.is_empty() {
                    return Vec::new();
                }
                smooth_weighted_schedule(&weights)
                    .into_iter()
                    .map(|i| region.sites[i])
                    .collect()
            })
            .collect();
        SiteRotation { per_region }
    }

    fn preferred(&self, topology: &Topology, site: SiteId, ticket: usize) -> Option<SiteId> {
        let schedule = &self.per_region[usize::from(topology.site(site).region.0)];
        (!schedule.is_empty()).then(|| schedule[ticket % schedule.len()])
    }
}

/// What GeoIP said about the client, resolved against this configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GeoHint {
    Near {
        lat: f64,
        lon: f64,
    },
    /// The site configured for the client's country.
    Country(SiteId),
}

impl GeoHint {
    /// `None` when GeoIP is off, the address is unknown, or its country has no site.
    pub fn lookup(snapshot: &Snapshot, client: IpAddr) -> Option<GeoHint> {
        let geoip = snapshot.geoip.as_ref()?;
        let database = geoip.database.current();
        match database.lookup(client)? {
            Location::Coordinates { lat, lon } => Some(GeoHint::Near { lat, lon }),
            Location::Country(code) => geoip.countries.get(code).copied().map(GeoHint::Country),
        }
    }
}

pub struct RequestPreference<'a> {
    pub topology: &'a Topology,
    pub rotation: &'a SiteRotation,
    pub geo: Option<GeoHint>,
    /// Per-request number that picks this request's place in the weighted rotation.
    pub ticket: usize,
}

impl SitePreference for RequestPreference<'_> {
    fn rank(&self, site: SiteId) -> u32 {
        match self.geo {
            Some(GeoHint::Near { lat, lon }) => {
                let s = self.topology.site(site);
                great_circle_km((lat, lon), (s.lat, s.lon)) as u32
            }
            Some(GeoHint::Country(preferred)) if preferred == site => 0,
            _ if self.rotation.preferred(self.topology, site, self.ticket) == Some(site) => 1,
            _ => 2,
        }
    }
}
