//! Prometheus metrics.
//!
//! [`DEFINITIONS`] is the one list of metrics: it registers them and generates
//! `docs/metrics.md` (a test keeps the file in step). Label values are bounded by the
//! configuration: regions, sites, backends, fixed code lists. No tenant label, ever.
//!
//! Recording is cheap: [`Handles`] resolves every label combination once per configuration,
//! so the request path indexes an array and adds to an atomic. Without `listen.metrics`
//! nothing is recorded on the request path (the client connection gauge and counters, a few
//! atomics per connection, are always kept). Gauges that describe state
//! (backend health, tenants per region, reloads) are computed when Prometheus scrapes.

use std::sync::{Arc, Mutex};

use prometheus::{
    core::Collector, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use regions::{BlockCode, RegionId, ReplicationMode, RouteReason, SiteId};
use residency_config::Snapshot;

use crate::client_limits::Cut;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

pub struct Definition {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Request latency buckets for an edge proxy: 0.5 ms to 10 s.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub const DEFINITIONS: &[Definition] = &[
    Definition { name: "residency_requests_total", kind: Kind::Counter, labels: &["tenant_region", "served_region", "site", "code_class"], help: "Requests proxied to a backend, by the tenant's home region, the region and site that served them, and the response class (2xx..5xx)." },
    Definition { name: "residency_request_duration_seconds", kind: Kind::Histogram, labels: &["served_region", "site"], help: "Time from the request's arrival to the end of its response, for proxied requests." },
    Definition { name: "residency_blocked_total", kind: Kind::Counter, labels: &["reason", "tenant_region", "requested_region"], help: "Requests the router answered itself without proxying; reason is the SPEC error code. Regions are `none` when unknown." },
    Definition { name: "residency_cross_region_served_total", kind: Kind::Counter, labels: &["tenant_region", "served_region", "cause"], help: "Requests served outside the tenant's home region under its replication, by cause: `hint` (the request named the replica region) or `failover` (every home site had failed). `replica_read` and `replica_active` are reserved for a policy that serves reads from a nearer replica; the replication mode of each tenant is in `residency_replications`." },
    Definition { name: "residency_upstream_errors_total", kind: Kind::Counter, labels: &["region", "site", "kind"], help: "Failed attempts on a backend: kind `connect`, `timeout`, `reset`, `status_5xx` or `tls` (handshake failed: untrusted or wrong-name certificate, no common TLS version)." },
    Definition { name: "residency_retries_total", kind: Kind::Counter, labels: &["region", "site"], help: "Attempts on a backend of this site that followed a failed attempt of the same request." },
    Definition { name: "residency_upstream_connections_opened_total", kind: Kind::Counter, labels: &["region", "site"], help: "New connections to a backend of this site (every other attempt reused one from the keep-alive pool). Rising with the request rate means the pool (`proxy.upstream_keepalive_pool`) is smaller than the concurrency, or backends close idle connections sooner than `proxy.idle_timeout_ms`." },
    Definition { name: "residency_backend_up", kind: Kind::Gauge, labels: &["region", "site", "backend"], help: "1 when the backend may take traffic (active checks up, not ejected), else 0." },
    Definition { name: "residency_site_healthy_backends", kind: Kind::Gauge, labels: &["region", "site"], help: "Backends of the site that may take traffic." },
    Definition { name: "residency_tenants", kind: Kind::Gauge, labels: &["region"], help: "Tenants whose home is the region." },
    Definition { name: "residency_replications", kind: Kind::Gauge, labels: &["from", "to", "mode"], help: "Tenants homed in `from` replicating to `to`, by mode (`read-replica`, `active`), expired or not." },
    Definition { name: "residency_config_generation", kind: Kind::Gauge, labels: &[], help: "Generation of the running configuration: 1 at start, +1 per applied reload." },
    Definition { name: "residency_config_reloads_total", kind: Kind::Counter, labels: &["result"], help: "Reload attempts by result (`success`, `failure`)." },
    Definition { name: "residency_config_last_success_timestamp_seconds", kind: Kind::Gauge, labels: &[], help: "Unix time of the last configuration applied (start or reload)." },
    Definition { name: "residency_geoip_lookups_total", kind: Kind::Counter, labels: &["result"], help: "GeoIP lookups: `located` (the site order used it) or `unknown` (no usable record)." },
    Definition { name: "residency_geoip_database_epoch_seconds", kind: Kind::Gauge, labels: &[], help: "Build time of the GeoIP database in use (0 without GeoIP)." },
    Definition { name: "residency_access_log_dropped_total", kind: Kind::Counter, labels: &[], help: "Access log records dropped because the writer fell behind (requests never wait for it)." },
    Definition { name: "residency_tls_certificate_expiry_timestamp_seconds", kind: Kind::Gauge, labels: &["name"], help: "When each certificate in use expires (the leaf's notAfter, Unix seconds), by its `name` in `[[tls.certificates]]`, `admin` / `metrics` for those listeners, or `client:SITE` for the router's client certificate to a site's backends (mutual TLS). Alert well before `time()` reaches it." },
    Definition { name: "residency_client_connections", kind: Kind::Gauge, labels: &[], help: "Client connections open now, over every listener and protocol (bounded by `proxy.max_client_connections`)." },
    Definition { name: "residency_client_connections_refused_total", kind: Kind::Counter, labels: &[], help: "Client connections refused (503 `too_many_connections`, or closed for HTTP/2) because `proxy.max_client_connections` were open." },
    Definition { name: "residency_client_requests_refused_total", kind: Kind::Counter, labels: &["reason"], help: "HTTP/1 requests cut before their head was whole: `header_timeout` (408, slower than `proxy.client_header_timeout_ms`), `head_too_large` (431), `malformed_head` (400, a head no HTTP/1 parser reads)." },
    Definition { name: "residency_registry_connected", kind: Kind::Gauge, labels: &[], help: "Fleet mode: 1 while this router follows the etcd registry (its last probe and watch answered), else 0. Always 0 with a registry file." },
    Definition { name: "residency_registry_revision", kind: Kind::Gauge, labels: &[], help: "Fleet mode: the etcd revision of the registry this router serves." },
    Definition { name: "residency_registry_staleness_seconds", kind: Kind::Gauge, labels: &[], help: "Fleet mode: seconds since this router last knew its registry was etcd's latest (0 while connected). Past `max_staleness_s`, replication exceptions are not used." },
    Definition { name: "residency_registry_resyncs_total", kind: Kind::Counter, labels: &["reason"], help: "Fleet mode: full reads of the registry from etcd, by reason: `start`, `compacted` (the watch's revision was compacted away), `revision_backwards` (etcd restored from an older backup), `cluster_changed` (another etcd cluster answers)." },
    Definition { name: "residency_registry_invalid_records_total", kind: Kind::Counter, labels: &[], help: "Fleet mode: tenant records in etcd this router could not use (unknown region, bad JSON); the tenant keeps its previous record, or is refused if it had none." },
    Definition { name: "residency_registry_held_changes", kind: Kind::Gauge, labels: &[], help: "Fleet mode: 1 while a registry change from etcd is held by the mass-move guard (`reload.max_moved_percent`) until `residency-router reload --force`." },
    Definition { name: "residency_build_info", kind: Kind::Gauge, labels: &["version"], help: "Always 1; the label carries the router version." },
];

fn definition(name: &str) -> &'static Definition {
    DEFINITIONS
        .iter()
        .find(|d| d.name == name)
        .expect("every registered metric is defined")
}

fn opts(name: &str) -> Opts {
    Opts::new(name, definition(name).help)
}

/// Registers a metric in the process registry and hands it back.
fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("every metric is registered once");
    metric
}

fn counter_vec(registry: &Registry, name: &str) -> IntCounterVec {
    let labels = definition(name).labels;
    register(
        registry,
        IntCounterVec::new(opts(name), labels).expect("valid definition"),
    )
}

fn gauge_vec(registry: &Registry, name: &str) -> IntGaugeVec {
    let labels = definition(name).labels;
    register(
        registry,
        IntGaugeVec::new(opts(name), labels).expect("valid definition"),
    )
}

fn counter(registry: &Registry, name: &str) -> IntCounter {
    register(
        registry,
        IntCounter::with_opts(opts(name)).expect("valid definition"),
    )
}

fn gauge(registry: &Registry, name: &str) -> IntGauge {
    register(
        registry,
        IntGauge::with_opts(opts(name)).expect("valid definition"),
    )
}

/// The metric families of one router, registered in the registry it was given.
pub struct Metrics {
    registry: Registry,
    /// Gauges are reset and rebuilt on each scrape: two scrapes at once must not interleave.
    rendering: Mutex<()>,
    requests: IntCounterVec,
    duration: HistogramVec,
    blocked: IntCounterVec,
    cross_region: IntCounterVec,
    upstream_errors: IntCounterVec,
    retries: IntCounterVec,
    connections_opened: IntCounterVec,
    backend_up: IntGaugeVec,
    site_healthy: IntGaugeVec,
    tenants: IntGaugeVec,
    replications: IntGaugeVec,
    pub generation: IntGauge,
    pub reloads: IntCounterVec,
    pub last_success: IntGauge,
    geoip_lookups: IntCounterVec,
    geoip_epoch: IntGauge,
    certificate_expiry: IntGaugeVec,
    pub access_log_dropped: IntCounter,
    pub client_connections: IntGauge,
    client_connections_refused: IntCounter,
    /// [Cut::ALL index]
    client_requests_refused: Vec<IntCounter>,
    pub registry_connected: IntGauge,
    pub registry_revision: IntGauge,
    pub registry_staleness: prometheus::Gauge,
    pub registry_resyncs: IntCounterVec,
    pub registry_invalid_records: IntCounter,
    pub registry_held: IntGauge,
}

impl Metrics {
    /// Families in a registry of their own, which nothing scrapes (benchmarks, tests).
    pub fn standalone() -> Arc<Metrics> {
        Self::register_in(Registry::new())
    }

    /// Registers every family of [`DEFINITIONS`] in `registry`, which the binary builds (and
    /// which may hold other collectors, such as process metrics). Panics if a family is
    /// already registered there: each router has a registry of its own.
    pub fn register_in(registry: Registry) -> Arc<Metrics> {
        let name = "residency_request_duration_seconds";
        let histogram =
            HistogramOpts::new(name, definition(name).help).buckets(DURATION_BUCKETS.to_vec());
        let duration = register(
            &registry,
            HistogramVec::new(histogram, definition(name).labels).expect("valid definition"),
        );
        let build_info = gauge_vec(&registry, "residency_build_info");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Arc::new(Metrics {
            requests: counter_vec(&registry, "residency_requests_total"),
            duration,
            blocked: counter_vec(&registry, "residency_blocked_total"),
            cross_region: counter_vec(&registry, "residency_cross_region_served_total"),
            upstream_errors: counter_vec(&registry, "residency_upstream_errors_total"),
            retries: counter_vec(&registry, "residency_retries_total"),
            connections_opened: counter_vec(
                &registry,
                "residency_upstream_connections_opened_total",
            ),
            backend_up: gauge_vec(&registry, "residency_backend_up"),
            site_healthy: gauge_vec(&registry, "residency_site_healthy_backends"),
            tenants: gauge_vec(&registry, "residency_tenants"),
            replications: gauge_vec(&registry, "residency_replications"),
            certificate_expiry: gauge_vec(
                &registry,
                "residency_tls_certificate_expiry_timestamp_seconds",
            ),
            generation: gauge(&registry, "residency_config_generation"),
            reloads: counter_vec(&registry, "residency_config_reloads_total"),
            last_success: gauge(&registry, "residency_config_last_success_timestamp_seconds"),
            geoip_lookups: counter_vec(&registry, "residency_geoip_lookups_total"),
            geoip_epoch: gauge(&registry, "residency_geoip_database_epoch_seconds"),
            access_log_dropped: counter(&registry, "residency_access_log_dropped_total"),
            client_connections: gauge(&registry, "residency_client_connections"),
            client_connections_refused: counter(
                &registry,
                "residency_client_connections_refused_total",
            ),
            client_requests_refused: {
                let family = counter_vec(&registry, "residency_client_requests_refused_total");
                Cut::ALL
                    .iter()
                    .map(|cut| family.with_label_values(&[cut.as_str()]))
                    .collect()
            },
            registry_connected: gauge(&registry, "residency_registry_connected"),
            registry_revision: gauge(&registry, "residency_registry_revision"),
            registry_staleness: register(
                &registry,
                prometheus::Gauge::with_opts(opts("residency_registry_staleness_seconds"))
                    .expect("valid definition"),
            ),
            registry_resyncs: counter_vec(&registry, "residency_registry_resyncs_total"),
            registry_invalid_records: counter(
                &registry,
                "residency_registry_invalid_records_total",
            ),
            registry_held: gauge(&registry, "residency_registry_held_changes"),
            registry,
            rendering: Mutex::new(()),
        })
    }

    /// A client connection was refused at `proxy.max_client_connections`.
    pub(crate) fn client_connection_refused(&self) {
        self.client_connections_refused.inc();
    }

    /// A request was cut before its head was whole.
    pub(crate) fn client_request_cut(&self, cut: Cut) {
        let index = Cut::ALL
            .iter()
            .position(|c| *c == cut)
            .expect("every cut is listed");
        self.client_requests_refused[index].inc();
    }
}

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const CAUSES: [&str; 2] = ["hint", "failover"];

/// Why an attempt on a backend failed, for `residency_upstream_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Reset,
    Status5xx,
    /// The TLS handshake failed: untrusted or wrong-name certificate, no common version.
    Tls,
}

const UPSTREAM_ERRORS: [&str; 5] = ["connect", "timeout", "reset", "status_5xx", "tls"];

/// Every label combination of one configuration, resolved once.
pub struct Handles {
    /// Recording happens only when `listen.metrics` is set: off costs one branch.
    enabled: bool,
    regions: usize,
    sites: usize,
    site_region: Vec<usize>,
    /// [tenant_region][site][code class]
    requests: Vec<IntCounter>,
    /// [site]
    duration: Vec<Histogram>,
    /// [reason][tenant_region or none][requested_region or none]
    blocked: Vec<IntCounter>,
    /// [tenant_region][served_region][cause]
    cross_region: Vec<IntCounter>,
    /// [site][kind]
    upstream_errors: Vec<IntCounter>,
    /// [site]
    retries: Vec<IntCounter>,
    /// [site]
    connections_opened: Vec<IntCounter>,
    geoip_located: IntCounter,
    geoip_unknown: IntCounter,
    /// Tenants per home region, and replications per (from, to, mode): derived from the
    /// registry once per configuration, not on every scrape.
    tenants: Vec<(String, i64)>,
    replications: Vec<([String; 3], i64)>,
}

impl Handles {
    pub fn new(snapshot: &Snapshot, m: &Metrics) -> Self {
        let topology = &snapshot.topology;
        let region_names: Vec<&str> = topology.regions().map(|(_, r)| r.name.as_str()).collect();
        let sites: Vec<(&str, usize)> = topology
            .sites()
            .map(|(_, s)| (s.name.as_str(), usize::from(s.region.0)))
            .collect();
        let with_none: Vec<&str> = region_names.iter().copied().chain(["none"]).collect();
        let mut requests = Vec::new();
        for tenant_region in &region_names {
            for (site, region) in &sites {
                for class in CODE_CLASSES {
                    requests.push(m.requests.with_label_values(&[
                        tenant_region,
                        region_names[*region],
                        site,
                        class,
                    ]));
                }
            }
        }
        let mut blocked = Vec::new();
        for reason in BlockCode::ALL {
            for tenant_region in &with_none {
                for requested in &with_none {
                    blocked.push(m.blocked.with_label_values(&[
                        reason.as_str(),
                        tenant_region,
                        requested,
                    ]));
                }
            }
        }
        let mut cross_region = Vec::new();
        for tenant_region in &region_names {
            for served in &region_names {
                for cause in CAUSES {
                    cross_region.push(m.cross_region.with_label_values(&[
                        tenant_region,
                        served,
                        cause,
                    ]));
                }
            }
        }
        let mut upstream_errors = Vec::new();
        for (site, region) in &sites {
            for kind in UPSTREAM_ERRORS {
                upstream_errors.push(m.upstream_errors.with_label_values(&[
                    region_names[*region],
                    site,
                    kind,
                ]));
            }
        }
        let mut tenants = vec![0i64; region_names.len()];
        let mut replications: std::collections::BTreeMap<[String; 3], i64> = Default::default();
        for (_, record) in snapshot.registry.iter() {
            tenants[usize::from(record.home.0)] += 1;
            if let Some(replication) = record.replication {
                let mode = match replication.mode {
                    ReplicationMode::ReadReplica => "read-replica",
                    ReplicationMode::Active => "active",
                };
                for to in replication.regions.iter() {
                    let key = [
                        region_names[usize::from(record.home.0)].to_owned(),
                        region_names[usize::from(to.0)].to_owned(),
                        mode.to_owned(),
                    ];
                    *replications.entry(key).or_insert(0) += 1;
                }
            }
        }
        Handles {
            tenants: region_names
                .iter()
                .map(|r| r.to_string())
                .zip(tenants)
                .collect(),
            replications: replications.into_iter().collect(),
            enabled: snapshot.listen.metrics.is_some(),
            regions: region_names.len(),
            sites: sites.len(),
            site_region: sites.iter().map(|(_, r)| *r).collect(),
            requests,
            duration: sites
                .iter()
                .map(|(site, region)| m.duration.with_label_values(&[region_names[*region], site]))
                .collect(),
            blocked,
            cross_region,
            upstream_errors,
            retries: sites
                .iter()
                .map(|(site, region)| m.retries.with_label_values(&[region_names[*region], site]))
                .collect(),
            connections_opened: sites
                .iter()
                .map(|(site, region)| {
                    m.connections_opened
                        .with_label_values(&[region_names[*region], site])
                })
                .collect(),
            geoip_located: m.geoip_lookups.with_label_values(&["located"]),
            geoip_unknown: m.geoip_lookups.with_label_values(&["unknown"]),
        }
    }

    /// A proxied request finished.
    pub fn request(&self, tenant_region: RegionId, site: SiteId, status: u16, seconds: f64) {
        if !self.enabled {
            return;
        }
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let site = usize::from(site.0);
        let index = (usize::from(tenant_region.0) * self.sites + site) * CODE_CLASSES.len() + class;
        self.requests[index].inc();
        self.duration[site].observe(seconds);
    }

    pub fn blocked(
        &self,
        code: BlockCode,
        tenant_region: Option<RegionId>,
        requested: Option<RegionId>,
    ) {
        if !self.enabled {
            return;
        }
        let reason = BlockCode::ALL
            .iter()
            .position(|c| *c == code)
            .expect("every code is listed");
        let region = |r: Option<RegionId>| r.map_or(self.regions, |r| usize::from(r.0));
        let width = self.regions + 1;
        self.blocked[(reason * width + region(tenant_region)) * width + region(requested)].inc();
    }

    /// A request served outside its tenant's home region.
    pub fn cross_region(&self, tenant_region: RegionId, site: SiteId, reason: RouteReason) {
        if !self.enabled {
            return;
        }
        let cause = match reason {
            RouteReason::Home => return,
            RouteReason::HintedReplica(_) => 0,
            RouteReason::ReplicaFailover(_) => 1,
        };
        let served = self.site_region[usize::from(site.0)];
        let index = (usize::from(tenant_region.0) * self.regions + served) * CAUSES.len() + cause;
        self.cross_region[index].inc();
    }

    pub fn upstream_error(&self, site: SiteId, kind: UpstreamError) {
        if !self.enabled {
            return;
        }
        let kind = match kind {
            UpstreamError::Connect => 0,
            UpstreamError::Timeout => 1,
            UpstreamError::Reset => 2,
            UpstreamError::Status5xx => 3,
            UpstreamError::Tls => 4,
        };
        self.upstream_errors[usize::from(site.0) * UPSTREAM_ERRORS.len() + kind].inc();
    }

    pub fn retry(&self, site: SiteId) {
        if !self.enabled {
            return;
        }
        self.retries[usize::from(site.0)].inc();
    }

    /// An attempt on a backend of `site` opened a new connection instead of reusing one.
    pub fn upstream_connection_opened(&self, site: SiteId) {
        if !self.enabled {
            return;
        }
        self.connections_opened[usize::from(site.0)].inc();
    }

    pub fn geoip(&self, located: bool) {
        if !self.enabled {
            return;
        }
        if located {
            self.geoip_located.inc();
        } else {
            self.geoip_unknown.inc();
        }
    }
}

/// Sets the state gauges from the running state, then renders every metric.
pub fn render(state: &crate::state::RouterState) -> Vec<u8> {
    let m = &*state.families;
    let _one_at_a_time = m.rendering.lock().unwrap_or_else(|p| p.into_inner());
    let snapshot = &state.snapshot;
    let topology = &snapshot.topology;
    // Families are reset so that sites and backends removed by a reload disappear.
    m.backend_up.reset();
    m.site_healthy.reset();
    m.tenants.reset();
    m.replications.reset();
    for (site_id, site) in topology.sites() {
        let region = topology.region(site.region).name.as_str();
        let mut healthy = 0;
        for (i, backend) in snapshot.site(site_id).backends.iter().enumerate() {
            let up = state.pools.available(site_id, i);
            healthy += i64::from(up);
            m.backend_up
                .with_label_values(&[region, site.name.as_str(), backend.configured.as_str()])
                .set(i64::from(up));
        }
        m.site_healthy
            .with_label_values(&[region, site.name.as_str()])
            .set(healthy);
    }
    for (region, count) in &state.metrics.tenants {
        m.tenants.with_label_values(&[region]).set(*count);
    }
    for (labels, count) in &state.metrics.replications {
        m.replications.with_label_values(labels).set(*count);
    }
    let epoch = snapshot
        .geoip
        .as_ref()
        .map_or(0, |g| g.database.current().build_epoch() as i64);
    m.geoip_epoch.set(epoch);
    m.certificate_expiry.reset();
    for certificate in snapshot.tls.served() {
        m.certificate_expiry
            .with_label_values(&[certificate.name.as_str()])
            .set(certificate.not_after);
    }
    for (name, not_after) in crate::tls::client_certificates(snapshot) {
        m.certificate_expiry
            .with_label_values(&[name.as_str()])
            .set(not_after);
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&m.registry.gather(), &mut out)
        .expect("text encoding of gathered metrics");
    out
}

/// `docs/metrics.md`, generated from [`DEFINITIONS`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Metrics\n\nGenerated from `dataplane/src/metrics.rs` by `cargo test -p residency-router --test it metrics::` \
         (set `UPDATE_DOCS=1` to rewrite it). Every label's values are bounded by the configuration \
         (regions, sites, backends) or by fixed lists; there is no tenant label. Process metrics \
         (`process_*`) are exported too.\n\n| name | type | labels | meaning |\n|---|---|---|---|\n",
    );
    for d in DEFINITIONS {
        let kind = match d.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let labels: Vec<String> = d.labels.iter().map(|l| format!("`{l}`")).collect();
        out.push_str(&format!(
            "| `{}` | {kind} | {} | {} |\n",
            d.name,
            labels.join(", "),
            d.help
        ));
    }
    out
}
