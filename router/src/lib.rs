//! The `residency-router` binary's building blocks: it wires the data plane
//! ([`residency_dataplane`]) and the admin API ([`residency_admin`]) into one Pingora server.
//!
//! - [`server`]: Pingora server wiring, signals, graceful shutdown and upgrades;
//! - [`reload`]: hot reload (validate -> build -> swap), its guards and its triggers;
//! - `side_listeners`: `/metrics` and the admin API on their own ports, plain or TLS;
//! - `notify` and `successor`: what systemd hears, and the upgrade SIGUSR2 starts;
//! - [`probe`]: the `probe` subcommand (the container's health check);
//! - [`demo`]: the `demo` subcommand;
//! - [`logging`]: the process's log format.

pub mod demo;
pub mod logging;
mod notify;
pub mod probe;
pub mod reload;
pub mod server;
mod side_listeners;
mod successor;
