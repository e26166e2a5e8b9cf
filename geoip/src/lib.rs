//! GeoIP for site choice (SPEC section 6).
//!
//! - [`Database`]: one opened and fully verified MaxMind database, City or Country flavoured;
//!   lookups borrow from it and do not allocate;
//! - [`LiveDatabase`]: the database behind an `ArcSwap`, re-read when its file changes; a
//!   corrupt or truncated new file keeps the previous database;
//! - [`client_address`]: the address GeoIP should locate, behind trusted proxies.
//!
//! GeoIP never chooses a region: the router uses it only to order sites the residency engine
//! already allowed.

mod client;
mod database;
mod live;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{client_address, is_trusted_proxy};
pub use database::{Database, GeoIpError, Kind, Location};
pub use live::{file_stamp, LiveDatabase, Reloaded, Stamp as FileStamp};
