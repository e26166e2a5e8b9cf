//! Router configs for the demo's 2x2 topology (two regions of two sites), written to disk.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The shipped example registry; the demo serves exactly these tenants.
pub const DEMO_TENANTS: &str = include_str!("../../config/examples/tenants.json");

/// The demo's sites: (region, site, lat, lon).
pub const DEMO_SITES: [(&str, &str, f64, f64); 4] = [
    ("us", "virginia", 38.9, -77.4),
    ("us", "oregon", 45.8, -119.7),
    ("eu", "frankfurt", 50.1, 8.7),
    ("eu", "dublin", 53.3, -6.3),
];

/// Writes a router config for the 2x2 topology: header source first, then host and path
/// sources, region hosts `us.api.example.com` / `eu.api.example.com`, `expose_decision = true`.
/// `other_listeners` are further `[listen]` entries (`("metrics", addr)`).
/// `backends[i]` serves `DEMO_SITES[i]`. `extra` follows the `[proxy]` lines verbatim and
/// `site_lines[i]` goes into site i's table (tests tune timeouts, health and balancing).
pub fn write_config(
    dir: &Path,
    listen: SocketAddr,
    other_listeners: &[(&str, SocketAddr)],
    backends: &[Vec<SocketAddr>],
    tenants_json: &str,
    extra: &str,
    site_lines: &[&str; 4],
) -> std::io::Result<PathBuf> {
    let others: String = other_listeners
        .iter()
        .map(|(name, addr)| format!("{name} = \"{addr}\"\n"))
        .collect();
    let mut toml = format!(
        r#"[listen]
http = "{listen}"
{others}

[tenancy]
sources  = [ {{ header = "x-tenant-id" }}, {{ host = "{{tenant}}.app.example.com" }}, {{ path = "/t/{{tenant}}/" }} ]
unknown  = "reject"
registry = "tenants.json"

[proxy]
expose_decision = true
{extra}
"#
    );
    for region in ["us", "eu"] {
        let _ = write!(
            toml,
            "\n[[regions]]\nname = \"{region}\"\nhosts = [\"{region}.api.example.com\"]\n"
        );
        for (i, (site_region, site, lat, lon)) in DEMO_SITES.iter().enumerate() {
            if *site_region != region {
                continue;
            }
            let list: Vec<String> = backends[i].iter().map(|a| format!("\"{a}\"")).collect();
            let _ = write!(
                toml,
                "  [[regions.sites]]\n  name = \"{site}\"\n  lat = {lat}\n  lon = {lon}\n  backends = [{}]\n{}\n",
                list.join(", "),
                site_lines[i]
            );
        }
    }
    std::fs::write(dir.join("tenants.json"), tenants_json)?;
    let path = dir.join("router.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}
