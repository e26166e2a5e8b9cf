//! What a reload may change, judged from two snapshots alone: the mass-move guard and the
//! settings that only a restart applies. Pure: no files, no clock, no state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use regions::TenantId;
use residency_config::{
    AccessLogSettings, AuditSettings, ClientLimits, Listen, ProxySettings, ReloadSettings,
    ServerSettings, Snapshot, TlsSettings, TlsVersion,
};

/// Tenants whose home region changes: moved to another region, or removed from the registry
/// (`to` = `(unregistered)`). A removed tenant's requests become unknown, and under a fallback
/// `unknown` policy they would be served in the fallback region: as much a move as any other.
pub(crate) fn region_moves(old: &Snapshot, new: &Snapshot) -> BTreeMap<(String, String), usize> {
    let mut moves = BTreeMap::new();
    for (id, before) in old.registry.iter() {
        let Ok(tenant) = TenantId::parse(id.as_bytes()) else {
            continue;
        };
        let from = &old.topology.region(before.home).name;
        let to = match new.registry.get(&tenant) {
            Some(after) => new.topology.region(after.home).name.clone(),
            None => "(unregistered)".to_owned(),
        };
        if *from != to {
            *moves.entry((from.clone(), to)).or_insert(0) += 1;
        }
    }
    moves
}

/// [`region_moves`]' count when only `changed` may differ: a watch batch, without walking a
/// registry of millions for each move.
pub(crate) fn moved_among(old: &Snapshot, new: &Snapshot, changed: &[TenantId]) -> usize {
    fn home<'s>(s: &'s Snapshot, id: &TenantId) -> Option<&'s str> {
        let record = s.registry.get(id)?;
        Some(s.topology.region(record.home).name.as_str())
    }
    let mut seen = std::collections::HashSet::new();
    changed
        .iter()
        .filter(|id| seen.insert(**id))
        .filter(|id| home(old, id).is_some_and(|from| home(new, id) != Some(from)))
        .count()
}

/// Too many tenants would change home region at once: what the guard refuses unless forced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MassMove {
    pub(crate) moved: usize,
    pub(crate) total: usize,
    pub(crate) percent: f64,
    pub(crate) limit: u32,
}

/// The mass-move guard. `guard` is the *running* configuration's: a file that also loosens
/// the guard must not wave itself through.
pub(crate) fn judge_moves(
    moved: usize,
    total: usize,
    guard: &ReloadSettings,
    force: bool,
) -> Result<(), MassMove> {
    let percent = moved as f64 * 100.0 / total.max(1) as f64;
    if !force
        && moved > guard.always_allowed_moves as usize
        && percent > f64::from(guard.max_moved_percent)
    {
        return Err(MassMove {
            moved,
            total,
            percent,
            limit: guard.max_moved_percent,
        });
    }
    Ok(())
}

/// Declares [`StartupSettings`]: each setting with its config key. A reload compares the
/// whole struct, so a setting added here is compared without anyone remembering to.
macro_rules! startup_settings {
    ($($field:ident: $ty:ty = $key:literal,)*) => {
        /// Every setting the router reads only when it starts (Pingora binds listeners and
        /// builds its server configuration once; the crypto provider is the process's).
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct StartupSettings {
            $(pub(crate) $field: $ty,)*
        }

        impl StartupSettings {
            /// The config keys of the settings that differ in `new`, in declaration order.
            pub(crate) fn changed_in(&self, new: &StartupSettings) -> Vec<&'static str> {
                let mut changed = Vec::new();
                $(if self.$field != new.$field {
                    changed.push($key);
                })*
                changed
            }
        }
    };
}

startup_settings! {
    listen_http: Option<std::net::SocketAddr> = "listen.http",
    listen_admin: Option<std::net::SocketAddr> = "listen.admin",
    listen_metrics: Option<std::net::SocketAddr> = "listen.metrics",
    listen_h2c: bool = "listen.h2c",
    h2_idle_timeout: Duration = "proxy.client_h2_idle_timeout_ms",
    upstream_keepalive_pool: usize = "proxy.upstream_keepalive_pool",
    threads: usize = "server.threads",
    shutdown_grace: Duration = "server.shutdown_grace_seconds",
    upgrade_socket: PathBuf = "server.upgrade_socket",
    access_log: Option<AccessLogSettings> = "access_log",
    control_socket: Option<PathBuf> = "server.control_socket",
    audit_log: Option<AuditSettings> = "admin.audit_log",
    listen_https: Option<std::net::SocketAddr> = "listen.https",
    tls_min_version: TlsVersion = "tls.min_version",
    tls_h2: bool = "tls.h2",
    // Certificates and client CAs of a listener that has TLS are swapped live; turning TLS
    // on or off is not.
    tls_admin: bool = "tls.admin",
    tls_metrics: bool = "tls.metrics",
    // Which store the registry lives in, and how to reach it.
    registry_store: Option<std::sync::Arc<residency_config::EtcdSettings>> = "tenancy.registry",
}

impl StartupSettings {
    /// The start-only part of `snapshot`. The sections with start-only settings are taken
    /// apart field by field, so a field added to one of them does not compile until it is
    /// placed here or marked as applied live.
    pub(crate) fn of(snapshot: &Snapshot) -> StartupSettings {
        let Listen {
            http,
            https,
            admin,
            metrics,
            h2c,
        } = &snapshot.listen;
        let ServerSettings {
            threads,
            shutdown_grace,
            control_socket,
            upgrade_socket,
        } = &snapshot.server;
        let ProxySettings {
            upstream_keepalive_pool,
            // Read for every request: live.
            expose_decision: _,
            connect_timeout: _,
            read_timeout: _,
            write_timeout: _,
            idle_timeout: _,
            max_attempts: _,
            trusted_proxies: _,
            client,
        } = &snapshot.proxy;
        let ClientLimits {
            h2_idle_timeout,
            // Read for every connection or request: live.
            keepalive_timeout: _,
            header_timeout: _,
            max_head_bytes: _,
            max_requests_per_connection: _,
            max_connections: _,
        } = client;
        let TlsSettings {
            min_version,
            h2,
            // Read on every handshake: live.
            certificates: _,
            admin: tls_admin,
            metrics: tls_metrics,
        } = &snapshot.tls;
        StartupSettings {
            listen_http: *http,
            listen_admin: *admin,
            listen_metrics: *metrics,
            listen_h2c: *h2c,
            h2_idle_timeout: *h2_idle_timeout,
            upstream_keepalive_pool: *upstream_keepalive_pool,
            threads: *threads,
            shutdown_grace: *shutdown_grace,
            upgrade_socket: upgrade_socket.clone(),
            access_log: snapshot.access_log.clone(),
            control_socket: control_socket.clone(),
            audit_log: snapshot.admin.as_ref().map(|a| a.audit.clone()),
            listen_https: *https,
            tls_min_version: *min_version,
            tls_h2: *h2,
            tls_admin: tls_admin.is_some(),
            tls_metrics: tls_metrics.is_some(),
            registry_store: snapshot.etcd.clone(),
        }
    }
}

/// The settings a reload from `old` to `new` changes that only a restart (or an upgrade)
/// applies.
pub(crate) fn restart_needed(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    StartupSettings::of(old)
        .changed_in(&StartupSettings::of(new))
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_counted_in_a_batch_agree_with_the_whole_registry_compare() {
        let dir = tempfile::tempdir().unwrap();
        let backends: Vec<Vec<std::net::SocketAddr>> = (1..=4)
            .map(|port| vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
            .collect();
        let tenants = r#"{"tenants":[{"id":"a","region":"us"},{"id":"b","region":"us"},{"id":"c","region":"eu"}]}"#;
        let listen = "127.0.0.1:2".parse().unwrap();
        let path = residency_testkit::write_config(
            dir.path(),
            listen,
            &[],
            &backends,
            tenants,
            "",
            &[""; 4],
        )
        .unwrap();
        let old = residency_config::load(&path).unwrap();
        let id = |s: &str| TenantId::parse(s.as_bytes()).unwrap();
        let region = |name: &str| regions::TenantRecord {
            home: old.topology.region_by_name(name).unwrap(),
            replication: None,
        };
        let mut new = old.clone();
        // a moves, b is removed, c is written unchanged, d is new.
        new.registry = std::sync::Arc::new(old.registry.with_changes([
            (id("a"), Some(region("eu"))),
            (id("b"), None),
            (id("c"), Some(region("eu"))),
            (id("d"), Some(region("us"))),
        ]));
        let whole: usize = region_moves(&old, &new).values().sum();
        let batch = [id("a"), id("b"), id("c"), id("d"), id("a")];
        assert_eq!((moved_among(&old, &new, &batch), whole), (2, 2));
    }

    fn guard(max_moved_percent: u32, always_allowed_moves: u32) -> ReloadSettings {
        ReloadSettings {
            max_moved_percent,
            always_allowed_moves,
            ..ReloadSettings::default()
        }
    }

    #[test]
    fn the_mass_move_guard_refuses_only_many_moves_above_the_share() {
        // (moved, total, max %, always allowed, force, refused)
        let table: &[(usize, usize, u32, u32, bool, bool)] = &[
            (0, 100, 10, 0, false, false),
            (10, 100, 10, 0, false, false), // exactly the share: allowed
            (11, 100, 10, 0, false, true),
            (11, 100, 10, 0, true, false),   // forced
            (11, 100, 10, 11, false, false), // few enough to be always allowed
            (12, 100, 10, 11, false, true),
            (1, 1, 10, 0, false, true), // the only tenant moves
            (1, 1, 10, 1, false, false),
            (1, 0, 10, 0, false, true), // an empty registry counts as one tenant
            (50, 100, 100, 0, false, false),
        ];
        for &(moved, total, max, always, force, refused) in table {
            let verdict = judge_moves(moved, total, &guard(max, always), force);
            assert_eq!(
                verdict.is_err(),
                refused,
                "{moved} of {total}, limit {max}%, {always} always allowed, force {force}: {verdict:?}"
            );
            if let Err(refusal) = verdict {
                assert_eq!(
                    (refusal.moved, refusal.total, refusal.limit),
                    (moved, total, max)
                );
            }
        }
    }

    fn settings() -> StartupSettings {
        StartupSettings {
            listen_http: Some("127.0.0.1:8080".parse().unwrap()),
            listen_admin: None,
            listen_metrics: None,
            listen_h2c: false,
            h2_idle_timeout: Duration::from_secs(60),
            upstream_keepalive_pool: 10_000,
            threads: 2,
            shutdown_grace: Duration::from_secs(5),
            upgrade_socket: PathBuf::from("/tmp/upgrade.sock"),
            access_log: None,
            control_socket: None,
            audit_log: None,
            listen_https: None,
            tls_min_version: TlsVersion::Tls13,
            tls_h2: true,
            tls_admin: false,
            tls_metrics: false,
            registry_store: None,
        }
    }

    #[test]
    fn every_start_only_setting_is_reported_by_its_key() {
        let addr = Some("127.0.0.1:9".parse().unwrap());
        type Change = (&'static str, fn(&mut StartupSettings));
        let changes: &[Change] = &[
            ("listen.http", |s| s.listen_http = None),
            ("listen.admin", |s| {
                s.listen_admin = Some("127.0.0.1:9".parse().unwrap())
            }),
            ("listen.metrics", |s| {
                s.listen_metrics = Some("127.0.0.1:9".parse().unwrap())
            }),
            ("listen.h2c", |s| s.listen_h2c = true),
            ("proxy.client_h2_idle_timeout_ms", |s| {
                s.h2_idle_timeout = Duration::ZERO
            }),
            ("proxy.upstream_keepalive_pool", |s| {
                s.upstream_keepalive_pool = 128
            }),
            ("server.threads", |s| s.threads = 8),
            ("server.shutdown_grace_seconds", |s| {
                s.shutdown_grace = Duration::ZERO
            }),
            ("server.upgrade_socket", |s| {
                s.upgrade_socket = PathBuf::from("/elsewhere")
            }),
            ("server.control_socket", |s| {
                s.control_socket = Some(PathBuf::from("/c"))
            }),
            ("listen.https", |s| {
                s.listen_https = Some("127.0.0.1:9".parse().unwrap())
            }),
            ("tls.min_version", |s| s.tls_min_version = TlsVersion::Tls12),
            ("tls.h2", |s| s.tls_h2 = false),
            ("tls.admin", |s| s.tls_admin = true),
            ("tls.metrics", |s| s.tls_metrics = true),
            ("tenancy.registry", |s| {
                s.registry_store = Some(std::sync::Arc::new(residency_config::EtcdSettings {
                    endpoints: vec!["http://127.0.0.1:2379".into()],
                    prefix: "/residency".into(),
                    cache: PathBuf::from("registry.cache"),
                    max_staleness: Duration::from_secs(300),
                    cache_max_age: Duration::from_secs(86_400),
                    router_id: "r1".into(),
                    router_region: None,
                    credentials: None,
                    tls: None,
                    timeout: Duration::from_secs(2),
                }))
            }),
            ("access_log", |s| {
                s.access_log = Some(AccessLogSettings {
                    file: None,
                    buffer_records: 8192,
                })
            }),
            ("admin.audit_log", |s| {
                s.audit_log = Some(AuditSettings {
                    path: PathBuf::from("audit.log"),
                    max_file_bytes: 1 << 20,
                    retention: Duration::from_secs(86_400),
                })
            }),
        ];
        let old = settings();
        assert!(old.changed_in(&old.clone()).is_empty());
        for (key, change) in changes {
            let mut new = old.clone();
            change(&mut new);
            assert_eq!(new.changed_in(&old), [*key], "changing {key}");
            assert_eq!(old.changed_in(&new), [*key], "changing {key} back");
        }
        let keys: std::collections::BTreeSet<&str> = changes.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.len(), changes.len(), "each key is tested once");
        let mut both = old.clone();
        both.listen_https = addr;
        both.threads = 3;
        assert_eq!(old.changed_in(&both), ["server.threads", "listen.https"]);
    }

    /// Through real snapshots: the example config, with one setting changed at a time.
    #[test]
    fn a_snapshot_reports_start_only_changes_and_not_live_ones() {
        let example =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/router.toml");
        let old = residency_config::load(&example).expect("the example config loads");
        let changed = |change: fn(&mut Snapshot)| {
            let mut new = old.clone();
            change(&mut new);
            restart_needed(&old, &new)
        };
        assert!(changed(|_| {}).is_empty());
        assert_eq!(changed(|s| s.listen.h2c = !s.listen.h2c), ["listen.h2c"]);
        assert_eq!(
            changed(|s| s.server.shutdown_grace += Duration::from_secs(1)),
            ["server.shutdown_grace_seconds"]
        );
        assert_eq!(
            changed(|s| s.proxy.client.h2_idle_timeout += Duration::from_secs(1)),
            ["proxy.client_h2_idle_timeout_ms"]
        );
        // Applied live: no restart.
        assert!(changed(|s| s.proxy.client.keepalive_timeout += Duration::from_secs(1)).is_empty());
        assert!(changed(|s| s.proxy.max_attempts += 1).is_empty());
        assert!(changed(|s| s.reload.max_moved_percent += 1).is_empty());
    }
}
