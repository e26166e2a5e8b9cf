//! The fleet's rules, without I/O: how a router follows etcd, what it does when it cannot,
//! and what staleness costs. The sync loop (`sync.rs`) only carries them out.

use std::time::Duration;

use regions::{TenantId, TenantRecord, Topology};
use residency_config::{Registry, RegistryStatus};

/// Why the whole registry is read again instead of following the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resync {
    /// The router starts (or had nothing applied).
    Start,
    /// The watch's start revision was compacted away: the changes in between are gone.
    Compacted,
    /// etcd answers with a revision older than one already applied: it was restored from an
    /// older backup, and what was applied since may not exist any more.
    RevisionBackwards,
    /// Another etcd cluster answers at the same endpoints.
    ClusterChanged,
}

impl Resync {
    pub(crate) const ALL: [Resync; 4] = [
        Resync::Start,
        Resync::Compacted,
        Resync::RevisionBackwards,
        Resync::ClusterChanged,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Resync::Start => "start",
            Resync::Compacted => "compacted",
            Resync::RevisionBackwards => "revision_backwards",
            Resync::ClusterChanged => "cluster_changed",
        }
    }
}

/// What a router that applied `applied` (from cluster `cluster`) makes of an answer from
/// cluster `seen_cluster` at revision `seen`: `None` to go on following the watch.
pub(crate) fn judge_answer(
    applied: i64,
    cluster: Option<u64>,
    seen: i64,
    seen_cluster: u64,
) -> Option<Resync> {
    if cluster.is_some_and(|c| c != seen_cluster) {
        return Some(Resync::ClusterChanged);
    }
    (seen < applied).then_some(Resync::RevisionBackwards)
}

/// The wait before reconnect attempt `attempt` (0 for the first), with `jitter` in [0, 1):
/// doubling from 100 ms to 5 s, then half of it to all of it, so a fleet that lost etcd
/// together does not come back in lockstep.
pub(crate) fn backoff(attempt: u32, jitter: f64) -> Duration {
    let ceiling = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(6))
        .min(Duration::from_secs(5));
    ceiling.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// What the data plane may do with a registry last known current `staleness` ago: staleness
/// only takes privileges away. Home regions are always served (a move reaches a stale router
/// late, which the residency rule tolerates for `max_staleness`: the data is replicated
/// during a move); replication exceptions are dropped past `max_staleness`, since one that
/// was revoked may not have reached this router.
pub(crate) fn registry_status(
    loaded: bool,
    staleness: Duration,
    max_staleness: Duration,
) -> RegistryStatus {
    RegistryStatus {
        loaded,
        replication_suspended: loaded && staleness > max_staleness,
    }
}

/// One tenant key's change as the watch or a relist reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyChange {
    Put { id: String, json: Vec<u8> },
    Delete { id: String },
}

/// A registry with changes applied, and the records that could not be used.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) registry: Registry,
    /// `(tenant, why)` for every record that was not usable: the tenant keeps the record it
    /// had (or stays unknown, so it is refused, if it had none).
    pub(crate) invalid: Vec<(String, String)>,
    /// The tenants a watch batch changed; `None` after a full read, where any may have.
    pub(crate) changed: Option<Vec<TenantId>>,
}

/// One change read: the tenant and its new record (`None`: removed), or why it is unusable.
fn decode(
    id: &str,
    json: Option<&[u8]>,
    topology: &Topology,
) -> Result<(TenantId, Option<TenantRecord>), String> {
    match json {
        Some(json) => {
            residency_config::tenant_from_json(id, json, topology).map(|(id, r)| (id, Some(r)))
        }
        // A key no valid tenant can have: nothing to delete.
        None => residency_config::tenant_id(id)
            .map(|id| (id, None))
            .map_err(|e| e.to_string()),
    }
}

/// Decoded changes applied to `current`, in order; the unusable ones reported. `full`: a
/// full read, where every tenant may have changed.
fn apply<'a>(
    current: &Registry,
    changes: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    capacity: usize,
    full: bool,
    topology: &Topology,
) -> Applied {
    let mut invalid = Vec::new();
    let mut decoded = Vec::with_capacity(capacity);
    for (id, json) in changes {
        match decode(id, json, topology) {
            Ok(change) => decoded.push(change),
            Err(why) => invalid.push((id.to_owned(), why)),
        }
    }
    let changed = (!full).then(|| decoded.iter().map(|(id, _)| *id).collect());
    Applied {
        registry: current.with_changes(decoded),
        invalid,
        changed,
    }
}

/// `changes`, in revision order, applied to `current`.
pub(crate) fn apply_changes(
    current: &Registry,
    changes: &[KeyChange],
    topology: &Topology,
) -> Applied {
    let changes = changes.iter().map(|change| match change {
        KeyChange::Put { id, json } => (id.as_str(), Some(json.as_slice())),
        KeyChange::Delete { id } => (id.as_str(), None),
    });
    apply(current, changes, 0, false, topology)
}

/// The registry a full read gives (`listed`: every tenant key at one revision, sorted by id,
/// as etcd returns them), next to `current`: tenants not listed are deleted; a listed record
/// that cannot be used keeps the tenant's current record.
pub(crate) fn relist(
    current: &Registry,
    listed: &[(String, Vec<u8>)],
    topology: &Topology,
) -> Applied {
    let is_listed = |id: &str| {
        listed
            .binary_search_by(|(listed, _)| listed.as_str().cmp(id))
            .is_ok()
    };
    let deleted: Vec<&str> = current
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !is_listed(id))
        .collect();
    let changes = deleted.iter().map(|id| (*id, None)).chain(
        listed
            .iter()
            .map(|(id, json)| (id.as_str(), Some(json.as_slice()))),
    );
    apply(
        current,
        changes,
        deleted.len() + listed.len(),
        true,
        topology,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topology() -> Topology {
        residency_config::testing::two_regions()
    }

    fn put(id: &str, region: &str) -> KeyChange {
        KeyChange::Put {
            id: id.into(),
            json: format!(r#"{{"id":"{id}","region":"{region}"}}"#).into_bytes(),
        }
    }

    fn home(registry: &Registry, id: &str, topology: &Topology) -> Option<String> {
        let record = registry.get(&residency_config::tenant_id(id).unwrap())?;
        Some(topology.region(record.home).name.clone())
    }

    #[test]
    fn an_invalid_record_keeps_the_previous_one_and_is_reported() {
        let t = topology();
        let start = apply_changes(&Registry::default(), &[put("acme", "us")], &t).registry;
        let bad = [
            put("acme", "mars"),
            KeyChange::Put {
                id: "acme".into(),
                json: b"{not json".to_vec(),
            },
            KeyChange::Put {
                id: "acme".into(),
                json: br#"{"id":"other","region":"eu"}"#.to_vec(),
            },
        ];
        for change in bad {
            let applied = apply_changes(&start, std::slice::from_ref(&change), &t);
            assert_eq!(
                home(&applied.registry, "acme", &t).as_deref(),
                Some("us"),
                "{change:?}"
            );
            assert_eq!(applied.invalid.len(), 1, "{change:?}");
        }
        // A new tenant with an invalid record stays unknown (refused), never defaulted.
        let applied = apply_changes(&start, &[put("newco", "mars")], &t);
        assert_eq!(home(&applied.registry, "newco", &t), None);
    }

    #[test]
    fn a_relist_deletes_what_is_gone_and_applies_what_changed() {
        let t = topology();
        let start = apply_changes(
            &Registry::default(),
            &[put("a", "us"), put("b", "us"), put("c", "eu")],
            &t,
        )
        .registry;
        let listed = vec![
            ("a".to_owned(), br#"{"id":"a","region":"eu"}"#.to_vec()),
            ("c".to_owned(), br#"{"id":"c","region":"eu"}"#.to_vec()),
            ("d".to_owned(), br#"{"id":"d","region":"us"}"#.to_vec()),
        ];
        let applied = relist(&start, &listed, &t);
        assert!(applied.invalid.is_empty());
        let r = &applied.registry;
        assert_eq!(
            (
                home(r, "a", &t),
                home(r, "b", &t),
                home(r, "c", &t),
                home(r, "d", &t)
            ),
            (
                Some("eu".into()),
                None,
                Some("eu".into()),
                Some("us".into())
            )
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn answers_from_the_past_or_another_cluster_force_a_relist() {
        // (applied, cluster, seen, seen cluster, verdict)
        let table = [
            (10, Some(1), 10, 1, None),
            (10, Some(1), 12, 1, None),
            (10, Some(1), 9, 1, Some(Resync::RevisionBackwards)),
            (10, Some(1), 12, 2, Some(Resync::ClusterChanged)),
            (0, None, 5, 2, None),
        ];
        for (applied, cluster, seen, seen_cluster, verdict) in table {
            assert_eq!(
                judge_answer(applied, cluster, seen, seen_cluster),
                verdict,
                "{applied} {seen}"
            );
        }
        let names: std::collections::HashSet<_> = Resync::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Resync::ALL.len());
    }

    #[test]
    fn staleness_only_takes_replication_away_never_the_registry() {
        let max = Duration::from_secs(300);
        let table = [
            (true, 0, RegistryStatus::SERVING),
            (true, 300, RegistryStatus::SERVING),
            (
                true,
                301,
                RegistryStatus {
                    loaded: true,
                    replication_suspended: true,
                },
            ),
            (
                false,
                0,
                RegistryStatus {
                    loaded: false,
                    replication_suspended: false,
                },
            ),
            (
                false,
                10_000,
                RegistryStatus {
                    loaded: false,
                    replication_suspended: false,
                },
            ),
        ];
        for (loaded, stale_s, want) in table {
            assert_eq!(
                registry_status(loaded, Duration::from_secs(stale_s), max),
                want,
                "{loaded} {stale_s}"
            );
        }
    }

    proptest! {
        #[test]
        fn backoff_grows_is_bounded_and_jittered(attempt in 0u32..100, jitter in 0.0f64..1.0) {
            let wait = backoff(attempt, jitter);
            prop_assert!(wait >= Duration::from_millis(50));
            prop_assert!(wait <= Duration::from_secs(5));
            prop_assert!(backoff(attempt + 1, 0.0) >= backoff(attempt, 0.0));
        }

        /// Applying a watch's changes one batch at a time, or all at once, or listing the
        /// result, gives the same registry.
        #[test]
        fn watch_batches_and_a_relist_agree(ops in proptest::collection::vec((0u8..6, any::<bool>(), any::<bool>()), 0..40), split in 0usize..40) {
            let t = topology();
            let changes: Vec<KeyChange> = ops.iter().map(|(n, eu, delete)| {
                let id = format!("t{n}");
                if *delete { KeyChange::Delete { id } } else { put(&id, if *eu { "eu" } else { "us" }) }
            }).collect();
            let split = split.min(changes.len());
            let once = apply_changes(&Registry::default(), &changes, &t).registry;
            let first = apply_changes(&Registry::default(), &changes[..split], &t).registry;
            let twice = apply_changes(&first, &changes[split..], &t).registry;
            let listed: Vec<(String, Vec<u8>)> = once.sorted().iter().map(|(id, r)| (id.to_string(), residency_config::tenant_json(id, r, &t))).collect();
            let relisted = relist(&first, &listed, &t).registry;
            for r in [&twice, &relisted] {
                prop_assert_eq!(r.sorted(), once.sorted());
            }
        }
    }
}
