//! How one request orders the sites inside each allowed region (SPEC 6).
//!
//! - City database: nearest site by great-circle distance to the client;
//! - Country database: the site configured for the client's country first;
//! - otherwise (no database, private address, lookup miss): weighted rotation across the
//!   region's sites, each site weighted by the sum of its backends' weights.
//!
//! Only the order inside a region changes; `regions::decide` keeps home before replicas and
//! never lets a preference add a site.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use geoip::Location;
use regions::{great_circle_km, RegionId, SiteId, SitePreference, Topology};
use residency_config::Snapshot;

use crate::pools::smooth_weighted_schedule;

/// Per region, the sites in smooth weighted round-robin order, and the region's own turn
/// counter (one shared counter would let periodic traffic, such as clients alternating a us
/// and an eu tenant, land on the same slot of every region forever).
pub struct SiteRotation {
    per_region: Vec<(Vec<SiteId>, AtomicUsize)>,
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
                let schedule = smooth_weighted_schedule(&weights)
                    .into_iter()
                    .map(|i| region.sites[i])
                    .collect();
                (schedule, AtomicUsize::new(0))
            })
            .collect();
        SiteRotation { per_region }
    }

    /// Takes the region's next turn.
    fn next(&self, region: RegionId) -> Option<SiteId> {
        let (schedule, turn) = &self.per_region[usize::from(region.0)];
        let ticket = turn.fetch_add(1, Ordering::Relaxed);
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
    topology: &'a Topology,
    rotation: &'a SiteRotation,
    pub geo: Option<GeoHint>,
    /// This request's turn in the region it asked about, drawn once on first use. Routes
    /// rank at most the home region and, rarely, a replica region: one slot suffices, and a
    /// second region simply draws its own turn.
    turn: Cell<Option<(RegionId, Option<SiteId>)>>,
}

impl<'a> RequestPreference<'a> {
    pub fn new(topology: &'a Topology, rotation: &'a SiteRotation, geo: Option<GeoHint>) -> Self {
        RequestPreference {
            topology,
            rotation,
            geo,
            turn: Cell::new(None),
        }
    }

    fn rotation_pick(&self, region: RegionId) -> Option<SiteId> {
        match self.turn.get() {
            Some((drawn, pick)) if drawn == region => pick,
            _ => {
                let pick = self.rotation.next(region);
                self.turn.set(Some((region, pick)));
                pick
            }
        }
    }
}

impl SitePreference for RequestPreference<'_> {
    fn rank(&self, site: SiteId) -> u32 {
        match self.geo {
            Some(GeoHint::Near { lat, lon }) => {
                let s = self.topology.site(site);
                great_circle_km((lat, lon), (s.lat, s.lon)) as u32
            }
            Some(GeoHint::Country(preferred)) if preferred == site => 0,
            _ if self.rotation_pick(self.topology.site(site).region) == Some(site) => 1,
            _ => 2,
        }
    }
}
