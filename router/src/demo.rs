//! `residency-router demo`: four site backends and the router in one process (SPEC 9).

use std::net::SocketAddr;

use residency_testkit::{write_config, SiteBackend, DEMO_SITES, DEMO_TENANTS};

/// Bearer tokens of the demo's admin API. Demo only: real tokens come from `token new`.
pub const DEMO_OPERATOR_TOKEN: &str = "demo-operator-token";
pub const DEMO_ACME_ADMIN_TOKEN: &str = "demo-acme-admin-token";

/// Runs the demo until interrupted.
pub fn run(listen: SocketAddr, admin: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let backends: Vec<SiteBackend> = runtime.block_on(async {
        let mut started = Vec::new();
        for (region, site, _, _) in DEMO_SITES {
            started.push(SiteBackend::start(site, region).await?);
        }
        Ok::<_, std::io::Error>(started)
    })?;
    let addrs: Vec<Vec<SocketAddr>> = backends.iter().map(|b| vec![b.addr()]).collect();

    let dir = std::env::temp_dir().join(format!("residency-router-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tables = format!(
        "[admin]\naudit_log = \"audit.log\"\n\
         [[admin.tokens]]\nname = \"demo-operator\"\nrole = \"operator\"\nsha256 = \"{}\"\n\
         [[admin.tokens]]\nname = \"acme-admin\"\nrole = \"tenant-admin\"\ntenants = [\"acme\"]\nsha256 = \"{}\"\n",
        residency_admin::auth::token_hash(DEMO_OPERATOR_TOKEN),
        residency_admin::auth::token_hash(DEMO_ACME_ADMIN_TOKEN),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let replica_ends = demo_replica_end(regions::UnixTime(now));
    let config_path = write_config(
        &dir,
        listen,
        &[("admin", admin)],
        &addrs,
        &demo_tenants(replica_ends),
        &tables,
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

    crate::server::run(snapshot, crate::server::Launch::process(false))?;
    let _ = std::fs::remove_dir_all(&dir);
    drop(runtime);
    Ok(())
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
