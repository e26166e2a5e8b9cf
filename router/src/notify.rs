//! What systemd hears of the router (`Type=notify`, see deploy/systemd/): `READY=1` when
//! `/readyz` would answer 200 (the first health round is in and there is a registry);
//! `STOPPING=1` when a drain for a stop begins. An upgrade started by SIGUSR2
//! ([`crate::successor`]) is no stop: the old process names the successor as the main process
//! (`MAINPID`) as it hands over its listeners, since from then on the successor is the one
//! serving, and the successor says `READY=1` once it is. Without `NOTIFY_SOCKET` (not under
//! systemd) nothing is sent.

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

/// The drain for a stop began: systemd shows the unit as stopping while in-flight requests
/// finish.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// The listeners go to `successor`, which systemd follows from now on; this process drains.
pub(crate) fn handing_over(successor: u32) {
    let status = format!("handing over to the upgraded process {successor}");
    send(&[
        NotifyState::MainPid(successor),
        NotifyState::Status(&status),
    ]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
