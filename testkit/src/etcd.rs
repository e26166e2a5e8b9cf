//! A real etcd v3 cluster on loopback, run from the Debian binaries (`/usr/bin/etcd` 3.4,
//! `/usr/bin/etcdctl`): the router's etcd source is tested against the server it will meet in
//! production, including leader loss, restarts, partitions and compaction, rather than
//! against a mock that only behaves as we think etcd does.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::PortRegistry;

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
/// How long any wait on the cluster may take before the test fails with the members' logs:
/// generous, because the test machine may be busy building.
const WAIT: Duration = Duration::from_secs(30);
/// A paused (SIGSTOPped) member accepts connections in the kernel but never answers: every
/// probe must give up quickly rather than hang the test.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Hard bound on one etcdctl run, on top of its own dial and command timeouts.
const ETCDCTL_DEADLINE: Duration = Duration::from_secs(120);
/// Tests may load a million keys: state the 2 GiB backend quota (etcd 3.4's default) outright,
/// so a test's headroom does not hang on a default.
const QUOTA_BACKEND_BYTES: u64 = 2 << 30;
/// Lines of each member's log shown when a wait fails.
const LOG_TAIL_LINES: usize = 40;

/// Distinguishes the clusters of one process, for their directories and cluster tokens.
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// One etcd process and what it needs to be started again exactly as before.
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    dir: PathBuf,
    /// `None` once killed; behind a mutex so that `&self` waits can notice a member that died.
    child: Mutex<Option<Child>>,
    /// Paused members are left out of probes and etcdctl endpoints: they would only time out.
    paused: AtomicBool,
}

/// A running etcd cluster owned by one test (or the demo), so that the router's etcd client
/// is exercised against real quorum, elections and compaction. Dropping it SIGKILLs every
/// member, waits for each, and removes its data: nothing outlives the test that made it.
pub struct EtcdCluster {
    root: PathBuf,
    token: String,
    initial_cluster: String,
    members: Vec<Member>,
}

/// What a member says about itself on `/v3/maintenance/status`.
struct MemberStatus {
    id: u64,
    leader: u64,
    term: u64,
}

impl EtcdCluster {
    /// Starts `members` members (1..=5) on loopback ports from [`PortRegistry`], with data
    /// on tmpfs (so fsyncs cost nothing) and a cluster token of their own (so members of two
    /// clusters can never join each other), and returns once every member is healthy, so a
    /// test can use the cluster at once. Panics with the members' log tails after 30 s.
    pub fn start(members: usize) -> EtcdCluster {
        assert!(
            (1..=5).contains(&members),
            "an etcd test cluster has 1 to 5 members, not {members}"
        );
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let token = format!("residency-etcd-{}-{n}-{nanos}", std::process::id());
        let root = make_root(&token);

        // Hold every port until its member is spawned: etcd binds them itself, and nothing
        // else in this process may take them meanwhile.
        let held: Vec<_> = (0..members)
            .map(|_| (PortRegistry::hold(), PortRegistry::hold()))
            .collect();
        let initial_cluster = held
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://{}", peer.addr()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            root,
            token,
            initial_cluster,
            members: Vec::with_capacity(members),
        };
        for (i, (client, peer)) in held.iter().enumerate() {
            let dir = cluster.root.join(format!("m{i}"));
            fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("create etcd member dir {}: {e}", dir.display()));
            cluster.members.push(Member {
                name: format!("m{i}"),
                client: client.addr(),
                peer: peer.addr(),
                dir,
                child: Mutex::new(None),
                paused: AtomicBool::new(false),
            });
        }
        for (i, (client, peer)) in held.into_iter().enumerate() {
            client.release();
            peer.release();
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy();
        cluster
    }

    /// Client URLs in member order, for the router's etcd configuration.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// One member's client URL, to talk to that member alone (e.g. a serializable read on a
    /// member that just restarted).
    pub fn endpoint(&self, member: usize) -> String {
        format!("http://{}", self.members[member].client)
    }

    /// SIGKILLs a member and waits for it, keeping its data: a crash, not a removal, so that
    /// [`EtcdCluster::restart`] brings the same member back.
    pub fn kill(&mut self, member: usize) {
        let m = &self.members[member];
        let mut child = lock(&m.child)
            .take()
            .unwrap_or_else(|| panic!("etcd member {member} is not running"));
        let _ = child.kill();
        let _ = child.wait();
        m.paused.store(false, Ordering::SeqCst);
    }

    /// Starts a killed member again on its old ports and data, as an operator restarting a
    /// crashed node would, and returns once it answers healthy (it has rejoined a quorum).
    pub fn restart(&mut self, member: usize) {
        assert!(
            lock(&self.members[member].child).is_none(),
            "etcd member {member} is still running: kill it before restarting it"
        );
        self.spawn(member, "existing");
        let deadline = Instant::now() + WAIT;
        while !health(self.members[member].client) {
            self.check(
                deadline,
                &format!("member {member} to answer healthy after restart"),
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOPs a member: it keeps its sockets but answers nobody, as a member cut off by a
    /// network partition would look to its peers and clients.
    pub fn pause(&self, member: usize) {
        let m = &self.members[member];
        let pid = self.pid(member);
        signal("STOP", pid);
        m.paused.store(true, Ordering::SeqCst);
    }

    /// SIGCONTs a paused member: the partition heals.
    pub fn resume(&self, member: usize) {
        let m = &self.members[member];
        let pid = self.pid(member);
        signal("CONT", pid);
        m.paused.store(false, Ordering::SeqCst);
    }

    /// The index of the member that currently leads, so a test can kill or pause exactly the
    /// leader. Waits (bounded) until a running, unpaused member claims leadership; if two do
    /// (an old leader that has not heard of the new term yet), the higher term wins.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut best: Option<(u64, usize)> = None;
            for i in self.live() {
                if let Some(s) = status(self.members[i].client) {
                    if s.leader != 0
                        && s.leader == s.id
                        && best.is_none_or(|(term, _)| s.term > term)
                    {
                        best = Some((s.term, i));
                    }
                }
            }
            if let Some((_, i)) = best {
                return i;
            }
            self.check(deadline, "a leader");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until every running, unpaused member is healthy, i.e. sees a leader
    /// and can serve a quorum read: after a kill, restart or resume, the cluster is usable
    /// again once this returns.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let live = self.live();
            if live.iter().all(|&i| health(self.members[i].client)) {
                return;
            }
            self.check(deadline, "every running member to be healthy");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs etcdctl (v3 API) against every running, unpaused member and returns its stdout,
    /// so that tests can set up and inspect keys with the reference client. Panics with
    /// etcdctl's stderr if it fails. See [`EtcdCluster::try_etcdctl`] for the arguments.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.try_etcdctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?} failed: {e}"))
    }

    /// As [`EtcdCluster::etcdctl`], but a failure is a value: for tests that expect one (no
    /// quorum) or retry through an election. `args` come after the defaults, so a
    /// `--command-timeout=…` in them wins; an `--endpoints=…` in them replaces the default
    /// endpoints (etcdctl would otherwise append to them).
    pub fn try_etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3");
        if !args.iter().any(|a| a.starts_with("--endpoints")) {
            let live: Vec<String> = self.live().into_iter().map(|i| self.endpoint(i)).collect();
            if live.is_empty() {
                return Err("no running, unpaused etcd member to talk to".to_string());
            }
            cmd.arg(format!("--endpoints={}", live.join(",")));
        }
        cmd.arg("--command-timeout=5s").args(args);
        let (status, stdout, stderr) = run_bounded(cmd, ETCDCTL_DEADLINE)?;
        match status {
            Some(s) if s.success() => Ok(stdout),
            Some(s) => Err(format!("{s}: {stderr}{stdout}")),
            None => Err(format!(
                "killed after {ETCDCTL_DEADLINE:?}: {stderr}{stdout}"
            )),
        }
    }

    /// Compacts the keyspace up to `revision` and waits for the physical compaction, so a
    /// test can make the router's watch meet a compacted revision.
    pub fn compact(&self, revision: i64) {
        // Physical compaction of a large keyspace can take longer than etcdctl's default 5 s.
        self.etcdctl(&[
            "--command-timeout=60s",
            "compact",
            &revision.to_string(),
            "--physical",
        ]);
    }

    /// The cluster's current store revision (a linearizable read), so a test can compact
    /// at, or watch from, a revision it knows.
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl(&[
            "get",
            "/",
            "--prefix",
            "--limit=1",
            "--keys-only",
            "-w",
            "json",
        ]);
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("etcdctl get -w json gave {out:?}: {e}"));
        as_u64(&v["header"]["revision"])
            .and_then(|r| i64::try_from(r).ok())
            .unwrap_or_else(|| panic!("no header.revision in {out}"))
    }

    fn spawn(&self, member: usize, state: &str) {
        let m = &self.members[member];
        let data = m.dir.join("data");
        let log = m.dir.join("etcd.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("clone {}: {e}", log.display()));
        let client = format!("http://{}", m.client);
        let peer = format!("http://{}", m.peer);
        let child = Command::new(ETCD)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--initial-cluster-state={state}"))
            // Elections well under a second, so leader-loss tests stay fast.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg(format!("--quota-backend-bytes={QUOTA_BACKEND_BYTES}"))
            .arg("--logger=zap")
            .arg(format!("--log-outputs={}", log.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {ETCD}: {e}"));
        *lock(&m.child) = Some(child);
    }

    fn pid(&self, member: usize) -> u32 {
        lock(&self.members[member].child)
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("etcd member {member} is not running"))
    }

    /// Members that are running and not paused: the only ones worth asking anything.
    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| {
                let m = &self.members[i];
                !m.paused.load(Ordering::SeqCst) && lock(&m.child).is_some()
            })
            .collect()
    }

    /// Fails a wait that ran out of time, or whose member died under it, with what every
    /// member logged: an etcd test failure is undebuggable without it.
    fn check(&self, deadline: Instant, what: &str) {
        for (i, m) in self.members.iter().enumerate() {
            let exited = lock(&m.child)
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "etcd member {i} exited ({status}) while waiting for {what}\n{}",
                    self.log_tails()
                );
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {WAIT:?} waiting for {what}\n{}",
                self.log_tails()
            );
        }
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let log = m.dir.join("etcd.log");
            let text = fs::read_to_string(&log).unwrap_or_else(|e| format!("({e})"));
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            out.push_str(&format!(
                "--- {} ({}, client {}, peer {}) ---\n{}\n",
                m.name,
                log.display(),
                m.client,
                m.peer,
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &self.members {
            if let Some(mut child) = lock(&m.child).take() {
                // SIGKILL also ends a SIGSTOPped member.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A fresh directory for one cluster, on tmpfs when there is one.
fn make_root(token: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = shm.join(token);
        if fs::create_dir(&dir).is_ok() {
            return dir;
        }
    }
    let dir = std::env::temp_dir().join(token);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Locks a member's child even if a panicking test poisoned the lock: Drop must still kill it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn signal(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("run kill -{sig} {pid}: {e}"));
    assert!(status.success(), "kill -{sig} {pid}: {status}");
}

/// Whether a member says it is healthy on `/health`; any failure (including a paused member's
/// silence) is "not healthy".
fn health(addr: SocketAddr) -> bool {
    http(addr, "GET", "/health", "").is_some_and(|body| body.contains("\"health\":\"true\""))
}

fn status(addr: SocketAddr) -> Option<MemberStatus> {
    let body = http(addr, "POST", "/v3/maintenance/status", "{}")?;
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(MemberStatus {
        id: as_u64(&v["header"]["member_id"])?,
        leader: as_u64(&v["leader"]).unwrap_or(0),
        term: as_u64(&v["header"]["raft_term"]).unwrap_or(0),
    })
}

/// etcd's HTTP gateway writes 64-bit integers as strings, etcdctl's JSON as numbers.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A minimal HTTP/1.0 exchange (the server closes the connection after answering), bounded
/// by [`PROBE_TIMEOUT`] per step; the body of a 200 answer, or `None`.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let deadline = Instant::now() + PROBE_TIMEOUT * 2;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    if status_line.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    Some(body.to_string())
}

/// Runs a command with its output captured, killing it at `deadline`: exit status (`None`
/// if killed), stdout and stderr.
fn run_bounded(
    mut cmd: Command,
    deadline: Duration,
) -> Result<(Option<ExitStatus>, String, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    // Read both pipes while the command runs, so a large output cannot block it.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + deadline;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("wait for {cmd:?}: {e}"));
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retries a put through elections and leader changes, which fail single requests.
    fn put_eventually(cluster: &EtcdCluster, key: &str, value: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match cluster.try_etcdctl(&["put", key, value]) {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => panic!("put {key} never succeeded: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    #[test]
    fn etcd_three_members_serve_puts_and_gets() {
        let cluster = EtcdCluster::start(3);
        assert_eq!(cluster.endpoints().len(), 3);
        cluster.etcdctl(&["put", "k", "v"]);
        let got = cluster.etcdctl(&["get", "k", "--print-value-only"]);
        assert_eq!(got.trim(), "v");
        assert!(cluster.leader() < 3);
        let before = cluster.revision();
        cluster.etcdctl(&["put", "k", "w"]);
        assert_eq!(cluster.revision(), before + 1);
        cluster.compact(before);
    }

    #[test]
    fn etcd_survives_leader_kill_and_restarted_member_catches_up() {
        let mut cluster = EtcdCluster::start(3);
        put_eventually(&cluster, "k", "v1");
        let old = cluster.leader();
        cluster.kill(old);
        let new = cluster.leader();
        assert_ne!(new, old);
        put_eventually(&cluster, "k", "v2");

        cluster.restart(old);
        let endpoints = format!("--endpoints={}", cluster.endpoint(old));
        let deadline = Instant::now() + WAIT;
        loop {
            let got = cluster.try_etcdctl(&[
                &endpoints,
                "get",
                "k",
                "--consistency=s",
                "--print-value-only",
            ]);
            if got.as_deref().map(str::trim) == Ok("v2") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "restarted member {old} never caught up: {got:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        cluster.wait_healthy();
    }

    #[test]
    fn etcd_loses_quorum_when_two_of_three_pause_and_regains_it() {
        let cluster = EtcdCluster::start(3);
        put_eventually(&cluster, "k", "v1");
        cluster.pause(1);
        cluster.pause(2);
        let put = cluster.try_etcdctl(&["--command-timeout=1s", "put", "k", "v2"]);
        assert!(put.is_err(), "a put without quorum succeeded: {put:?}");
        cluster.resume(1);
        cluster.resume(2);
        cluster.wait_healthy();
        put_eventually(&cluster, "k", "v3");
        let got = cluster.etcdctl(&["get", "k", "--print-value-only"]);
        assert_eq!(got.trim(), "v3");
    }
}
