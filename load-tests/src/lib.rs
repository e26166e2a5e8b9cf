//! What the load-test binaries share: ports, starting the router and its peers, pinning them
//! to cores, the load generators, medians and the report.

#![forbid(unsafe_code)]

pub mod backend;
pub mod load;
pub mod peers;
pub mod report;
pub mod scale;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the bare forwarders (`bare-pingora`, `bare-hyper`) take.
#[derive(clap::Parser)]
pub struct ForwarderArgs {
    /// Where to listen (HTTP/1.1 and h2c with prior knowledge).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The one backend.
    #[arg(long)]
    pub backend: SocketAddr,
    /// Worker threads (1: one current-thread runtime, as one Pingora worker).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits (up to 60 s: a process may run under valgrind) until something accepts connections on `addr`.
pub fn wait_for(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `residency-router run --config CONFIG` as `command` (the binary, maybe behind `taskset`),
/// warnings and errors to `log`, waiting until it accepts connections on `addr`.
pub fn run_router(mut command: Command, config: &Path, log: &Path, addr: SocketAddr) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let child = command
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the router: {e}"));
    wait_for(addr, "the router");
    child
}

/// The middle value (the upper one of an even count); sorts `values`.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A child process, killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    /// SIGTERM first, so a master process (nginx, HAProxy) stops its workers; SIGKILL after
    /// 2 s. Killed outright, nginx's master left its workers running, holding their ports.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program` pinned to `cores` (a `taskset` list: `0`, `0-1`) with `taskset`.
pub fn pinned(cores: &str, program: &Path) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", cores]).arg(program);
    command
}
