//! Regions and the sites (data centres) inside them.

use thiserror::Error;

/// Index of a region in its [`Topology`]. Stable for the life of one topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u8);

/// Index of a site in its [`Topology`] (global across regions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub u16);

/// A residency boundary, e.g. `eu`.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub name: String,
    /// Lowercased hosts that name this region (`eu.api.example.com`): a region hint.
    pub hosts: Vec<String>,
    /// Sites in configured order; this is the default preference order inside the region.
    pub sites: Vec<SiteId>,
}

/// A data centre inside exactly one region.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    pub name: String,
    pub region: RegionId,
    pub lat: f64,
    pub lon: f64,
}

/// The region/site map. Built once per config snapshot and never mutated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    regions: Vec<Region>,
    sites: Vec<Site>,
}

#[derive(Debug, Error, PartialEq)]
pub enum TopologyError {
    #[error("more than {max} regions; region sets are 64-bit masks", max = Topology::MAX_REGIONS)]
    TooManyRegions,
    #[error("more than {} sites", u16::MAX)]
    TooManySites,
    #[error("region `{0}` is defined twice")]
    DuplicateRegion(String),
    #[error("site `{0}` is defined twice")]
    DuplicateSite(String),
    #[error("host `{host}` names both region `{first}` and region `{second}`")]
    DuplicateHost {
        host: String,
        first: String,
        second: String,
    },
}

impl Topology {
    pub const MAX_REGIONS: usize = 64;

    /// Builds a topology from `(region name, hosts, sites)` triples.
    /// Config validation reports these problems with locations first; this is the last guard.
    pub fn new<'a, I, H>(regions: I) -> Result<Self, TopologyError>
    where
        I: IntoIterator<Item = (&'a str, H, Vec<(String, f64, f64)>)>,
        H: IntoIterator,
        H::Item: AsRef<str>,
    {
        let mut topology = Topology::default();
        for (name, hosts, sites) in regions {
            if topology.regions.len() == Self::MAX_REGIONS {
                return Err(TopologyError::TooManyRegions);
            }
            if topology.region_by_name(name).is_some() {
                return Err(TopologyError::DuplicateRegion(name.to_owned()));
            }
            let region_id = RegionId(topology.regions.len() as u8);
            let mut normalized_hosts = Vec::new();
            for host in hosts {
                let host = host.as_ref().to_ascii_lowercase();
                if let Some(other) = topology.region_for_host(&host) {
                    return Err(TopologyError::DuplicateHost {
                        host,
                        first: topology.region(other).name.clone(),
                        second: name.to_owned(),
                    });
                }
                normalized_hosts.push(host);
            }
            let mut site_ids = Vec::with_capacity(sites.len());
            for (site_name, lat, lon) in sites {
                if topology.site_by_name(&site_name).is_some() {
                    return Err(TopologyError::DuplicateSite(site_name));
                }
                let id =
                    u16::try_from(topology.sites.len()).map_err(|_| TopologyError::TooManySites)?;
                site_ids.push(SiteId(id));
                topology.sites.push(Site {
                    name: site_name,
                    region: region_id,
                    lat,
                    lon,
                });
            }
            topology.regions.push(Region {
                name: name.to_owned(),
                hosts: normalized_hosts,
                sites: site_ids,
            });
        }
        Ok(topology)
    }

    pub fn regions(&self) -> impl ExactSizeIterator<Item = (RegionId, &Region)> {
        self.regions
            .iter()
            .enumerate()
            .map(|(i, r)| (RegionId(i as u8), r))
    }

    pub fn sites(&self) -> impl ExactSizeIterator<Item = (SiteId, &Site)> {
        self.sites
            .iter()
            .enumerate()
            .map(|(i, s)| (SiteId(i as u16), s))
    }

    /// # Panics
    /// When `id` does not come from this topology (a broken invariant, not bad input).
    pub fn region(&self, id: RegionId) -> &Region {
        &self.regions[usize::from(id.0)]
    }

    /// # Panics
    /// When `id` does not come from this topology.
    pub fn site(&self, id: SiteId) -> &Site {
        &self.sites[usize::from(id.0)]
    }

    pub fn region_by_name(&self, name: &str) -> Option<RegionId> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| RegionId(i as u8))
    }

    pub fn site_by_name(&self, name: &str) -> Option<SiteId> {
        self.sites
            .iter()
            .position(|s| s.name == name)
            .map(|i| SiteId(i as u16))
    }

    /// The region a request's Host names, if it is a configured region host.
    /// `host` may carry a port and a trailing dot; comparison ignores ASCII case.
    pub fn region_for_host(&self, host: &str) -> Option<RegionId> {
        let host = normalize_host(host);
        self.regions
            .iter()
            .position(|r| r.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
            .map(|i| RegionId(i as u8))
    }
}

/// Strips the port and a trailing dot from a Host / :authority value, without allocating.
/// `[::1]:8080` -> `[::1]`, `eu.api.example.com.:80` -> `eu.api.example.com`.
pub fn normalize_host(host: &str) -> &str {
    let without_port = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..colon],
            _ => host,
        }
    };
    without_port.strip_suffix('.').unwrap_or(without_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_by_two() -> Topology {
        let us_hosts = vec!["us.api.example.com".to_owned()];
        let eu_hosts = vec!["EU.api.example.com".to_owned()];
        Topology::new([
            (
                "us",
                us_hosts.as_slice(),
                vec![
                    ("virginia".into(), 38.9, -77.4),
                    ("oregon".into(), 45.8, -119.7),
                ],
            ),
            (
                "eu",
                eu_hosts.as_slice(),
                vec![
                    ("frankfurt".into(), 50.1, 8.7),
                    ("dublin".into(), 53.3, -6.3),
                ],
            ),
        ])
        .unwrap()
    }

    #[test]
    fn ids_follow_configuration_order() {
        let t = two_by_two();
        assert_eq!(t.region_by_name("eu"), Some(RegionId(1)));
        assert_eq!(t.site_by_name("dublin"), Some(SiteId(3)));
        assert_eq!(t.site(SiteId(3)).region, RegionId(1));
        assert_eq!(t.region(RegionId(0)).sites, vec![SiteId(0), SiteId(1)]);
    }

    #[test]
    fn region_hosts_match_case_insensitively_with_port_and_trailing_dot() {
        let t = two_by_two();
        assert_eq!(t.region_for_host("eu.api.example.com"), Some(RegionId(1)));
        assert_eq!(
            t.region_for_host("Eu.Api.Example.Com:8443"),
            Some(RegionId(1))
        );
        assert_eq!(t.region_for_host("us.api.example.com."), Some(RegionId(0)));
        assert_eq!(t.region_for_host("api.example.com"), None);
        assert_eq!(t.region_for_host("xeu.api.example.com"), None);
    }

    #[test]
    fn normalize_host_handles_ipv6_and_ports() {
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("example.com:80"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("example.com"), "example.com");
    }

    #[test]
    fn duplicates_are_rejected() {
        let none: Vec<String> = vec![];
        let dup_site = Topology::new([
            ("us", none.as_slice(), vec![("a".into(), 0.0, 0.0)]),
            ("eu", none.as_slice(), vec![("a".into(), 0.0, 0.0)]),
        ]);
        assert_eq!(dup_site, Err(TopologyError::DuplicateSite("a".into())));
        let dup_region = Topology::new([
            ("us", none.as_slice(), vec![]),
            ("us", none.as_slice(), vec![]),
        ]);
        assert_eq!(dup_region, Err(TopologyError::DuplicateRegion("us".into())));
        let h = vec!["x.example.com".to_owned()];
        let dup_host = Topology::new([("us", h.as_slice(), vec![]), ("eu", h.as_slice(), vec![])]);
        assert!(matches!(dup_host, Err(TopologyError::DuplicateHost { .. })));
    }
}
