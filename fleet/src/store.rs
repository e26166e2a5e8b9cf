//! etcd, through `etcd-client`: one connection at a time to one member, rotated on failure,
//! every request under the configured deadline. A member that is partitioned (or stopped)
//! answers nothing; the deadline turns that into an error, and the next member is tried.

use std::future::Future;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp,
};
use residency_admin::audit::{self, Entry};
use residency_admin::Unavailable;
use residency_config::EtcdSettings;
use serde::{Deserialize, Serialize};

use crate::keys::{range_end, Keys};

/// Keys per page of a full read. Large, because etcd 3.4 walks the whole remaining range of
/// its index for every page (a limit only cuts the answer): a million tenants in pages of
/// 5,000 took 20 s, in pages of 100,000 about a second. About 10 MB a page.
pub(crate) const PAGE: i64 = 100_000;
/// What one page may weigh when decoded (tonic's default is 4 MB).
pub(crate) const MAX_PAGE_BYTES: usize = 256 << 20;

pub(crate) struct Connection {
    settings: std::sync::Arc<EtcdSettings>,
    client: Option<Client>,
    next: usize,
}

/// The end of the audit chain, as `P/audit-head` holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) seq: u64,
    pub(crate) hash: String,
}

impl Connection {
    pub(crate) fn new(settings: std::sync::Arc<EtcdSettings>) -> Connection {
        Connection {
            settings,
            client: None,
            next: 0,
        }
    }

    /// The member in use, for messages.
    pub(crate) fn endpoint(&self) -> &str {
        let endpoints = &self.settings.endpoints;
        &endpoints[self.next % endpoints.len()]
    }

    /// Forgets the connection: the next request goes to the next member. Once per
    /// connection: a second call for the same failure does not skip a member.
    pub(crate) fn failed(&mut self) {
        if self.client.take().is_some() {
            self.next = self.next.wrapping_add(1);
        }
    }

    async fn client(&mut self) -> Result<Client, Unavailable> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let settings = &self.settings;
        let mut options = ConnectOptions::new()
            .with_timeout(settings.timeout)
            .with_connect_timeout(settings.timeout)
            .with_keep_alive(settings.timeout, settings.timeout)
            // A member cut off from the leader must not keep a watch open that hears nothing.
            .with_require_leader(true);
        if let Some((user, password)) = &settings.credentials {
            options = options.with_user(user, password);
        }
        if let Some(tls) = &settings.tls {
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity_pem {
                t = t.identity(Identity::from_pem(cert, key));
            }
            if let Some(domain) = &tls.domain {
                t = t.domain_name(domain);
            }
            options = options.with_tls(t);
        }
        let endpoint = self.endpoint().to_owned();
        let connect = Client::connect([endpoint.as_str()], Some(options));
        let client = deadline(settings.timeout, connect)
            .await
            .map_err(|e| Unavailable(format!("{endpoint}: {}", e.0)))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Runs `op` on the member in use, under the deadline; on an error, the next member is
    /// used from the next call on.
    pub(crate) async fn run<T, F, Fut>(&mut self, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let client = match self.client().await {
            Ok(client) => client,
            Err(e) => {
                // Not connected: the next call tries the next member.
                self.next = self.next.wrapping_add(1);
                return Err(e);
            }
        };
        let endpoint = self.endpoint().to_owned();
        match deadline(self.settings.timeout, op(client)).await {
            Ok(value) => Ok(value),
            Err(e) => {
                self.failed();
                Err(Unavailable(format!("{endpoint}: {}", e.0)))
            }
        }
    }

    /// Every key under `prefix`, read at one revision, in pages: a later page never mixes
    /// in a later revision. Returns the revision, the cluster id and the pairs.
    pub(crate) async fn list(
        &mut self,
        prefix: &str,
    ) -> Result<(i64, u64, Vec<KeyValue>), Unavailable> {
        let end = range_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut at: Option<(i64, u64)> = None;
        let mut all = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if let Some((revision, _)) = at {
                options = options.with_revision(revision);
            }
            let key = start.clone();
            let mut page = self
                .run(|c| async move {
                    let mut kv = c.kv_client().max_decoding_message_size(MAX_PAGE_BYTES);
                    kv.get(key, Some(options)).await
                })
                .await?;
            let header = page.header().map(|h| (h.revision(), h.cluster_id()));
            if at.is_none() {
                at = header;
            }
            let more = page.more();
            let kvs = page.take_kvs();
            if let Some(last) = kvs.last() {
                start = last.key().to_vec();
                start.push(0);
            }
            all.extend(kvs);
            if !more {
                let (revision, cluster) = at.unwrap_or_default();
                return Ok((revision, cluster, all));
            }
        }
    }

    /// One key's value and mod revision.
    pub(crate) async fn get(&mut self, key: String) -> Result<Option<(Vec<u8>, i64)>, Unavailable> {
        let mut response = self
            .run(|mut c| async move { c.get(key, None).await })
            .await?;
        Ok(response
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    /// `(revision, cluster id)` of the store now: a quorum read of one key (the audit head),
    /// so it fails without a quorum and costs etcd nothing at a million tenants.
    pub(crate) async fn probe(&mut self, keys: &Keys) -> Result<(i64, u64), Unavailable> {
        let key = keys.audit_head();
        let response = self
            .run(|mut c| async move { c.get(key, None).await })
            .await?;
        let header = response
            .header()
            .ok_or_else(|| Unavailable("an answer without a header".into()))?;
        Ok((header.revision(), header.cluster_id()))
    }

    /// The audit chain's end and the mod revision of its key (0: no entry yet).
    pub(crate) async fn head(&mut self, keys: &Keys) -> Result<(Head, i64), Unavailable> {
        match self.get(keys.audit_head()).await? {
            None => Ok((
                Head {
                    seq: 0,
                    hash: audit::GENESIS.to_owned(),
                },
                0,
            )),
            Some((json, revision)) => {
                let head = serde_json::from_slice(&json).map_err(|e| {
                    Unavailable(format!("the audit head in etcd is unreadable: {e}"))
                })?;
                Ok((head, revision))
            }
        }
    }

    /// Appends `entry` to the chain, with `also` in the same transaction, if the chain's
    /// head is still `head` and every compare in `when` holds. `Ok(None)` when a compare
    /// failed (someone else wrote first); `Ok(Some(revision))` once committed.
    pub(crate) async fn append(
        &mut self,
        keys: &Keys,
        entry: Entry,
        (head, head_revision): (Head, i64),
        when: Vec<Compare>,
        also: Vec<TxnOp>,
    ) -> Result<Option<(i64, Entry)>, Unavailable> {
        let (entry, line, hash) = audit::seal(entry, head.seq + 1, &head.hash)
            .map_err(|e| Unavailable(format!("cannot seal the audit entry: {e}")))?;
        let new_head = serde_json::to_vec(&Head {
            seq: entry.seq,
            hash,
        })
        .expect("heads serialize");
        let mut compares = when;
        compares.push(Compare::mod_revision(
            keys.audit_head(),
            CompareOp::Equal,
            head_revision,
        ));
        let mut ops = also;
        ops.push(TxnOp::put(
            keys.audit_entry(entry.seq),
            line.trim_end().as_bytes().to_vec(),
            None,
        ));
        ops.push(TxnOp::put(keys.audit_head(), new_head, None));
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self.run(|mut c| async move { c.txn(txn).await }).await?;
        if !response.succeeded() {
            return Ok(None);
        }
        let revision = response.header().map_or(0, |h| h.revision());
        Ok(Some((revision, entry)))
    }

    pub(crate) async fn put_with_lease(
        &mut self,
        key: String,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<(), Unavailable> {
        let options = PutOptions::new().with_lease(lease);
        self.run(|mut c| async move { c.put(key, value, Some(options)).await })
            .await
            .map(|_| ())
    }
}

struct Timeout(String);

async fn deadline<T>(
    limit: std::time::Duration,
    op: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Timeout> {
    match tokio::time::timeout(limit, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Timeout(e.to_string())),
        Err(_) => Err(Timeout(format!(
            "no answer within {} ms",
            limit.as_millis()
        ))),
    }
}
