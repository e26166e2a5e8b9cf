//! A registry of any size for the scale measures (`registry-scale`, the engine benchmarks):
//! the demo's four sites, tenants `tenant-0000000` onwards, one in ten replicating.

use std::fmt::Write as _;
use std::path::Path;

/// The config the scale measures load: the header source only, the demo's regions and sites.
pub const CONFIG: &str = r#"
[listen]
http = "127.0.0.1:8080"

[tenancy]
sources  = [ { header = "x-tenant-id" } ]
unknown  = "reject"
registry = "tenants.json"

[[regions]]
name = "us"
hosts = ["us.api.example.com"]
  [[regions.sites]]
  name = "virginia"
  lat = 38.9
  lon = -77.4
  backends = ["127.0.0.1:9101", "127.0.0.1:9102"]
  [[regions.sites]]
  name = "oregon"
  lat = 45.8
  lon = -119.7
  backends = ["127.0.0.1:9111"]

[[regions]]
name = "eu"
hosts = ["eu.api.example.com"]
  [[regions.sites]]
  name = "frankfurt"
  lat = 50.1
  lon = 8.7
  backends = ["127.0.0.1:9201"]
  [[regions.sites]]
  name = "dublin"
  lat = 53.3
  lon = -6.3
  backends = ["127.0.0.1:9211"]
"#;

pub fn tenant_id(i: usize) -> String {
    format!("tenant-{i:07}")
}

/// The `k`th of a set of tenant indexes spread over a registry of `tenants` (a prime stride),
/// so that lookups touch the whole table as real traffic would.
pub fn spread(k: usize, tenants: usize) -> usize {
    (k * 7919) % tenants
}

/// Even tenants live in `us`, odd ones in `eu`.
pub fn home_region(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "us"
    } else {
        "eu"
    }
}

/// Writes `tenants` tenants to `path`; returns the file's size.
pub fn write_registry(path: &Path, tenants: usize) -> usize {
    let json = registry_json(tenants);
    std::fs::write(path, &json).unwrap();
    json.len()
}

/// A registry of `tenants` tenants. One tenant in ten (ids divisible by 10) replicates
/// read-only to the other region, half of those with an expiry.
pub fn registry_json(tenants: usize) -> String {
    // Ten years from now: a fixed calendar date would expire these replications one day and
    // change what the benchmarks measure.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let expires_at = residency_config::rfc3339(regions::UnixTime(now + 10 * 365 * 86_400));
    let mut json = String::with_capacity(tenants * 64);
    json.push_str("{ \"tenants\": [\n");
    for i in 0..tenants {
        let home = home_region(i);
        let other = if home == "us" { "eu" } else { "us" };
        let _ = write!(
            json,
            "{{ \"id\": \"{}\", \"region\": \"{home}\"",
            tenant_id(i)
        );
        if i % 10 == 0 {
            let expiry = if i % 20 == 0 {
                format!(", \"expires_at\": \"{expires_at}\"")
            } else {
                String::new()
            };
            let _ = write!(json, ", \"replication\": {{ \"regions\": [\"{other}\"], \"mode\": \"read-replica\"{expiry} }}");
        }
        json.push_str(if i + 1 == tenants { " }\n" } else { " },\n" });
    }
    json.push_str("] }\n");
    json
}
