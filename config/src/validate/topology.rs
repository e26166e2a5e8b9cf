//! `[[regions]]`: regions, their hosts and sites, and each site's backends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use regions::{Topology, TopologyError};

use crate::error::code;
use crate::file::{BackendFile, BalanceFile, ConfigFile};
use crate::snapshot::{Backend, Balance, HealthSettings, SiteConfig};

use super::health::health;
use super::tls::upstream_tls;
use super::{is_hostname, is_name, socket_addr, Problems};

pub(super) fn topology(
    file: &ConfigFile,
    config_path: &Path,
    health_defaults: &HealthSettings,
    problems: &mut Problems<'_>,
) -> (Topology, Vec<SiteConfig>) {
    if file.regions.is_empty() {
        problems.add(
            code::MISSING_SETTING,
            "regions",
            "no region is configured",
            "add at least one [[regions]] table with one site",
        );
    }
    if file.regions.len() > Topology::MAX_REGIONS {
        problems.add(
            code::OUT_OF_RANGE,
            "regions",
            format!("{} regions configured", file.regions.len()),
            format!("configure at most {} regions", Topology::MAX_REGIONS),
        );
        return (Topology::default(), Vec::new());
    }

    let mut region_index: HashMap<&str, usize> = HashMap::new();
    let mut site_owner: HashMap<&str, &str> = HashMap::new();
    let mut host_owner: HashMap<String, &str> = HashMap::new();
    let mut backend_owner: HashMap<SocketAddr, String> = HashMap::new();
    // What goes into the topology: a problem is reported once and the offending item is left
    // out, never its whole region, so later checks (tenants naming the region) stay accurate.
    let mut accepted = Vec::new();
    let mut site_configs: Vec<SiteConfig> = Vec::new();

    for (r, region) in file.regions.iter().enumerate() {
        let at = format!("regions[{r}]");
        let name = region.name.as_str();
        let mut region_ok = true;
        if !is_name(name) {
            problems.add(
                code::INVALID_NAME,
                format!("{at}.name"),
                format!("`{name}` is not a valid region name"),
                "use 1 to 32 characters of a-z, 0-9 and '-'",
            );
            region_ok = false;
        } else if let Some(first) = region_index.get(name) {
            problems.add(
                code::DUPLICATE_NAME,
                format!("{at}.name"),
                format!("region `{name}` is already defined at regions[{first}]"),
                "give every region a unique name, or merge the two tables",
            );
            region_ok = false;
        } else {
            region_index.insert(name, r);
        }

        let mut hosts = Vec::new();
        for (h, host) in region.hosts.iter().enumerate() {
            let host = host.to_ascii_lowercase();
            if !is_hostname(&host) {
                problems.add(
                    code::INVALID_NAME,
                    format!("{at}.hosts[{h}]"),
                    format!("`{host}` is not a host name"),
                    "write a bare host name such as `eu.api.example.com` (no scheme, port or path)",
                );
            } else if let Some(owner) = host_owner.get(&host) {
                problems.add(
                    code::DUPLICATE_NAME,
                    format!("{at}.hosts[{h}]"),
                    format!("host `{host}` already names region `{owner}`"),
                    "a region host must name exactly one region",
                );
            } else {
                host_owner.insert(host.clone(), name);
                hosts.push(host);
            }
        }

        if region.sites.is_empty() {
            problems.add(
                code::MISSING_SETTING,
                format!("{at}.sites"),
                format!("region `{name}` has no site"),
                "add at least one [[regions.sites]] table with backends",
            );
        }
        let mut sites = Vec::new();
        let mut region_sites = Vec::new();
        for (s, site) in region.sites.iter().enumerate() {
            let at = format!("{at}.sites[{s}]");
            let mut site_ok = true;
            if !is_name(&site.name) {
                problems.add(
                    code::INVALID_NAME,
                    format!("{at}.name"),
                    format!("`{}` is not a valid site name", site.name),
                    "use 1 to 32 characters of a-z, 0-9 and '-'",
                );
                site_ok = false;
            } else if let Some(owner) = site_owner.get(site.name.as_str()) {
                problems.add(
                    code::DUPLICATE_NAME,
                    format!("{at}.name"),
                    format!(
                        "site `{}` is already defined in region `{owner}`",
                        site.name
                    ),
                    "a site belongs to exactly one region: rename one of them",
                );
                site_ok = false;
            } else {
                site_owner.insert(&site.name, name);
            }
            if !(-90.0..=90.0).contains(&site.lat) {
                problems.add(
                    code::OUT_OF_RANGE,
                    format!("{at}.lat"),
                    format!("latitude {} is out of range", site.lat),
                    "use a latitude between -90 and 90",
                );
            }
            if !(-180.0..=180.0).contains(&site.lon) {
                problems.add(
                    code::OUT_OF_RANGE,
                    format!("{at}.lon"),
                    format!("longitude {} is out of range", site.lon),
                    "use a longitude between -180 and 180",
                );
            }
            if site.backends.is_empty() {
                problems.add(
                    code::MISSING_SETTING,
                    format!("{at}.backends"),
                    format!("site `{}` has no backend", site.name),
                    "list at least one `ip:port` in backends",
                );
            }
            let mut backends = Vec::new();
            for (b, backend) in site.backends.iter().enumerate() {
                let at = format!("{at}.backends[{b}]");
                let (configured, weight) = match backend {
                    BackendFile::Address(address) => (address, 1),
                    BackendFile::Weighted(w) => (&w.address, w.weight),
                };
                if !(1..=1000).contains(&weight) {
                    problems.add(
                        code::OUT_OF_RANGE,
                        format!("{at}.weight"),
                        format!("weight {weight} is out of range"),
                        "use a weight from 1 to 1000",
                    );
                }
                let Some(addr) = socket_addr(configured, &at, problems) else {
                    continue;
                };
                if let Some(first) = backend_owner.get(&addr) {
                    problems.add(
                        code::DUPLICATE_ENTRY,
                        at,
                        format!("backend {addr} is already a backend of site `{first}`"),
                        "a backend belongs to exactly one site: remove one of the entries",
                    );
                    continue;
                }
                backend_owner.insert(addr, format!("{name}/{}", site.name));
                backends.push(Backend {
                    configured: configured.clone(),
                    addr,
                    weight: weight.clamp(1, 1000),
                });
            }
            let health = match &site.health {
                Some(overrides) => health(
                    health_defaults,
                    overrides,
                    &format!("{at}.health"),
                    problems,
                ),
                None => health_defaults.clone(),
            };
            if site_ok {
                sites.push((site.name.clone(), site.lat, site.lon));
                region_sites.push(SiteConfig {
                    backends,
                    balance: match site.balance {
                        None | Some(BalanceFile::WeightedRoundRobin) => Balance::WeightedRoundRobin,
                        Some(BalanceFile::LeastInFlight) => Balance::LeastInFlight,
                    },
                    health,
                    tls: site.tls.as_ref().and_then(|tls| {
                        upstream_tls(tls, config_path, &format!("{at}.tls"), problems)
                    }),
                });
            }
        }
        if region_ok {
            // Site ids are assigned in this same order, so site configs stay aligned with them.
            site_configs.extend(region_sites);
            accepted.push((name, hosts, sites));
        }
    }

    match Topology::new(accepted) {
        Ok(topology) => (topology, site_configs),
        Err(e) => {
            // Validation above reports these first, with their places: this is the last guard.
            let code = match e {
                TopologyError::TooManyRegions | TopologyError::TooManySites => code::OUT_OF_RANGE,
                TopologyError::DuplicateRegion(_)
                | TopologyError::DuplicateSite(_)
                | TopologyError::DuplicateHost { .. } => code::DUPLICATE_NAME,
            };
            problems.add(
                code,
                "regions",
                e.to_string(),
                "fix the regions and sites named above",
            );
            (Topology::default(), Vec::new())
        }
    }
}
