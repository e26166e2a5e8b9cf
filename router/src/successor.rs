//! A zero-downtime upgrade the router starts itself, on SIGUSR2 (as nginx's binary upgrade):
//! it starts its successor, the binary now at its own path with its own arguments plus
//! `--upgrade`, waits until the successor listens on the upgrade socket, and only then hands
//! over its listeners (Pingora's SIGQUIT path). A successor listens there once it has loaded
//! everything and its first round of health checks is in (`server::run`). It is this
//! process's child, so it stays in the service's cgroup, and systemd is told it is the main
//! process now ([`crate::notify::handing_over`]).
//!
//! Pingora shuts the old process down even when the hand-over fails, so the hand-over starts
//! only once the successor is there to receive: a successor that does not get there (a bad
//! binary, a config that no longer validates, no registry) leaves this process serving.

use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a successor may take to load its configuration and registry (a million tenants:
/// about a second from a file, four from etcd), run its first health round and start waiting
/// for the listeners.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Successor {
    pub(crate) upgrade_socket: PathBuf,
}

impl Successor {
    /// Starts the successor and returns its pid once it waits on the upgrade socket and
    /// systemd (if there is one) follows it.
    pub(crate) async fn start(&self) -> Result<u32, String> {
        // In a container the router is process 1: the container ends with it, successor and all.
        if std::process::id() == 1 {
            return Err(
                "the router is process 1 (a container): roll out a new image instead".into(),
            );
        }
        let before = socket_id(&self.upgrade_socket);
        let args = successor_args(std::env::args_os());
        let (program, args) = args.split_first().ok_or("no program name in argv")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", Path::new(program).display()))?;
        let pid = child.id();
        tracing::info!(pid, program = %Path::new(program).display(), "SIGUSR2: successor started");
        let started = Instant::now();
        loop {
            if let Some(status) = exited(&mut child) {
                return Err(format!("the successor exited first ({status})"));
            }
            if receiving(before, socket_id(&self.upgrade_socket)) {
                // Told before the hand-over: were the old process to exit as main, systemd
                // would stop the unit, successor included.
                if let Err(e) = crate::notify::handing_over(pid) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "systemd cannot be told of the successor ({e}); stopped it"
                    ));
                }
                return Ok(pid);
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the successor did not wait on {} within {START_TIMEOUT:?}; stopped it",
                    self.upgrade_socket.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn exited(child: &mut Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        Ok(None) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// The arguments this process was started with, asking for `--upgrade` once.
fn successor_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.collect();
    if !args.iter().any(|a| a == "--upgrade") {
        args.push("--upgrade".into());
    }
    args
}

/// Which socket is at the path, if one is: its inode and change time (an inode number
/// alone may be reused by the socket bound in place of a removed one).
type SocketId = (u64, i64, i64);

fn socket_id(path: &Path) -> Option<SocketId> {
    let m = std::fs::metadata(path).ok()?;
    m.file_type()
        .is_socket()
        .then(|| (m.ino(), m.ctime(), m.ctime_nsec()))
}

/// The successor waits for the listeners once a socket is at the path that was not there
/// before: a predecessor's socket left at the same path does not count.
fn receiving(before: Option<SocketId>, now: Option<SocketId>) -> bool {
    now.is_some() && now != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_successor_runs_the_same_command_with_upgrade_once() {
        let first = args(&[
            "/usr/bin/residency-router",
            "--log-format",
            "json",
            "run",
            "--config",
            "/etc/r.toml",
        ]);
        let second = successor_args(first.clone().into_iter());
        assert_eq!(second[..first.len()], first[..]);
        assert_eq!(second[first.len()..], args(&["--upgrade"])[..]);
        // A successor upgrading in turn asks for it once.
        assert_eq!(successor_args(second.clone().into_iter()), second);
    }

    #[test]
    fn only_a_new_socket_means_the_successor_is_receiving() {
        let (old, new) = ((7, 100, 0), (7, 100, 5));
        assert!(!receiving(None, None));
        assert!(receiving(None, Some(old)));
        assert!(
            !receiving(Some(old), Some(old)),
            "a predecessor's socket left behind"
        );
        assert!(
            receiving(Some(old), Some(new)),
            "bound again, on a reused inode"
        );
        assert!(!receiving(Some(old), None), "removed, not bound again yet");
    }
}
