//! `residency-router demo`: four site backends and the router in one process (SPEC 9); with
//! `--fleet`, a 3-member etcd cluster on loopback and two routers sharing its registry.

use std::net::SocketAddr;

use residency_testkit::{write_config, SiteBackend, DEMO_SITES, DEMO_TENANTS};

/// Bearer tokens of the demo's admin API. Demo only: real tokens come from `token new`.
pub const DEMO_OPERATOR_TOKEN: &str = "demo-operator-token";
pub const DEMO_ACME_ADMIN_TOKEN: &str = "demo-acme-admin-token";

/// Runs the demo until interrupted.
pub fn run(listen: SocketAddr, admin: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let (runtime, backends) = start_backends()?;
    let addrs: Vec<Vec<SocketAddr>> = backends.iter().map(|b| vec![b.addr()]).collect();

    let dir = std::env::temp_dir().join(format!("residency-router-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let replica_ends = demo_replica_end(unix_now());
    let config_path = write_config(
        &dir,
        listen,
        &[("admin", admin)],
        &addrs,
        &demo_tenants(replica_ends),
        &admin_tables(),
        &[""; 4],
    )?;
    let mut snapshot = residency_config::load(&config_path).map_err(|e| e.to_string())?;
    // Ctrl-C should end the demo promptly.
    snapshot.server.shutdown_grace = std::time::Duration::from_secs(1);

    for b in &backends {
        println!(
            "site backend {:<9} ({}) on http://{}",
            b.site(),
            b.region(),
            b.addr()
        );
    }
    println!("config written to {}", config_path.display());
    print_curl_commands(
        listen,
        admin,
        &residency_config::rfc3339(replica_ends)[..10],
    );

    crate::server::run(snapshot, crate::server::Launch::demo())?;
    let _ = std::fs::remove_dir_all(&dir);
    drop(runtime);
    Ok(())
}

/// One backend per demo site, on a runtime of their own (kept as long as they serve).
fn start_backends() -> std::io::Result<(tokio::runtime::Runtime, Vec<SiteBackend>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let backends = runtime.block_on(async {
        let mut started = Vec::new();
        for (region, site, _, _) in DEMO_SITES {
            started.push(SiteBackend::start(site, region).await?);
        }
        Ok::<_, std::io::Error>(started)
    })?;
    Ok((runtime, backends))
}

fn unix_now() -> regions::UnixTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    regions::UnixTime(now)
}

/// The demo's `[admin]`: an operator token and acme's admin.
fn admin_tables() -> String {
    format!(
        "[admin]\naudit_log = \"audit.log\"\n\
         [[admin.tokens]]\nname = \"demo-operator\"\nrole = \"operator\"\nsha256 = \"{}\"\n\
         [[admin.tokens]]\nname = \"acme-admin\"\nrole = \"tenant-admin\"\ntenants = [\"acme\"]\nsha256 = \"{}\"\n",
        residency_admin::auth::token_hash(DEMO_OPERATOR_TOKEN),
        residency_admin::auth::token_hash(DEMO_ACME_ADMIN_TOKEN),
    )
}

/// One edge router of the fleet demo: where it listens and what it is called.
struct Edge {
    id: &'static str,
    label: &'static str,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// `demo --fleet`: a 3-member etcd cluster on loopback (the Debian `etcd` binary, data on
/// tmpfs), the demo tenants imported into it, and two routers, a "us edge" and an "eu
/// edge", sharing that registry over the same four site backends. Runs until interrupted.
pub fn run_fleet(
    us: (SocketAddr, SocketAddr),
    eu: (SocketAddr, SocketAddr),
) -> Result<(), Box<dyn std::error::Error>> {
    let (runtime, backends) = start_backends()?;
    let addrs: Vec<Vec<SocketAddr>> = backends.iter().map(|b| vec![b.addr()]).collect();
    println!("starting a 3-member etcd cluster on loopback...");
    let etcd = residency_testkit::EtcdCluster::start(3);
    let endpoints: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    let dir = std::env::temp_dir().join(format!(
        "residency-router-fleet-demo-{}",
        std::process::id()
    ));
    let edges = [
        Edge {
            id: "us-edge",
            label: "us",
            listen: us.0,
            admin: us.1,
        },
        Edge {
            id: "eu-edge",
            label: "eu",
            listen: eu.0,
            admin: eu.1,
        },
    ];
    let replica_ends = demo_replica_end(unix_now());
    let mut snapshots = Vec::new();
    for edge in &edges {
        let edge_dir = dir.join(edge.id);
        std::fs::create_dir_all(&edge_dir)?;
        let config = write_config(
            &edge_dir,
            edge.listen,
            &[("admin", edge.admin)],
            &addrs,
            &demo_tenants(replica_ends),
            &admin_tables(),
            &[""; 4],
        )?;
        let toml = std::fs::read_to_string(&config)?;
        let registry = format!(
            "registry = {{ etcd = {{ endpoints = [{}], prefix = \"/residency-demo\", cache = \"registry.cache\", router_id = \"{}\", router_region = \"{}\" }} }}",
            endpoints.join(", "), edge.id, edge.label
        );
        std::fs::write(
            &config,
            toml.replacen("registry = \"tenants.json\"", &registry, 1),
        )?;
        let mut snapshot = residency_config::load(&config).map_err(|e| e.to_string())?;
        snapshot.server.shutdown_grace = std::time::Duration::from_secs(1);
        snapshots.push((snapshot, config));
    }
    // The registry file moves into etcd, as an operator would with `registry import`.
    let (first, first_config) = &snapshots[0];
    let etcd_settings = first
        .etcd
        .clone()
        .ok_or("the fleet demo config has no etcd registry")?;
    let registry = residency_config::registry_from_text(
        first_config,
        &demo_tenants(replica_ends),
        &first.topology,
    )
    .map_err(|e| e.to_string())?;
    let records: Vec<(String, Vec<u8>)> = registry
        .sorted()
        .iter()
        .map(|(id, r)| {
            (
                id.to_string(),
                residency_config::tenant_json(id, r, &first.topology),
            )
        })
        .collect();
    residency_fleet::import_registry(&etcd_settings, &records, "demo")?;

    let (eu_snapshot, _) = snapshots.pop().expect("two edges");
    let (us_snapshot, _) = snapshots.pop().expect("two edges");
    let (stopper, stop) = crate::server::Stopper::new();
    // Two routers in one process: work-stealing runtimes (see `Launch::per_thread_runtimes`).
    let eu_router = std::thread::spawn(move || {
        let launch = crate::server::Launch {
            upgrade: false,
            stop,
            admin_listener: None,
            metrics_listener: None,
            per_thread_runtimes: false,
        };
        crate::server::run(eu_snapshot, launch)
    });
    print_fleet_commands(&edges, &etcd.endpoints());
    let mut launch = crate::server::Launch::demo();
    launch.per_thread_runtimes = false;
    let served = crate::server::run(us_snapshot, launch);
    stopper.stop();
    let _ = eu_router.join();
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
    drop(runtime);
    Ok(served?)
}

fn print_fleet_commands(edges: &[Edge; 2], endpoints: &[String]) {
    let (us, eu) = (&edges[0], &edges[1]);
    let (us_base, eu_base) = (
        format!("http://{}", us.listen),
        format!("http://{}", eu.listen),
    );
    let (us_api, eu_api) = (
        format!("http://{}", us.admin),
        format!("http://{}", eu.admin),
    );
    let ops = DEMO_OPERATOR_TOKEN;
    let acme = DEMO_ACME_ADMIN_TOKEN;
    let endpoints = endpoints.join(",");
    println!(
        r#"
residency-router fleet demo: etcd at {endpoints}
  {us_id} on {us_base} (admin {us_api}) and {eu_id} on {eu_base} (admin {eu_api}) share one registry.

Both edges route acme to us:
  curl -s {us_base}/hello -H 'x-tenant-id: acme'
  curl -s {eu_base}/hello -H 'x-tenant-id: acme'

Move acme to eu through the us edge, and wait until every router serves the move:
  curl -si -X PUT '{us_api}/v1/tenants/acme?wait=applied' -H 'Authorization: Bearer {acme}' -H 'Content-Type: application/json' -d '{{"region":"eu"}}'
  curl -s {eu_base}/hello -H 'x-tenant-id: acme'                     # the eu edge serves it from eu

The fleet, and the revision each router has applied; the etcd records themselves:
  curl -s {eu_api}/v1/fleet -H 'Authorization: Bearer {ops}'
  ETCDCTL_API=3 etcdctl --endpoints={endpoints} get --prefix /residency-demo/tenants/

Press Ctrl-C to stop (the etcd cluster goes with the demo)."#,
        us_id = us.id,
        eu_id = eu.id,
    );
}

/// How long the demo's initech replica lasts: computed from the demo's start, so that the
/// banner and the behaviour never turn false on a calendar date.
const DEMO_REPLICA_DAYS: i64 = 30;

fn demo_replica_end(now: regions::UnixTime) -> regions::UnixTime {
    regions::UnixTime(now.0 + DEMO_REPLICA_DAYS * 86_400)
}

/// The shipped example registry, with initech's active replica ending at `replica_ends`.
fn demo_tenants(replica_ends: regions::UnixTime) -> String {
    let mut registry: serde_json::Value =
        serde_json::from_str(DEMO_TENANTS).expect("the shipped example registry is JSON");
    for tenant in registry["tenants"].as_array_mut().into_iter().flatten() {
        if tenant["id"] == "initech" {
            tenant["replication"]["expires_at"] = residency_config::rfc3339(replica_ends).into();
        }
    }
    registry.to_string()
}

fn print_curl_commands(listen: SocketAddr, admin: SocketAddr, replica_ends: &str) {
    let base = format!("http://{listen}");
    let api = format!("http://{admin}");
    let ops = DEMO_OPERATOR_TOKEN;
    let acme = DEMO_ACME_ADMIN_TOKEN;
    println!(
        r#"
residency-router demo on {base}; tenants: acme (us), globex (eu, read-replica to us), initech (eu, active replica to us until {replica_ends}).
Paste these (add -i to see x-residency-region / x-residency-site):

  curl -s {base}/hello -H 'x-tenant-id: acme'                       # 200 from a us site
  curl -s {base}/hello -H 'x-tenant-id: globex'                     # 200 from an eu site
  curl -s {base}/orders -H 'Host: initech.app.example.com'           # tenant from the host
  curl -s {base}/t/acme/orders                                       # tenant from the path
  curl -s {base}/hello -H 'x-tenant-id: globex' -H 'Host: us.api.example.com'   # 200: read from the us replica
  curl -s -X POST {base}/hello -H 'x-tenant-id: globex' -H 'Host: us.api.example.com'  # 421 cross_region_blocked
  curl -s {base}/hello -H 'x-tenant-id: acme' -H 'Host: eu.api.example.com'     # 421 cross_region_blocked
  curl -s {base}/hello                                               # 400 tenant_required
  curl -s {base}/hello -H 'x-tenant-id: nobody'                      # 404 unknown_tenant
  curl -s {base}/t/globex/x -H 'x-tenant-id: acme'                   # 400 ambiguous_tenant
  curl -s {base}/hello -H 'x-tenant-id: Bad_Id!'                     # 400 invalid_tenant
  curl -s {base}/hello -H 'x-tenant-id: acme' -H 'x-residency-region: eu'       # spoofed header is dropped

The admin API on {api} (operator token `{ops}`, acme's admin `{acme}`):

  curl -s {api}/v1/tenants/acme -H 'Authorization: Bearer {acme}'                 # acme's residency and ETag
  curl -s -X PUT {api}/v1/tenants/acme -H 'Authorization: Bearer {acme}' -H 'Content-Type: application/json' -d '{{"region":"eu"}}'   # move acme to eu
  curl -s {base}/hello -H 'x-tenant-id: acme'                       # now served from an eu site
  curl -s -X POST {api}/v1/explain -H 'Authorization: Bearer {ops}' -H 'Content-Type: application/json' -d '{{"headers":{{"x-tenant-id":"globex"}},"host":"us.api.example.com"}}'
  curl -s '{api}/v1/audit?tenant=acme' -H 'Authorization: Bearer {ops}'            # who changed what

Press Ctrl-C to stop."#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_replica_ends_a_fixed_time_after_the_demo_starts() {
        let start = regions::UnixTime(1_000_000_000);
        let tenants: serde_json::Value =
            serde_json::from_str(&demo_tenants(demo_replica_end(start))).unwrap();
        let expiries: Vec<(&str, &serde_json::Value)> = tenants["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_str().unwrap(), &t["replication"]["expires_at"]))
            .collect();
        assert_eq!(
            expiries,
            [
                ("acme", &serde_json::Value::Null),
                ("globex", &serde_json::Value::Null),
                ("initech", &"2001-10-09T01:46:40Z".into()),
            ]
        );
        // The shipped example itself expires nothing.
        assert!(!DEMO_TENANTS.contains("expires_at"));
    }
}
