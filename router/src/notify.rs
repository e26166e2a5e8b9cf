//! What systemd hears of the router (`Type=notify`, see deploy/systemd/): `READY=1` when
//! `/readyz` would answer 200 (the first health round is in and there is a registry), with
//! `MAINPID` so that a successor started by an upgrade ([`crate::successor`]) becomes the
//! service's main process; `STOPPING=1` when the drain begins. Without `NOTIFY_SOCKET` (not
//! under systemd) nothing is sent.

use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use residency_dataplane::lifecycle::Readiness;
use residency_dataplane::state::SharedState;
use sd_notify::NotifyState;

/// Sends `READY=1` once the router is ready, then nothing more.
pub(crate) struct NotifyReady {
    pub(crate) readiness: Readiness,
    pub(crate) state: SharedState,
}

#[async_trait]
impl BackgroundService for NotifyReady {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The readiness latch and the registry have no change notification of their own; a
        // one-off wait at start can poll.
        loop {
            if self.readiness.is_ready() && self.state.load().snapshot.registry_status.loaded {
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let state = self.state.load();
        let status = format!(
            "serving {} tenants, configuration generation {}",
            state.snapshot.registry.len(),
            state.generation
        );
        send(&[
            NotifyState::MainPid(std::process::id()),
            NotifyState::Ready,
            NotifyState::Status(&status),
        ]);
    }
}

/// The drain began: systemd shows the unit as stopping while in-flight requests finish.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
