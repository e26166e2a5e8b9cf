//! The admin write path (`change`) without sockets: an in-memory [`RegistryWriter`] and a
//! registry store that fails where told, so every store failure has a unit test. The real
//! file store and reloader are exercised end to end in `router/tests/it/admin*.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use regions::TenantId;
use residency_config::{PublishError, Registry, RegistryStore, Snapshot, Staged, TenantChange};
use residency_dataplane::clock::Clock;
use residency_dataplane::health::{states_for, HealthStates};
use residency_dataplane::lifecycle::Readiness;
use residency_dataplane::metrics::Metrics;
use residency_dataplane::request_id::RequestIds;
use residency_dataplane::state::{self, RouterState, SharedState};

use super::*;

const OPERATOR: &str = "unit-operator-token";

/// Makes changes live by swapping the shared state, as the reloader does, under one lock.
struct InMemoryWriter {
    state: SharedState,
    health: HealthStates,
    lock: Mutex<()>,
    /// What `registry_changed_on_disk` answers.
    edited_on_disk: bool,
}

struct Held<'a> {
    writer: &'a InMemoryWriter,
    _lock: std::sync::MutexGuard<'a, ()>,
}

impl RegistryWriter for InMemoryWriter {
    fn lock(&self) -> Box<dyn RegistryLock + '_> {
        Box::new(Held {
            writer: self,
            _lock: self.lock.lock().unwrap(),
        })
    }
}

impl RegistryLock for Held<'_> {
    fn current(&self) -> Arc<RouterState> {
        self.writer.state.load_full()
    }

    fn registry_changed_on_disk(&self) -> bool {
        self.writer.edited_on_disk
    }

    fn swap_registry(&self, registry: Arc<Registry>) -> u64 {
        let current = self.current();
        let mut snapshot = (*current.snapshot).clone();
        snapshot.registry = registry;
        let mut next = RouterState::new(
            snapshot,
            &self.writer.health,
            &current.families,
            &current.clock,
        );
        next.generation = current.generation + 1;
        let generation = next.generation;
        self.writer.state.store(Arc::new(next));
        generation
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    Stage,
    NotPublished,
    NotDurable,
}

/// A store that records what it was asked to stage and fails as told.
struct FaultyStore {
    fault: Fault,
    staged: AtomicUsize,
}

struct StagedChange(Fault);

impl Staged for StagedChange {
    fn publish(self: Box<Self>) -> Result<(), PublishError> {
        match self.0 {
            Fault::NotPublished => Err(PublishError::NotPublished(std::io::Error::other("rename"))),
            Fault::NotDurable => Err(PublishError::NotDurable(std::io::Error::other("fsync"))),
            Fault::None | Fault::Stage => Ok(()),
        }
    }
}

impl RegistryStore for FaultyStore {
    fn stage(
        &self,
        _change: &TenantChange,
        _registry: &Registry,
        _live: &Snapshot,
    ) -> std::io::Result<Box<dyn Staged>> {
        self.staged.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::Stage => Err(std::io::Error::other("disk full")),
            fault => Ok(Box::new(StagedChange(fault))),
        }
    }
}

struct Fixture {
    api: Api,
    store: Arc<FaultyStore>,
    audit_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture(fault: Fault, edited_on_disk: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tables = format!(
        "[admin]\naudit_log = \"audit.log\"\n[[admin.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
        auth::token_hash(OPERATOR)
    );
    let backends: Vec<Vec<SocketAddr>> = (0..4)
        .map(|i| vec![SocketAddr::from(([127, 0, 0, 1], 9 + i))])
        .collect();
    let config = residency_testkit::write_config(
        dir.path(),
        "127.0.0.1:8080".parse().unwrap(),
        &[("admin", "127.0.0.1:9901".parse().unwrap())],
        &backends,
        residency_testkit::DEMO_TENANTS,
        &tables,
        &[""; 4],
    )
    .unwrap();
    let snapshot = residency_config::load(&config).expect("the fixture config is valid");
    let health = states_for(&snapshot, None);
    let shared = state::shared(
        snapshot.clone(),
        &health,
        &Metrics::standalone(),
        &Clock::start(),
    );
    let settings = snapshot.admin.as_ref().unwrap().audit.clone();
    let store = Arc::new(FaultyStore {
        fault,
        staged: AtomicUsize::new(0),
    });
    let admin = Admin {
        state: Arc::clone(&shared),
        writer: Arc::new(InMemoryWriter {
            state: shared,
            health,
            lock: Mutex::new(()),
            edited_on_disk,
        }),
        store: Arc::clone(&store) as Arc<dyn RegistryStore>,
        audit: Arc::new(audit::AuditLog::open(&settings).unwrap()),
        fleet: None,
        readiness: Readiness::new().0,
        ids: Arc::new(RequestIds::default()),
    };
    Fixture {
        api: Api::new(Arc::new(admin)),
        store,
        audit_path: settings.path,
        _dir: dir,
    }
}

/// `PUT /v1/tenants/acme` moving acme (home `us`) to `eu`, as the operator.
fn move_acme_to_eu() -> Call {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {OPERATOR}")).unwrap(),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Call {
        headers,
        query: String::new(),
        id: Some("acme".to_owned()),
        body: Some(Bytes::from_static(br#"{"region": "eu"}"#)),
        source: SocketAddr::from(([127, 0, 0, 1], 40000)),
        request_id: "unit-1".to_owned(),
    }
}

fn acme_home(api: &Api) -> String {
    let state = api.state.load();
    let record = state
        .snapshot
        .registry
        .get(&TenantId::parse(b"acme").unwrap())
        .unwrap();
    state.snapshot.topology.region(record.home).name.clone()
}

/// The audit log's outcomes, in order.
fn audited(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            format!("{} {}", entry["outcome"].as_str().unwrap(), entry["status"])
        })
        .collect()
}

#[test]
fn each_store_outcome_gives_its_answer_its_live_state_and_its_audit() {
    // (fault, file edited on disk, status, error code, acme's home after, stage calls, audit)
    type Case = (
        Fault,
        bool,
        StatusCode,
        Option<&'static str>,
        &'static str,
        usize,
        &'static [&'static str],
    );
    let table: &[Case] = &[
        (
            Fault::None,
            false,
            StatusCode::OK,
            None,
            "eu",
            1,
            &["applied 200"],
        ),
        (
            Fault::Stage,
            false,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("store_unavailable"),
            "us",
            1,
            &[],
        ),
        (
            Fault::NotPublished,
            false,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("store_unavailable"),
            "us",
            1,
            &["applied 200", "failed 503"],
        ),
        // In the file and live, audited as applied, but reported: a power loss may undo it.
        (
            Fault::NotDurable,
            false,
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("store_not_durable"),
            "eu",
            1,
            &["applied 200"],
        ),
        // Someone edited the registry file: nothing is staged, nothing changes.
        (
            Fault::None,
            true,
            StatusCode::CONFLICT,
            Some("registry_changed_on_disk"),
            "us",
            0,
            &[],
        ),
    ];
    for &(fault, edited, status, code, home, staged, audit) in table {
        let fixture = fixture(fault, edited);
        let generation = fixture.api.state.load().generation;
        let answer = put_tenant(&fixture.api, &move_acme_to_eu());
        let case = format!("{fault:?}, edited on disk: {edited}");
        match (&answer, code) {
            (Ok(response), None) => assert_eq!(response.status(), status, "{case}"),
            (Err(error), Some(code)) => {
                assert_eq!((error.status, error.code), (status, code), "{case}");
            }
            (answer, _) => panic!("{case}: unexpected {answer:?}"),
        }
        assert_eq!(acme_home(&fixture.api), home, "{case}: live state");
        let swapped = u64::from(home == "eu");
        assert_eq!(
            fixture.api.state.load().generation,
            generation + swapped,
            "{case}"
        );
        assert_eq!(
            fixture.store.staged.load(Ordering::SeqCst),
            staged,
            "{case}: stage calls"
        );
        assert_eq!(audited(&fixture.audit_path), audit, "{case}: audit log");
    }
}

#[test]
fn an_unchanged_tenant_is_answered_without_touching_the_store() {
    let fixture = fixture(Fault::Stage, false);
    let mut call = move_acme_to_eu();
    call.body = Some(Bytes::from_static(br#"{"region": "us"}"#));
    let response = put_tenant(&fixture.api, &call).expect("a no-op change succeeds");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fixture.store.staged.load(Ordering::SeqCst), 0);
    assert!(audited(&fixture.audit_path).is_empty());
}
