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

/// Sends `READY=1` once the router is ready, then nothing more. Started once the listening
/// sockets are this process's (a successor's, after the hand-over), so that a successor never
/// claims the service before it serves.
pub(crate) struct NotifyReady {
    pub(crate) readiness: Readiness,
    pub(crate) state: SharedState,
}

#[async_trait]
impl BackgroundService for NotifyReady {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The readiness latch and the registry have no change notification of their own; a
        // one-off wait at start can poll.
        while !(self.readiness.is_ready() && self.state.load().snapshot.registry_status.loaded) {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let state = self.state.load();
        send(&[
            NotifyState::MainPid(std::process::id()),
            NotifyState::Ready,
            NotifyState::Status(&status(state.snapshot.registry.len(), state.generation)),
        ]);
    }
}

/// The drain for a stop began: systemd shows the unit as stopping while in-flight requests
/// finish.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// The listeners go to `successor`, which systemd follows from now on; this process drains.
/// Without a service manager there is no one to tell, and it is `Ok`.
pub(crate) fn handing_over(successor: u32) -> std::io::Result<()> {
    let status = format!("handing over to the upgraded process {successor}");
    sd_notify::notify(&[
        NotifyState::MainPid(successor),
        NotifyState::Status(&status),
    ])
}

/// A reload or a registry change applied: `systemctl status` shows what is served now.
pub(crate) fn serving(tenants: usize, generation: u64) {
    send(&[NotifyState::Status(&status(tenants, generation))]);
}

fn status(tenants: usize, generation: u64) -> String {
    format!("serving {tenants} tenants, configuration generation {generation}")
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
