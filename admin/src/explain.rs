//! `POST /v1/explain`: the decision the data plane would make for a described request, right
//! now, step by step. It runs the proxy's own `routing::route` on the live state and sends
//! nothing anywhere.

use std::collections::BTreeMap;
use std::net::IpAddr;

use regions::{great_circle_km, usable_replication, HeaderValues, MethodClass, RouteReason};
use serde::Deserialize;
use serde_json::{json, Value};

use residency_dataplane::preference::GeoHint;
use residency_dataplane::routing::{self, RequestFacts};
use residency_dataplane::state::RouterState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    #[serde(default = "get")]
    pub method: String,
    pub host: Option<String>,
    #[serde(default = "root")]
    pub path: String,
    /// Header name -> value, or a list of values for a repeated header.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderInput>,
    /// The socket peer the request would come from.
    pub client: Option<IpAddr>,
    /// Set when the request would arrive on `listen.https`.
    pub tls: Option<ExplainTls>,
}

/// The TLS connection a request would arrive on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainTls {
    /// The server name (SNI) the client sent; `None` for a client that sent none.
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HeaderInput {
    One(String),
    Many(Vec<String>),
}

fn get() -> String {
    "GET".to_owned()
}

fn root() -> String {
    "/".to_owned()
}

/// Why a request description cannot be explained: `(field, problem)`.
pub fn check(request: &ExplainRequest) -> Result<(), (&'static str, String)> {
    if http::Method::from_bytes(request.method.as_bytes()).is_err() {
        return Err((
            "method",
            format!("`{}` is not an HTTP method", request.method),
        ));
    }
    if !request.path.starts_with('/') {
        return Err(("path", "a path starts with `/`".to_owned()));
    }
    Ok(())
}

pub fn explain(state: &RouterState, request: &ExplainRequest, now: regions::UnixTime) -> Value {
    let snapshot = &state.snapshot;
    let topology = &snapshot.topology;
    let headers: Vec<(String, Vec<&str>)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            let values = match value {
                HeaderInput::One(v) => vec![v.as_str()],
                HeaderInput::Many(vs) => vs.iter().map(String::as_str).collect(),
            };
            (name.to_ascii_lowercase(), values)
        })
        .collect();
    let header = |name: &str| -> Option<&Vec<&str>> {
        headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    };
    let path = request.path.split('?').next().unwrap_or("/");
    let upgrade = header("upgrade").is_some();
    let host = request
        .host
        .as_deref()
        .or_else(|| header("host").and_then(|v| v.first().copied()));
    let facts = RequestFacts {
        host,
        path,
        method: &request.method,
        upgrade,
        peer: request.client,
        tls: request.tls.as_ref().map(|tls| routing::TlsFacts {
            server_name: tls.server_name.as_deref(),
        }),
    };
    let forwarded_for = header("x-forwarded-for")
        .map(|v| v.iter().map(|s| s.as_bytes()).collect::<Vec<_>>())
        .unwrap_or_default();
    let routed = routing::route(
        state,
        &facts,
        |name| match header(name).map(Vec::as_slice) {
            None | Some([]) => HeaderValues::Absent,
            Some([one]) => HeaderValues::One(one.as_bytes()),
            Some(_) => HeaderValues::Repeated,
        },
        forwarded_for.into_iter(),
        now,
    );

    let region_name = |r: regions::RegionId| topology.region(r).name.clone();
    let mut steps = Vec::new();
    if let Some(tls) = &request.tls {
        steps.push(match &tls.server_name {
            Some(name) => format!(
                "over TLS with server name `{name}`: the request's host must be served by the \
                 same certificate, and a tenant in the server name must agree with the request's"
            ),
            None => "over TLS without a server name (the default certificate)".to_owned(),
        });
    }
    let record = routed.tenant.and_then(|id| snapshot.registry.get(&id));
    let tenant = routed.tenant.map(|id| {
        let source = routed.source.map_or("unknown", |s| s.as_str());
        match &record {
            Some(_) => steps.push(format!("tenant `{id}` named by the {source} source; registered")),
            None => steps.push(format!("tenant `{id}` named by the {source} source; not in the registry")),
        }
        json!({
            "id": id.as_str(),
            "source": source,
            "registered": record.is_some(),
            "record": record.map(|r| serde_json::to_value(residency_config::TenantView::new(id.as_str(), &r, topology)).unwrap_or(Value::Null)),
        })
    });
    if routed.tenant.is_none() {
        steps.push("no source named a tenant".to_owned());
    }
    if let Some(hint) = routed.hint {
        steps.push(format!(
            "the host is the region host of `{}`: a region hint",
            region_name(hint)
        ));
    }
    let class = MethodClass::of(&request.method, upgrade);
    let allowed = record.map(|r| {
        let mut regions = vec![json!({"region": region_name(r.home), "as": "home"})];
        let usable = usable_replication(&r, class, now);
        if let Some(replication) = r.replication {
            for region in replication.regions.iter() {
                regions.push(json!({
                    "region": region_name(region),
                    "as": "replica",
                    "mode": residency_config::mode_name(replication.mode),
                    "expires_at": replication.expires_at.map(residency_config::rfc3339),
                    "usable_by_this_request": usable.is_some(),
                }));
            }
            if usable.is_none() {
                steps.push(if replication.is_active_at(now) {
                    format!(
                        "replication is {}: a {:?} request may not use it",
                        residency_config::mode_name(replication.mode),
                        class
                    )
                    .to_lowercase()
                } else {
                    "replication has expired".to_owned()
                });
            }
        }
        regions
    });
    let geoip = match routed.geo {
        Some(GeoHint::Near { lat, lon }) => json!({"kind": "coordinates", "lat": lat, "lon": lon}),
        Some(GeoHint::Country(site)) => {
            json!({"kind": "country", "site": topology.site(site).name})
        }
        None => Value::Null,
    };
    if let Some(client) = routed.client {
        steps.push(match routed.geo {
            Some(_) => format!("client {client} located by GeoIP: nearest sites first"),
            None => format!("client {client} not located: weighted rotation among sites"),
        });
    }
    let decision = match &routed.decision {
        Ok(route) => {
            let sites: Vec<Value> = route
                .sites
                .iter()
                .map(|routed_site| {
                    let site = topology.site(routed_site.site);
                    let pool = snapshot.site(routed_site.site);
                    let backends: Vec<Value> = pool
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(i, b)| json!({"address": b.configured, "available": state.pools.available(routed_site.site, i)}))
                        .collect();
                    let distance_km = match routed.geo {
                        Some(GeoHint::Near { lat, lon }) => Some((great_circle_km((lat, lon), (site.lat, site.lon)) * 10.0).round() / 10.0),
                        _ => None,
                    };
                    json!({
                        "site": site.name,
                        "region": region_name(routed_site.region),
                        "reason": match routed_site.reason {
                            RouteReason::Home => "home",
                            RouteReason::HintedReplica(_) => "hinted-replica",
                            RouteReason::ReplicaFailover(_) => "replica-failover",
                        },
                        "distance_km": distance_km,
                        "backends": backends,
                    })
                })
                .collect();
            steps.push(format!(
                "route: {} healthy site(s) in order; unhealthy sites are left out",
                sites.len()
            ));
            json!({"action": "route", "home_region": region_name(route.home_region), "sites": sites})
        }
        Err(block) => {
            steps.push(format!(
                "block: {} ({})",
                block.code.as_str(),
                block.code.message()
            ));
            json!({
                "action": "block",
                "status": block.code.http_status(),
                "error": block.code.as_str(),
                "message": block.code.message(),
                "home_region": block.home_region.map(region_name),
                "requested_region": block.requested_region.map(region_name),
            })
        }
    };
    json!({
        "generation": state.generation,
        "tenant": tenant,
        "region_hint": routed.hint.map(region_name),
        "client_address": routed.client,
        "geoip": geoip,
        "allowed_regions": allowed,
        "decision": decision,
        "steps": steps,
    })
}
