//! The peers the router is measured against, configured from the same tenant list to do the
//! same job: the tenant header names a tenant, the tenant's region names a pool of site
//! backends (round robin, keep-alive), an unknown tenant is rejected with 404 and a region
//! host of another region with 421. Each adds the headers the router adds for its backends
//! and writes an access log line per request. The tenants are those of
//! [`crate::scale::registry_json`], the router's registry in the harness.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use crate::scale::{home_region, tenant_id};

/// One site: its name, its region and its backend.
pub struct Site {
    pub name: &'static str,
    pub region: &'static str,
    pub addr: SocketAddr,
}

/// One `tenant region` line per tenant, each ending in `terminator`.
fn write_tenant_map(path: &Path, count: usize, terminator: &str) -> std::io::Result<()> {
    let mut map = String::with_capacity(count * 24);
    for i in 0..count {
        let _ = writeln!(map, "{} {}{terminator}", tenant_id(i), home_region(i));
    }
    std::fs::write(path, map)
}

fn regions(sites: &[Site]) -> Vec<&'static str> {
    let mut regions: Vec<&'static str> = sites.iter().map(|s| s.region).collect();
    regions.dedup();
    regions
}

/// nginx: a `map` from the tenant header to the region, another from the Host to a region
/// hint, and one upstream per region. `http` serves HTTP/1.1, `h2c` HTTP/2 with prior
/// knowledge (nginx cannot serve both on one plain port).
pub fn nginx_config(
    dir: &Path,
    count: usize,
    sites: &[Site],
    http: SocketAddr,
    h2c: SocketAddr,
    workers: usize,
) -> std::io::Result<std::path::PathBuf> {
    write_tenant_map(&dir.join("tenants.nginx"), count, ";")?;
    let mut upstreams = String::new();
    let mut hints = String::new();
    for region in regions(sites) {
        let _ = writeln!(upstreams, "  upstream {region} {{");
        for site in sites.iter().filter(|s| s.region == region) {
            let _ = writeln!(upstreams, "    server {};", site.addr);
        }
        // Idle connections kept per worker, as `proxy.upstream_keepalive_pool` for the router:
        // above the harness's largest client concurrency.
        upstreams.push_str("    keepalive 1024;\n  }\n");
        let _ = writeln!(hints, "    {region}.api.example.com {region};");
    }
    let path = dir.join("nginx.conf");
    let dir = dir.display();
    let conf = format!(
        r#"worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
  log_format residency '$time_iso8601 $request_id $http_x_tenant_id $region $status $upstream_addr $request_time $body_bytes_sent';
  access_log {dir}/nginx-access.log residency buffer=64k;
  keepalive_requests 100000000;
  http2_max_requests 100000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  map_hash_max_size {hash};
  map_hash_bucket_size 128;
  map $http_x_tenant_id $region {{
    default "";
    include {dir}/tenants.nginx;
  }}
  map $host $hint {{
    default "";
{hints}  }}
  map "$region/$hint" $verdict {{
    "~^/" unknown;
    "~^[a-z]+/$" route;
    "~^([a-z]+)/\1$" route;
    default cross;
  }}
{upstreams}
  server {{
    listen {http};
    listen {h2c} http2;
    location / {{
      default_type application/json;
      if ($verdict = unknown) {{ return 404 '{{"error":"unknown_tenant"}}'; }}
      if ($verdict = cross) {{ return 421 '{{"error":"cross_region_blocked"}}'; }}
      proxy_pass http://$region;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header x-residency-tenant $http_x_tenant_id;
      proxy_set_header x-residency-region $region;
      proxy_set_header x-request-id $request_id;
      proxy_set_header x-forwarded-for $proxy_add_x_forwarded_for;
      proxy_set_header x-forwarded-proto $scheme;
      add_header x-request-id $request_id always;
    }}
  }}
}}
"#,
        hash = (count * 2).max(1024),
    );
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// HAProxy: a map file from the tenant header to the region and one from the Host to a
/// region hint; one backend per region. `http` serves HTTP/1.1, `h2c` HTTP/2 with prior
/// knowledge. Access log lines go to standard output (redirected to a file).
pub fn haproxy_config(
    dir: &Path,
    count: usize,
    sites: &[Site],
    http: SocketAddr,
    h2c: SocketAddr,
    workers: usize,
) -> std::io::Result<std::path::PathBuf> {
    write_tenant_map(&dir.join("tenants.map"), count, "")?;
    let mut backends = String::new();
    let mut hints = String::new();
    for region in regions(sites) {
        let _ = writeln!(backends, "backend {region}\n  balance roundrobin");
        for site in sites.iter().filter(|s| s.region == region) {
            let _ = writeln!(backends, "  server {} {}", site.name, site.addr);
        }
        let _ = writeln!(hints, "{region}.api.example.com {region}");
    }
    std::fs::write(dir.join("hosts.map"), hints)?;
    let path = dir.join("haproxy.cfg");
    let dir = dir.display();
    let conf = format!(
        r#"global
  nbthread {workers}
  maxconn 8000
  log stdout format raw local0

defaults
  mode http
  log global
  option httplog
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s

frontend edge
  bind {http}
  bind {h2c} proto h2
  unique-id-format %{{+X}}o\ %ci%cp%fp%Ts%rt%pid
  http-request set-var(txn.region) req.hdr(x-tenant-id),map({dir}/tenants.map)
  http-request set-var(txn.hint) req.hdr(host),field(1,:),lower,map({dir}/hosts.map)
  http-request return status 404 content-type application/json string '{{"error":"unknown_tenant"}}' if !{{ var(txn.region) -m found }}
  http-request return status 421 content-type application/json string '{{"error":"cross_region_blocked"}}' if {{ var(txn.hint) -m found }} !{{ var(txn.hint),strcmp(txn.region) eq 0 }}
  http-request del-header x-residency-tenant
  http-request set-header x-residency-tenant %[req.hdr(x-tenant-id)]
  http-request set-header x-residency-region %[var(txn.region)]
  http-request set-header x-request-id %[unique-id]
  http-response set-header x-request-id %[unique-id]
  option forwardfor
  http-request add-header x-forwarded-proto http
  use_backend %[var(txn.region)]

{backends}"#
    );
    std::fs::write(&path, conf)?;
    Ok(path)
}
