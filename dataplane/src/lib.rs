//! The residency-router data plane on Pingora: everything one client request touches.
//!
//! - [`proxy`]: the `ProxyHttp` implementation: identify, decide, pick a backend, retry, respond;
//! - `attempt`: what a failed backend attempt means (retry, blame, the client's answer), as
//!   pure functions the proxy's hooks call;
//! - [`client_limits`]: what a client may hold (connections, head size and time, requests per
//!   connection), judged before Pingora reads a request;
//! - [`routing`]: one request's residency decision from plain request facts;
//! - [`state`]: the snapshot a request reads, swapped whole by reloads;
//! - [`health`]: active checks on Pingora's health registry, and each backend's live state;
//! - `pools`: per-site backend choice (weighted round-robin, least-in-flight) and outlier
//!   ejection; the health view the engine reads;
//! - [`preference`]: the order of sites inside a region (GeoIP or weighted rotation);
//! - [`metrics`]: the metric definitions, their families in an injected registry, and the
//!   per-configuration handles the request path records with;
//! - [`access_log`]: the per-request audit trail (JSON lines, never blocking requests);
//! - `respond`: the JSON bodies of every response the router writes itself;
//! - [`request_id`]: `x-request-id`, kept or generated;
//! - [`tls`]: the TLS version policy, certificates by SNI, upstream peers;
//! - [`lifecycle`]: readiness and drain, as values;
//! - [`clock`]: a cheap monotonic clock for the request path;
//! - `addr_text`: addresses as text without `fmt`.

pub mod access_log;
mod addr_text;
mod attempt;
pub mod client_limits;
pub mod clock;
pub mod health;
pub mod lifecycle;
pub mod metrics;
mod pools;
pub mod preference;
pub mod proxy;
pub mod request_id;
mod respond;
pub mod routing;
pub mod state;
pub mod tls;
