//! The residency-router data plane on Pingora, plus the CLI's building blocks.
//!
//! - [`proxy`]: the `ProxyHttp` implementation: identify, decide, pick a backend, retry, respond;
//! - [`pools`]: per-site backend pools with passive health (the health view the engine reads);
//! - [`respond`]: the JSON bodies of every response the router writes itself;
//! - [`server`]: Pingora server wiring, signals and graceful shutdown;
//! - [`demo`]: the `demo` subcommand and the site backends it (and the tests) run.

pub mod demo;
pub mod logging;
pub mod pools;
pub mod proxy;
pub mod request_id;
pub mod respond;
pub mod server;
pub mod state;
