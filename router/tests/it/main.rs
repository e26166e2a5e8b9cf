//! The router's integration tests, one binary (one link of Pingora instead of twenty).
//!
//! Every test runs a real cluster on loopback ([`common`]): site backends in this process and
//! the router either in this process too, when the test needs nothing of a process, or as the
//! real binary, for what only a process has: its log file, signals (SIGHUP, SIGTERM, SIGQUIT
//! upgrades), SIGKILL durability, the CLI, a TLS version policy other than the default (the
//! rustls provider is process-wide) and system-call fault injection.
//! `router/tests/allocations.rs` stays a binary of its own: it replaces the global allocator.

mod common;

mod access_log;
mod admin;
mod admin_abuse;
mod admin_durability;
mod admin_input;
mod admin_storage_faults;
mod cli;
mod client_limits;
mod deploy;
mod failover;
mod fleet;
mod geoip;
mod hardening;
mod health;
mod metrics;
mod openapi;
mod prometheus;
mod readme;
mod reload;
mod routing;
mod service_manager;
mod streaming;
mod tls;
mod upgrade;
