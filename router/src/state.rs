use std::sync::Arc;

use arc_swap::ArcSwap;
use config::Snapshot;

use crate::pools::Pools;

/// Everything one request reads, loaded once at its start and kept for its whole life
/// (retries included), so a later swap never mixes two configurations in one request.
pub struct RouterState {
    pub snapshot: Arc<Snapshot>,
    pub pools: Pools,
}

impl RouterState {
    pub fn new(snapshot: Snapshot) -> Self {
        let pools = Pools::new(&snapshot);
        RouterState {
            snapshot: Arc::new(snapshot),
            pools,
        }
    }
}

/// The swappable pointer to the current state. Reloads (a later issue) store a new one.
pub type SharedState = Arc<ArcSwap<RouterState>>;

pub fn shared(snapshot: Snapshot) -> SharedState {
    Arc::new(ArcSwap::from_pointee(RouterState::new(snapshot)))
}
