//! The residency-router data plane on Pingora, plus the CLI's building blocks.
//!
//! - [`proxy`]: the `ProxyHttp` implementation: identify, decide, pick a backend, retry, respond;
//! - [`health`]: active checks on Pingora's health registry, and each backend's live state;
//! - [`access_log`]: the per-request audit trail (JSON lines, never blocking requests);
//! - [`pools`]: per-site backend choice (weighted round-robin, least-in-flight) and outlier
//!   ejection; the health view the engine reads;
//! - [`preference`]: the order of sites inside a region (GeoIP or weighted rotation);
//! - [`routing`]: one request's residency decision from plain request facts;
//! - [`metrics`]: Prometheus metrics, their definitions and the `/metrics` endpoint;
//! - [`respond`]: the JSON bodies of every response the router writes itself;
//! - [`admin`]: the admin API (tenants, explain, audit log, export) with roles and audit;
//! - [`reload`]: hot reload (validate -> build -> swap) and its triggers;
//! - [`tls`]: TLS on every hop: the version policy, certificates by SNI, upstream peers;
//! - [`server`]: Pingora server wiring, signals and graceful shutdown;
//! - [`demo`]: the `demo` subcommand and the site backends it (and the tests) run.

pub mod access_log;
pub mod admin;
pub mod client_limits;
pub mod clock;
pub mod demo;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod pools;
pub mod preference;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod respond;
pub mod routing;
pub mod server;
pub mod state;
pub mod tls;
