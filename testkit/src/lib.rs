//! What the router runs against in tests, load tests and the demo: site backends that say
//! which site answered, configs for the demo's 2x2 topology, and loopback ports bound and held
//! until the router takes them.

mod backend;
mod config;
mod etcd;
mod ports;

pub use backend::SiteBackend;
pub use config::{write_config, DEMO_SITES, DEMO_TENANTS};
pub use etcd::EtcdCluster;
pub use ports::{HeldPort, PortRegistry};
