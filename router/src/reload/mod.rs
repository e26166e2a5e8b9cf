//! Hot reload: validate -> build -> swap, never a half-applied or invalid configuration.
//!
//! Triggers: SIGHUP, the control socket (`residency-router reload [--force]`), and a file
//! watcher on the config, the registry and the GeoIP database. Every trigger ends in
//! [`Reloader::reload`], which runs on a blocking thread, serialised: the new snapshot is
//! loaded and validated, compared with the running one (tenants changing home region, listener
//! changes that need a restart), checked against the mass-move guard, then built into a new
//! state that keeps every staying backend's health, and swapped in with one pointer store.
//! Requests in flight keep the state they started with. Outcomes are counted in
//! `residency_config_reloads_total` and `residency_config_generation`.

mod guards;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use residency_config::{ConfigErrors, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::watch;

use residency_dataplane::health::{self, CheckPlan, HealthStates};
use residency_dataplane::lifecycle::Drain;
use residency_dataplane::state::{RouterState, SharedState};
use residency_dataplane::tls;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegionMove {
    pub from: String,
    pub to: String,
    pub tenants: usize,
}

/// What an applied reload changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadReport {
    pub generation: u64,
    pub tenants: usize,
    pub moved_tenants: usize,
    pub moves: Vec<RegionMove>,
    pub backends_added: usize,
    pub backends_removed: usize,
    /// Settings that changed but only take effect after a restart (listeners).
    pub restart_needed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid, the running one keeps serving: {0}")]
    Invalid(ConfigErrors),
    #[error(
        "refused: {moved} of {total} tenants ({percent:.1}%) would change home region, above \
         reload.max_moved_percent = {limit}%; if the registry is right, reload with --force"
    )]
    MassMove {
        moved: usize,
        total: usize,
        percent: f64,
        limit: u32,
    },
    #[error(
        "refused: {}; install a valid certificate, or reload with --force to serve it anyway",
        .0.join("; ")
    )]
    CertificateNotValid(Vec<String>),
}

pub struct Reloader {
    config_path: PathBuf,
    shared: SharedState,
    health: Mutex<HealthStates>,
    plans: watch::Sender<Arc<CheckPlan>>,
    /// One reload or registry change at a time: triggers and admin calls may come together.
    serialised: Mutex<()>,
    /// The config and registry files as they were when last loaded or written: the file
    /// watcher leaves alone what is already live, and a registry change through the admin API
    /// refuses to overwrite a file edited since.
    live_files: Mutex<Files>,
    /// Fleet mode: where `reload --force` releases a registry change the guard held.
    pub fleet: std::sync::OnceLock<residency_fleet::Fleet>,
}

/// The reload lock, held: nothing else reloads or changes the registry meanwhile.
pub struct Exclusive<'a> {
    reloader: &'a Reloader,
    _serialised: std::sync::MutexGuard<'a, ()>,
}

impl Exclusive<'_> {
    pub fn current(&self) -> Arc<RouterState> {
        self.reloader.current()
    }

    /// The registry file changed on disk since it was loaded or written, and that version is
    /// not live: writing now would silently discard the edit.
    pub fn registry_changed_on_disk(&self) -> bool {
        let state = self.current();
        let live = self
            .reloader
            .live_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registry;
        geoip::file_stamp(&state.snapshot.registry_path) != live
    }

    /// Serves `registry` from the next request on, with everything else unchanged. Call it
    /// once the change is durable. Returns the new generation.
    pub fn swap_registry(&self, registry: Arc<residency_config::Registry>) -> u64 {
        let reloader = self.reloader;
        let current = reloader.current();
        let mut snapshot = (*current.snapshot).clone();
        snapshot.registry = registry;
        let registry_stamp = geoip::file_stamp(&snapshot.registry_path);
        let health = reloader.health.lock().unwrap_or_else(|p| p.into_inner());
        let generation = reloader.install(snapshot, &health);
        reloader
            .live_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registry = registry_stamp;
        generation
    }
}

impl residency_admin::RegistryLock for Exclusive<'_> {
    fn current(&self) -> Arc<RouterState> {
        Exclusive::current(self)
    }

    fn registry_changed_on_disk(&self) -> bool {
        Exclusive::registry_changed_on_disk(self)
    }

    fn swap_registry(&self, registry: Arc<residency_config::Registry>) -> u64 {
        Exclusive::swap_registry(self, registry)
    }
}

/// The admin API's changes take the reload lock: they never interleave with a reload.
impl residency_admin::RegistryWriter for Reloader {
    fn lock(&self) -> Box<dyn residency_admin::RegistryLock + '_> {
        Box::new(self.exclusive())
    }
}

impl Reloader {
    /// Makes `snapshot` live as the next generation (the process starts at 1, and every
    /// applied reload or registry change adds one). Callers hold the reload lock.
    fn install(&self, snapshot: Snapshot, health: &HealthStates) -> u64 {
        let generation = self.current().generation + 1;
        let current = self.current();
        let families = Arc::clone(&current.families);
        let mut state = RouterState::new(snapshot, health, &families, &current.clock);
        state.generation = generation;
        let tenants = state.snapshot.registry.len();
        self.shared.store(Arc::new(state));
        families.generation.set(generation as i64);
        crate::notify::serving(tenants, generation);
        generation
    }

    pub fn new(
        config_path: PathBuf,
        shared: SharedState,
        health: HealthStates,
        plans: watch::Sender<Arc<CheckPlan>>,
    ) -> Self {
        let state = shared.load_full();
        state.families.generation.set(1);
        state.families.last_success.set(state.clock.unix_now().0);
        let live_files = files_of(&shared.load().snapshot);
        Reloader {
            config_path,
            shared,
            health: Mutex::new(health),
            plans,
            serialised: Mutex::new(()),
            live_files: Mutex::new(live_files),
            fleet: std::sync::OnceLock::new(),
        }
    }

    pub fn current(&self) -> Arc<RouterState> {
        self.shared.load_full()
    }

    /// Takes the reload lock (blocking): for changes that must not interleave with reloads.
    pub fn exclusive(&self) -> Exclusive<'_> {
        Exclusive {
            reloader: self,
            _serialised: self.serialised.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    fn live_files(&self) -> Files {
        self.live_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads, checks and applies the configuration on disk. Blocking: call it from a
    /// blocking thread, never from a request.
    pub fn reload(&self, force: bool) -> Result<ReloadReport, ReloadError> {
        if let (true, Some(fleet)) = (force, self.fleet.get()) {
            fleet.force_next();
        }
        let _one_at_a_time = self.exclusive();
        let result = self.reload_now(force);
        match &result {
            Ok(report) => {
                let state = self.current();
                let metrics = &state.families;
                metrics.reloads.with_label_values(&["success"]).inc();
                metrics.last_success.set(state.clock.unix_now().0);
                let moves: Vec<String> = report
                    .moves
                    .iter()
                    .map(|m| format!("{}->{} {}", m.from, m.to, m.tenants))
                    .collect();
                tracing::info!(
                    generation = report.generation,
                    tenants = report.tenants,
                    backends_added = report.backends_added,
                    backends_removed = report.backends_removed,
                    "configuration reloaded; {} tenants change region: {}",
                    report.moved_tenants,
                    if moves.is_empty() {
                        "none".to_owned()
                    } else {
                        moves.join(", ")
                    }
                );
                tls::warn_about(&state.snapshot, state.clock.unix_now());
                for setting in &report.restart_needed {
                    tracing::warn!(setting, "changed, but only takes effect after a restart");
                }
            }
            Err(error) => {
                self.current()
                    .families
                    .reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(%error, "reload failed; the running configuration keeps serving");
            }
        }
        result
    }

    fn reload_now(&self, force: bool) -> Result<ReloadReport, ReloadError> {
        // Stamped before reading: a write during the load shows up as a later change.
        let files = files_of(&self.current().snapshot);
        let current = self.current();
        let new = residency_config::reload(&self.config_path, &current.snapshot)
            .map_err(ReloadError::Invalid)?;
        let old = &current.snapshot;

        let moves = guards::region_moves(old, &new);
        let moved: usize = moves.values().sum();
        guards::judge_moves(moved, old.registry.len(), &old.reload, force).map_err(|refused| {
            ReloadError::MassMove {
                moved: refused.moved,
                total: refused.total,
                percent: refused.percent,
                limit: refused.limit,
            }
        })?;

        let not_valid = new
            .tls
            .invalid_replacements(&old.tls, current.clock.unix_now().0);
        if !force && !not_valid.is_empty() {
            return Err(ReloadError::CertificateNotValid(not_valid));
        }
        tls::warn_about_change(old, &new);

        let restart_needed = guards::restart_needed(old, &new);
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let states = health::states_for(&new, Some(&health));
        let backends_added = states.keys().filter(|a| !health.contains_key(a)).count();
        let backends_removed = health.keys().filter(|a| !states.contains_key(a)).count();
        let plan = health::plan_for(&new, &states);
        let tenants = new.registry.len();
        // Files that only the new configuration names were not stamped above: stamp them now
        // (the config and registry keep their stamps from before the load).
        let files = if watched_beside_config(old).eq(watched_beside_config(&new)) {
            files
        } else {
            Files {
                config: std::iter::once(files.config[0])
                    .chain(watched_beside_config(&new).map(geoip::file_stamp))
                    .collect(),
                registry: files.registry,
            }
        };
        // The swap: requests from here on see the new state; requests in flight keep theirs,
        // and with it the backends that were just removed, until they finish.
        let generation = self.install(new, &states);
        *health = states;
        // Only the check loops of sites whose checks changed restart.
        let _ = self.plans.send(Arc::new(plan));
        *self.live_files.lock().unwrap_or_else(|p| p.into_inner()) = files;
        Ok(ReloadReport {
            generation,
            tenants,
            moved_tenants: moved,
            moves: moves
                .into_iter()
                .map(|((from, to), tenants)| RegionMove { from, to, tenants })
                .collect(),
            backends_added,
            backends_removed,
            restart_needed,
        })
    }
}

/// The control socket's answer, one JSON line.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlAnswer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReloadReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

async fn reload_in_background(reloader: &Arc<Reloader>, force: bool) -> ControlAnswer {
    let reloader = Arc::clone(reloader);
    match tokio::task::spawn_blocking(move || reloader.reload(force)).await {
        Ok(Ok(report)) => ControlAnswer {
            ok: true,
            report: Some(report),
            error: None,
        },
        Ok(Err(e)) => ControlAnswer {
            ok: false,
            report: None,
            error: Some(e.to_string()),
        },
        Err(e) => ControlAnswer {
            ok: false,
            report: None,
            error: Some(format!("reload task failed: {e}")),
        },
    }
}

/// SIGHUP and the control socket, as a Pingora background service.
pub struct ReloadTriggers {
    pub reloader: Arc<Reloader>,
    pub control_socket: Option<PathBuf>,
}

#[async_trait]
impl BackgroundService for ReloadTriggers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot handle SIGHUP; reload with the control socket");
                return;
            }
        };
        let listener = self.control_socket.as_deref().and_then(bind_control_socket);
        loop {
            let accept = async {
                match &listener {
                    // A failed accept (EMFILE under load) is retried, never the end of the socket.
                    Some((l, _)) => loop {
                        match l.accept().await {
                            Ok((stream, _)) => break stream,
                            Err(e) => {
                                tracing::warn!(error = %e, "control socket accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = hangups.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    reload_in_background(&self.reloader, false).await;
                }
                stream = accept => {
                    let reloader = Arc::clone(&self.reloader);
                    tokio::spawn(serve_control(stream, reloader));
                }
            }
        }
        // After an upgrade the new process has bound the same path: remove the file only if
        // it is still the socket this process made.
        if let (Some(path), Some((_, inode))) = (&self.control_socket, &listener) {
            if socket_inode(path) == Some(*inode) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn socket_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

fn bind_control_socket(path: &Path) -> Option<(tokio::net::UnixListener, u64)> {
    // A socket left by a previous process (or held by one being upgraded away) would make
    // bind fail; this process takes the path over.
    let _ = std::fs::remove_file(path);
    match tokio::net::UnixListener::bind(path) {
        Ok(listener) => {
            tracing::info!(path = %path.display(), "control socket listening");
            Some((listener, socket_inode(path)?))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot listen on the control socket");
            None
        }
    }
}

/// One request per connection: `reload` or `reload --force`, answered with one JSON line.
async fn serve_control(stream: tokio::net::UnixStream, reloader: Arc<Reloader>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut lines = tokio::io::BufReader::new(read);
    if lines.read_line(&mut line).await.is_err() {
        return;
    }
    let answer = match line.trim() {
        "reload" => reload_in_background(&reloader, false).await,
        "reload --force" => reload_in_background(&reloader, true).await,
        other => ControlAnswer {
            ok: false,
            report: None,
            error: Some(format!(
                "unknown command `{other}`; use `reload` or `reload --force`"
            )),
        },
    };
    let mut json = serde_json::to_vec(&answer).expect("answers serialize");
    json.push(b'\n');
    let _ = write.write_all(&json).await;
}

/// The CLI side: asks the router behind `socket` to reload and returns its answer.
pub fn request_reload(socket: &Path, force: bool) -> std::io::Result<ControlAnswer> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    let command = if force {
        "reload --force\n"
    } else {
        "reload\n"
    };
    stream.write_all(command.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// Polls the config, the registry and the GeoIP file on its own thread. A change is applied
/// once the file has stopped changing for one interval (editors and deploy tools write in
/// steps); replacement by rename, as Kubernetes ConfigMaps do, is a change like any other.
/// Stops once the router drains.
pub fn watch_files(reloader: Arc<Reloader>, drain: Drain) {
    let spawned = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            let mut applied = files_of(&reloader.current().snapshot);
            let mut last_seen = applied.clone();
            loop {
                let state = reloader.current();
                let snapshot = &state.snapshot;
                let geoip_every = snapshot.geoip.as_ref().map(|g| g.reload_check);
                let every = geoip_every.map_or(snapshot.reload.watch_interval, |g| {
                    g.min(snapshot.reload.watch_interval)
                });
                std::thread::sleep(every);
                if drain.is_draining() {
                    return;
                }
                if let Some(geoip) = &state.snapshot.geoip {
                    log_geoip(&geoip.database, geoip.database.reload_if_changed());
                }
                if !state.snapshot.reload.watch {
                    continue;
                }
                let now = files_of(&state.snapshot);
                // Registry writes through the admin API are live already.
                if now == reloader.live_files() {
                    applied = now.clone();
                }
                if now != applied && now == last_seen {
                    tracing::info!("configuration files changed: reloading");
                    // Applied or refused, this version has been judged; a failed one is not
                    // retried until the files change again.
                    let _ = reloader.reload(false);
                    applied = now.clone();
                }
                last_seen = now;
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the file watcher; reload with SIGHUP or the control socket");
    }
}

fn log_geoip(database: &geoip::LiveDatabase, result: geoip::Reloaded) {
    match result {
        geoip::Reloaded::Unchanged => {}
        geoip::Reloaded::Swapped => tracing::info!(
            path = %database.path().display(),
            build_epoch = database.current().build_epoch(),
            "GeoIP database reloaded"
        ),
        geoip::Reloaded::Kept(error) => tracing::error!(
            path = %database.path().display(),
            %error,
            "GeoIP database not reloaded; the previous one keeps serving"
        ),
    }
}

type Stamp = Option<geoip::FileStamp>;

/// The files a configuration was loaded from, as they were then.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Files {
    /// The config file, then every certificate, key and CA file it names, and the admin
    /// tokens file.
    config: Vec<Stamp>,
    registry: Stamp,
}

/// The files a configuration names that are watched with it: every certificate, key and CA
/// file, and the admin tokens file.
fn watched_beside_config(snapshot: &Snapshot) -> impl Iterator<Item = &Path> {
    let tokens_file = snapshot
        .admin
        .as_ref()
        .and_then(|a| a.tokens_file.as_deref());
    snapshot.tls_files().chain(tokens_file)
}

fn files_of(snapshot: &Snapshot) -> Files {
    Files {
        config: std::iter::once(geoip::file_stamp(&snapshot.config_path))
            .chain(watched_beside_config(snapshot).map(geoip::file_stamp))
            .collect(),
        // In fleet mode the registry comes from etcd; its cache file is the router's own.
        registry: match snapshot.etcd {
            None => geoip::file_stamp(&snapshot.registry_path),
            Some(_) => None,
        },
    }
}

/// Fleet mode: registry changes from etcd take the reload lock, and the mass-move guard
/// judges them as it judges a reload.
impl residency_fleet::RegistrySink for Reloader {
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current().snapshot)
    }

    fn install(
        &self,
        build: &mut dyn FnMut(&Snapshot) -> residency_fleet::Proposed,
        status: residency_config::RegistryStatus,
        force: bool,
    ) -> Result<(), String> {
        let _one_at_a_time = self.exclusive();
        let current = self.current();
        let old = &current.snapshot;
        let mut new = (**old).clone();
        let proposed = build(old);
        new.registry = Arc::new(proposed.registry);
        new.registry_status = status;
        // The first registry a router gets moves nothing: it had none.
        if old.registry_status.loaded {
            let moved = match &proposed.changed {
                Some(changed) => guards::moved_among(old, &new, changed),
                None => guards::region_moves(old, &new).values().sum(),
            };
            guards::judge_moves(moved, old.registry.len(), &old.reload, force).map_err(
                |refused| {
                    format!(
                        "{} of {} tenants ({:.1}%) would change home region or be removed, above reload.max_moved_percent = {}%",
                        refused.moved, refused.total, refused.percent, refused.limit
                    )
                },
            )?;
        }
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        self.install(new, &health);
        Ok(())
    }

    fn set_status(&self, status: residency_config::RegistryStatus) {
        let _one_at_a_time = self.exclusive();
        let mut new = (*self.current().snapshot).clone();
        new.registry_status = status;
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        self.install(new, &health);
    }
}
