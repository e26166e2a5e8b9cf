//! The order in which a registry change reaches the disk, the audit log and the live state,
//! so that after any storage fault all three say the same thing:
//!
//! 1. stage the new registry beside the live one, durably (a crash after it changes nothing);
//! 2. append the `applied` audit entry, fsynced;
//! 3. publish the staged registry (rename it into place, fsync the directory);
//! 4. and only then swap it into the live state (the caller's part).
//!
//! A failure in 1 or 2 leaves no trace but the error: no file, no entry. A failed rename
//! leaves the old registry, so a `failed` entry follows the `applied` one. A rename whose
//! directory fsync failed did publish the registry (anyone reading the file sees it), so the
//! live state follows the file, and the answer says the change may not survive a crash.

use super::audit::{AuditTrail, Entry};
use residency_config::{PublishError, Staged};

/// Where audit entries go (the [`AuditLog`]; an in-memory double in the tests).
pub(crate) trait AuditSink {
    fn append(&self, entry: Entry) -> std::io::Result<Entry>;
}

impl<T: AuditTrail + ?Sized> AuditSink for T {
    fn append(&self, entry: Entry) -> std::io::Result<Entry> {
        AuditTrail::append(self, entry)
    }
}

/// A change that reached the store: the live state must now follow it.
#[derive(Debug)]
pub(crate) enum Published {
    /// Published and durable.
    Durable,
    /// Published, but the directory fsync failed: a crash may still lose it.
    NotDurable(std::io::Error),
}

/// A change that did not reach the store: the live state must stay as it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotCommitted {
    /// The new registry could not be staged; nothing was audited.
    #[error("cannot stage the new registry: {0}")]
    Stage(std::io::Error),
    /// The audit entry could not be written; the staged registry was abandoned.
    #[error("cannot write the audit entry: {0}")]
    Audit(std::io::Error),
    /// Audited as applied, then not published; a `failed` entry follows (unless the audit
    /// log failed too, which is logged).
    #[error("{0}")]
    Publish(std::io::Error),
}

/// Steps 1 to 3 of the module's order. `applied` is the entry recording the change.
pub(crate) fn stage_audit_publish(
    stage: impl FnOnce() -> std::io::Result<Box<dyn Staged>>,
    audit: &(impl AuditSink + ?Sized),
    applied: Entry,
) -> Result<Published, NotCommitted> {
    let staged = stage().map_err(NotCommitted::Stage)?;
    // On an error the staged registry is dropped, which abandons it.
    let audited = audit.append(applied).map_err(NotCommitted::Audit)?;
    match staged.publish() {
        Ok(()) => Ok(Published::Durable),
        Err(PublishError::NotDurable(e)) => Ok(Published::NotDurable(e)),
        Err(PublishError::NotPublished(e)) => {
            let request_id = audited.request_id.clone();
            let failed = Entry {
                outcome: "failed".to_owned(),
                status: 503,
                ..audited
            };
            if let Err(audit_error) = audit.append(failed) {
                // The log then claims a change the registry does not hold; say so loudly.
                tracing::error!(error = %audit_error, %request_id, store_error = %e, "cannot audit that an audited change was not stored: the audit log's `applied` entry for this request is wrong");
            }
            Err(NotCommitted::Publish(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What happened, in order, across the store and the audit log.
    type Journal = Arc<Mutex<Vec<String>>>;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fault {
        None,
        Stage,
        Audit,
        Rename,
        DirSync,
        /// The rename fails and so does the audit entry saying so.
        RenameThenAudit,
    }

    /// An in-memory store: `held` is what a reader of the store would see.
    struct MemoryStore {
        held: Mutex<&'static str>,
        journal: Journal,
        fault: Fault,
    }

    struct MemoryStaged {
        store: Arc<MemoryStore>,
        new: &'static str,
    }

    impl Staged for MemoryStaged {
        fn publish(self: Box<Self>) -> Result<(), PublishError> {
            let store = &self.store;
            if matches!(store.fault, Fault::Rename | Fault::RenameThenAudit) {
                store.journal.lock().unwrap().push("rename failed".into());
                return Err(PublishError::NotPublished(std::io::Error::other("EIO")));
            }
            *store.held.lock().unwrap() = self.new;
            store
                .journal
                .lock()
                .unwrap()
                .push(format!("published {}", self.new));
            if store.fault == Fault::DirSync {
                return Err(PublishError::NotDurable(std::io::Error::other("EIO")));
            }
            Ok(())
        }
    }

    impl Drop for MemoryStaged {
        fn drop(&mut self) {
            self.store
                .journal
                .lock()
                .unwrap()
                .push("staged dropped".into());
        }
    }

    fn stage(store: &Arc<MemoryStore>, new: &'static str) -> std::io::Result<Box<dyn Staged>> {
        if store.fault == Fault::Stage {
            return Err(std::io::Error::other("ENOSPC"));
        }
        store.journal.lock().unwrap().push(format!("staged {new}"));
        Ok(Box::new(MemoryStaged {
            store: Arc::clone(store),
            new,
        }))
    }

    struct MemoryAudit {
        entries: Mutex<Vec<Entry>>,
        journal: Journal,
        /// Appends that succeed before every further one fails.
        succeed: usize,
    }

    impl AuditSink for MemoryAudit {
        fn append(&self, entry: Entry) -> std::io::Result<Entry> {
            let mut entries = self.entries.lock().unwrap();
            if entries.len() == self.succeed {
                self.journal.lock().unwrap().push("audit failed".into());
                return Err(std::io::Error::other("EIO"));
            }
            self.journal
                .lock()
                .unwrap()
                .push(format!("audited {}", entry.outcome));
            entries.push(entry.clone());
            Ok(entry)
        }
    }

    fn applied() -> Entry {
        Entry {
            actor: "ops".into(),
            action: "tenant.update".into(),
            tenant: Some("acme".into()),
            outcome: "applied".into(),
            status: 200,
            request_id: "r-1".into(),
            ..Entry::default()
        }
    }

    /// A row: the fault, the result, what the store holds after it, the audit outcomes, and
    /// the order of events.
    type Row = (
        Fault,
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );

    #[test]
    fn after_every_store_fault_the_store_the_audit_log_and_the_answer_agree() {
        let table: &[Row] = &[
            (
                Fault::None,
                "durable",
                "new",
                &["applied"],
                &[
                    "staged new",
                    "audited applied",
                    "published new",
                    "staged dropped",
                ],
            ),
            (Fault::Stage, "stage", "old", &[], &[]),
            (
                Fault::Audit,
                "audit",
                "old",
                &[],
                &["staged new", "audit failed", "staged dropped"],
            ),
            (
                Fault::Rename,
                "publish",
                "old",
                &["applied", "failed"],
                &[
                    "staged new",
                    "audited applied",
                    "rename failed",
                    "staged dropped",
                    "audited failed",
                ],
            ),
            (
                Fault::RenameThenAudit,
                "publish",
                "old",
                &["applied"],
                &[
                    "staged new",
                    "audited applied",
                    "rename failed",
                    "staged dropped",
                    "audit failed",
                ],
            ),
            (
                Fault::DirSync,
                "not durable",
                "new",
                &["applied"],
                &[
                    "staged new",
                    "audited applied",
                    "published new",
                    "staged dropped",
                ],
            ),
        ];
        for (fault, result, held, outcomes, journal) in table {
            let events: Journal = Arc::default();
            let store = Arc::new(MemoryStore {
                held: Mutex::new("old"),
                journal: Arc::clone(&events),
                fault: *fault,
            });
            let audit = MemoryAudit {
                entries: Mutex::default(),
                journal: Arc::clone(&events),
                succeed: match fault {
                    Fault::Audit => 0,
                    Fault::RenameThenAudit => 1,
                    _ => usize::MAX,
                },
            };
            let answered = stage_audit_publish(|| stage(&store, "new"), &audit, applied());
            let got = match &answered {
                Ok(Published::Durable) => "durable",
                Ok(Published::NotDurable(_)) => "not durable",
                Err(NotCommitted::Stage(_)) => "stage",
                Err(NotCommitted::Audit(_)) => "audit",
                Err(NotCommitted::Publish(_)) => "publish",
            };
            assert_eq!(got, *result, "{fault:?}");
            assert_eq!(*store.held.lock().unwrap(), *held, "{fault:?}: store");
            let entries = audit.entries.lock().unwrap();
            let got: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
            assert_eq!(got, *outcomes, "{fault:?}: audit");
            // The `failed` entry is the `applied` one's call, so the two can be matched.
            assert!(entries.iter().all(|e| e.request_id == "r-1"));
            assert_eq!(*events.lock().unwrap(), *journal, "{fault:?}: order");
            // The live state follows the store exactly when the answer says it was published.
            assert_eq!(answered.is_ok(), *held == "new", "{fault:?}");
        }
    }
}
