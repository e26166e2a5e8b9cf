//! The audit log: append-only JSON lines, each fsynced before the change it records is
//! acknowledged, chained by SHA-256 so that editing, removing or reordering any entry is
//! detected (`residency-router audit verify`).
//!
//! Each line is the entry's JSON with `"hash"` as its last field: the SHA-256 of the line as
//! it reads without that field (`{...,"prev":"..."}`), and `prev` is the previous entry's
//! hash (64 zeros for the first entry ever). The file is rotated by size to
//! `NAME.<last seq, 20 digits>`; the chain continues across files, and rotated files are
//! deleted only once their newest entry is older than the retention period.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use residency_config::AuditSettings;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_FIELD: &str = ",\"hash\":\"";

/// What happened, as the API records it. `seq`, `time` and `prev` are filled in on append.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub time: String,
    /// The token's name, or `(anonymous)` / `(invalid token)` for refused calls.
    pub actor: String,
    pub role: Option<String>,
    /// The caller's socket address.
    pub source: String,
    /// `tenant.update`, `tenant.create`, `tenant.delete`, or the read that was refused.
    pub action: String,
    pub tenant: Option<String>,
    /// `applied`, `denied`, or `failed` (audited, then the change could not be stored).
    pub outcome: String,
    pub status: u16,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: String,
    /// Aggregated refusals only: how many refused calls this entry stands for, since when,
    /// and how many were answered with each status. Left out of every other entry, so the
    /// lines written before these fields existed read (and verify) as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<std::collections::BTreeMap<String, u64>>,
    #[serde(default)]
    pub prev: String,
}

/// Where audit entries are kept: the local [`AuditLog`], or in fleet mode the chain in etcd
/// that every router of the fleet appends to.
pub trait AuditTrail: Send + Sync {
    /// Appends one entry, durably, continuing the chain. Blocking.
    fn append(&self, entry: Entry) -> std::io::Result<Entry>;
    /// Entries matching `filter`, oldest first, at most `limit`; and whether more follow.
    fn query(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> std::io::Result<(Vec<serde_json::Value>, bool)>;
    /// `(seq, hash)` of the chain's last entry.
    fn head(&self) -> std::io::Result<(u64, String)>;
    /// Where the trail is, for messages.
    fn location(&self) -> String;
    /// Makes this process a writer of the trail; `Ok(false)` while another process that must
    /// finish first (a router being upgraded away) still writes it.
    fn take_over(&self) -> Result<bool, String>;
}

/// `entry` as entry `seq` of a chain whose head is `prev`: its line (with `"hash"` last and a
/// newline) and its hash.
pub fn seal(mut entry: Entry, seq: u64, prev: &str) -> std::io::Result<(Entry, String, String)> {
    entry.seq = seq;
    entry.time = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(std::io::Error::other)?;
    entry.prev = prev.to_owned();
    let body = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let line = format!("{}{HASH_FIELD}{hash}\"}}\n", &body[..body.len() - 1]);
    Ok((entry, line, hash))
}

impl AuditTrail for AuditLog {
    fn append(&self, entry: Entry) -> std::io::Result<Entry> {
        AuditLog::append(self, entry)
    }

    fn query(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> std::io::Result<(Vec<serde_json::Value>, bool)> {
        AuditLog::query(self, filter, limit)
    }

    fn head(&self) -> std::io::Result<(u64, String)> {
        Ok(AuditLog::head(self))
    }

    fn location(&self) -> String {
        self.settings.path.display().to_string()
    }

    fn take_over(&self) -> Result<bool, String> {
        AuditLog::take_over(self).map_err(|e| e.to_string())
    }
}

pub struct AuditLog {
    settings: AuditSettings,
    inner: Mutex<Chain>,
    /// The held `PATH.lock`, once [`AuditLog::take_over`] succeeded.
    owner: Mutex<Option<File>>,
}

struct Chain {
    file: File,
    size: u64,
    seq: u64,
    head: String,
    /// A failed write could not be cut off again: appending after it would bury torn
    /// bytes inside the chain, so nothing is appended until a restart repairs the tail.
    poisoned: bool,
}

/// Opens (or creates) the log and finds the end of its chain. A last line cut short by a
/// crash was never acknowledged: it is dropped, and said so.
fn load_chain(path: &Path) -> Result<Chain, OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(residency_config::parent_dir(path)).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io)?;
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        tracing::warn!(
            path = %path.display(),
            bytes = text.len() - complete,
            "dropping an audit entry cut short by a crash (it was never acknowledged)"
        );
        file.set_len(complete as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    let last_line = text[..complete]
        .strip_suffix(b"\n")
        .map(|t| t.rsplit(|&b| b == b'\n').next().unwrap_or(t));
    let (seq, head) = match last_line {
        Some(line) => chain_end(line).map_err(|reason| OpenError::Corrupt {
            path: path.to_owned(),
            reason,
        })?,
        None => match rotated_files(path).map_err(io)?.last() {
            Some(rotated) => last_of(rotated).map_err(|reason| OpenError::Corrupt {
                path: rotated.clone(),
                reason,
            })?,
            None => (0, GENESIS.to_owned()),
        },
    };
    Ok(Chain {
        file,
        size: complete as u64,
        seq,
        head,
        poisoned: false,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the last entry is unreadable ({reason}); run `residency-router audit verify` on it and move the file aside", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl AuditLog {
    /// Opens (or creates) the log and finds the end of its chain. A last line cut short by a
    /// crash was never acknowledged: it is dropped, and said so.
    pub fn open(settings: &AuditSettings) -> Result<AuditLog, OpenError> {
        Ok(AuditLog {
            settings: settings.clone(),
            inner: Mutex::new(load_chain(&settings.path)?),
            owner: Mutex::new(None),
        })
    }

    /// Makes this process the log's only writer: takes an exclusive lock on `PATH.lock` and
    /// reads the chain's end again, since a router being upgraded away may have appended
    /// since [`AuditLog::open`]. `Ok(false)` while another process holds the lock.
    pub fn take_over(&self) -> Result<bool, OpenError> {
        let mut owner = self.owner.lock().unwrap_or_else(|p| p.into_inner());
        if owner.is_some() {
            return Ok(true);
        }
        let mut lock_path = self.settings.path.as_os_str().to_owned();
        lock_path.push(".lock");
        let io = |source| OpenError::Io {
            path: PathBuf::from(&lock_path),
            source,
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        *self.lock() = load_chain(&self.settings.path)?;
        *owner = Some(lock);
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.settings.path
    }

    /// The newest entry's hash: publish it elsewhere to anchor the chain.
    pub fn head(&self) -> (u64, String) {
        let chain = self.lock();
        (chain.seq, chain.head.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one entry and fsyncs it. Blocking.
    pub fn append(&self, entry: Entry) -> std::io::Result<Entry> {
        let mut chain = self.lock();
        if chain.poisoned {
            return Err(std::io::Error::other(
                "an earlier write could not be undone; restart the router to repair the log's end",
            ));
        }
        let (entry, line, hash) = seal(entry, chain.seq + 1, &chain.head)?;
        if chain.size > 0 && chain.size + line.len() as u64 > self.settings.max_file_bytes {
            self.rotate(&mut chain)?;
        }
        if let Err(e) = chain
            .file
            .write_all(line.as_bytes())
            .and_then(|()| chain.file.sync_data())
        {
            // Whatever part was written is cut off again, so the next entry starts on a clean line.
            if chain.file.set_len(chain.size).is_err() {
                chain.poisoned = true;
            }
            return Err(e);
        }
        chain.size += line.len() as u64;
        chain.seq = entry.seq;
        chain.head = hash;
        Ok(entry)
    }

    fn rotate(&self, chain: &mut Chain) -> std::io::Result<()> {
        let path = &self.settings.path;
        let rotated = rotated_name(path, chain.seq);
        if rotated.exists() {
            // Never replace a rotated file: it holds entries inside the retention period.
            let exists = format!("{} already exists", rotated.display());
            return Err(std::io::Error::other(exists));
        }
        std::fs::rename(path, &rotated)?;
        // From the rename on, the live file is the new one, whatever fails next.
        chain.file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        chain.size = 0;
        File::open(residency_config::parent_dir(path))?.sync_all()?;
        tracing::info!(rotated = %rotated.display(), "audit log rotated");
        self.expire_rotated();
        Ok(())
    }

    /// Deletes rotated files whose newest entry is older than the retention period. A file
    /// whose age cannot be read is kept.
    fn expire_rotated(&self) {
        let Ok(files) = rotated_files(&self.settings.path) else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        let retention =
            time::Duration::try_from(self.settings.retention).unwrap_or(time::Duration::MAX);
        for file in files {
            let newest = last_entry_time(&file);
            if newest.is_some_and(|t| now - t > retention) {
                match std::fs::remove_file(&file) {
                    Ok(()) => tracing::info!(file = %file.display(), "expired audit file deleted"),
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "cannot delete an expired audit file")
                    }
                }
            }
        }
    }

    /// Entries matching `filter`, oldest first, after `filter.after_seq`, at most `limit`;
    /// and whether more follow.
    pub fn query(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> std::io::Result<(Vec<serde_json::Value>, bool)> {
        // Under the lock only long enough to open the files and note how much of the live
        // one is complete: a long scan must not hold up writes. Open handles keep reading
        // the right bytes even if a rotation renames the files meanwhile.
        let (opened, live_size) = {
            let chain = self.lock();
            let mut files = rotated_files(&self.settings.path)?;
            // A rotated file holds entries up to the seq in its name: skip those before the cursor.
            files.retain(|f| rotated_last_seq(f).is_none_or(|last| last > filter.after_seq));
            files.push(self.settings.path.clone());
            let opened: Vec<File> = files.iter().filter_map(|f| File::open(f).ok()).collect();
            (opened, chain.size)
        };
        let last = opened.len().saturating_sub(1);
        let mut found = Vec::new();
        for (i, file) in opened.into_iter().enumerate() {
            let reader: Box<dyn BufRead> = if i == last {
                Box::new(BufReader::new(file.take(live_size)))
            } else {
                Box::new(BufReader::new(file))
            };
            for line in reader.lines() {
                let line = line?;
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if filter.matches(&entry) {
                    if found.len() == limit {
                        return Ok((found, true));
                    }
                    found.push(entry);
                }
            }
        }
        Ok((found, false))
    }
}

/// `GET /v1/audit` filters.
#[derive(Debug, Default)]
pub struct Filter {
    pub after_seq: u64,
    pub tenant: Option<String>,
    pub actor: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

impl Filter {
    pub fn matches(&self, entry: &serde_json::Value) -> bool {
        let text = |field: &str| entry.get(field).and_then(|v| v.as_str());
        let time = text("time").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        entry.get("seq").and_then(|s| s.as_u64()).unwrap_or(0) > self.after_seq
            && self
                .tenant
                .as_deref()
                .is_none_or(|t| text("tenant") == Some(t))
            && self
                .actor
                .as_deref()
                .is_none_or(|a| text("actor") == Some(a))
            && self
                .since
                .is_none_or(|since| time.is_some_and(|t| t >= since))
            && self
                .until
                .is_none_or(|until| time.is_some_and(|t| t < until))
    }
}

fn rotated_name(path: &Path, last_seq: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{last_seq:020}"));
    PathBuf::from(name)
}

fn rotated_last_seq(file: &Path) -> Option<u64> {
    let name = file.file_name()?.to_str()?;
    let (_, suffix) = name.rsplit_once('.')?;
    (suffix.len() == 20).then(|| suffix.parse().ok()).flatten()
}

/// Rotated files of the log at `path`, oldest first.
fn rotated_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = residency_config::parent_dir(path);
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
                && rotated_last_seq(p).is_some()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The last complete line of a file.
fn last_line(file: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut opened = File::open(file)?;
    let len = opened.metadata()?.len();
    // Entries are small; the tail holds the last one.
    let start = len.saturating_sub(1 << 20);
    opened.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    opened.read_to_end(&mut tail)?;
    let complete = tail.iter().rposition(|&b| b == b'\n');
    Ok(complete.map(|end| {
        let tail = &tail[..end];
        tail.rsplit(|&b| b == b'\n').next().unwrap_or(tail).to_vec()
    }))
}

fn last_of(file: &Path) -> Result<(u64, String), String> {
    match last_line(file).map_err(|e| e.to_string())? {
        Some(line) => chain_end(&line),
        None => Err("the file has no complete entry".into()),
    }
}

fn last_entry_time(file: &Path) -> Option<OffsetDateTime> {
    let line = last_line(file).ok()??;
    let entry: serde_json::Value = serde_json::from_slice(&line).ok()?;
    OffsetDateTime::parse(entry.get("time")?.as_str()?, &Rfc3339).ok()
}

/// `(seq, hash)` of a line, after checking its own hash.
fn chain_end(line: &[u8]) -> Result<(u64, String), String> {
    let checked = check_line(line)?;
    Ok((checked.seq, checked.hash))
}

struct CheckedLine {
    seq: u64,
    prev: String,
    hash: String,
}

/// Parses one line and checks that its hash covers its content.
fn check_line(line: &[u8]) -> Result<CheckedLine, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_owned())?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let hash = field("hash").ok_or("no `hash`")?;
    let prev = field("prev").ok_or("no `prev`")?;
    let seq = value
        .get("seq")
        .and_then(|v| v.as_u64())
        .ok_or("no `seq`")?;
    let at = text
        .rfind(HASH_FIELD)
        .ok_or("`hash` is not the last field")?;
    if !text[at..].starts_with(&format!("{HASH_FIELD}{hash}\"}}")) || !text.ends_with("\"}") {
        return Err("`hash` is not the last field".into());
    }
    let body = format!("{}}}", &text[..at]);
    let computed = hex::encode(Sha256::digest(body.as_bytes()));
    if computed != hash {
        return Err(format!(
            "content does not match its hash (recorded {hash}, computed {computed}): the entry was altered"
        ));
    }
    Ok(CheckedLine { seq, prev, hash })
}

/// What `audit verify` found in an intact chain.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hash the chain continues from: zeros when it starts at the first entry ever.
    pub starts_after: String,
    pub head: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct Broken {
    pub file: PathBuf,
    /// 1-based line of the first entry that does not verify.
    pub line: usize,
    pub reason: String,
}

/// Checks the chain through `files`, in order (rotated files oldest first, then the live one).
pub fn verify(files: &[PathBuf]) -> Result<Verified, Broken> {
    let mut expected: Option<(u64, String)> = None;
    let mut verified = Verified {
        entries: 0,
        first_seq: 0,
        last_seq: 0,
        starts_after: String::new(),
        head: String::new(),
    };
    for file in files {
        let broken = |line: usize, reason: String| Broken {
            file: file.clone(),
            line,
            reason,
        };
        let text = std::fs::read(file).map_err(|e| broken(0, format!("cannot read: {e}")))?;
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let number = i + 1;
            if line.is_empty() {
                if i + 1 == lines.len() {
                    break;
                }
                return Err(broken(number, "empty line inside the log".into()));
            }
            if i + 1 == lines.len() {
                return Err(broken(
                    number,
                    "the last entry is cut short (no newline)".into(),
                ));
            }
            let checked = check_line(line).map_err(|reason| broken(number, reason))?;
            match &expected {
                None => {
                    if checked.seq == 1 && checked.prev != GENESIS {
                        return Err(broken(
                            number,
                            "the first entry does not start the chain".into(),
                        ));
                    }
                    verified.first_seq = checked.seq;
                    verified.starts_after = checked.prev.clone();
                }
                Some((seq, hash)) => {
                    if checked.seq != seq + 1 {
                        return Err(broken(
                            number,
                            format!(
                                "seq {} follows {seq}: an entry is missing or out of order",
                                checked.seq
                            ),
                        ));
                    }
                    if checked.prev != *hash {
                        return Err(broken(
                            number,
                            "`prev` is not the previous entry's hash: the chain was cut or an earlier entry rewritten".into(),
                        ));
                    }
                }
            }
            verified.entries += 1;
            verified.last_seq = checked.seq;
            verified.head = checked.hash.clone();
            expected = Some((checked.seq, checked.hash));
        }
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(dir: &Path, max_file_bytes: u64, retention: Duration) -> AuditSettings {
        AuditSettings {
            path: dir.join("audit.log"),
            max_file_bytes,
            retention,
        }
    }

    fn entry(n: usize) -> Entry {
        Entry {
            seq: 0,
            time: String::new(),
            actor: "ops".into(),
            role: Some("operator".into()),
            source: "127.0.0.1:1".into(),
            action: "tenant.update".into(),
            tenant: Some(format!("t-{n}")),
            outcome: "applied".into(),
            status: 200,
            before: None,
            after: Some(serde_json::json!({"id": format!("t-{n}"), "region": "eu"})),
            request_id: format!("req-{n}"),
            ..Entry::default()
        }
    }

    fn all_files(log: &AuditLog) -> Vec<PathBuf> {
        let mut files = rotated_files(log.path()).unwrap();
        files.push(log.path().to_owned());
        files
    }

    #[test]
    fn the_chain_verifies_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), 1 << 20, Duration::from_secs(3600));
        let log = AuditLog::open(&settings).unwrap();
        for n in 0..3 {
            log.append(entry(n)).unwrap();
        }
        drop(log);
        let log = AuditLog::open(&settings).unwrap();
        let appended = log.append(entry(3)).unwrap();
        assert_eq!(appended.seq, 4);
        let verified = verify(std::slice::from_ref(&settings.path)).unwrap();
        assert_eq!(
            (verified.entries, verified.first_seq, verified.last_seq),
            (4, 1, 4)
        );
        assert_eq!(verified.starts_after, GENESIS);
        assert_eq!(log.head(), (4, verified.head));
    }

    #[test]
    fn any_edit_removal_or_reordering_is_found_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), 1 << 20, Duration::from_secs(3600));
        let log = AuditLog::open(&settings).unwrap();
        for n in 0..4 {
            log.append(entry(n)).unwrap();
        }
        let original = std::fs::read_to_string(&settings.path).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        let check = |lines: Vec<String>| {
            std::fs::write(&settings.path, lines.join("\n") + "\n").unwrap();
            verify(std::slice::from_ref(&settings.path)).unwrap_err()
        };
        let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();

        let mut edited = owned();
        edited[1] = edited[1].replace("\"region\":\"eu\"", "\"region\":\"us\"");
        let broken = check(edited);
        assert_eq!(broken.line, 2);
        assert!(broken.reason.contains("altered"), "{broken}");

        let mut removed = owned();
        removed.remove(2);
        assert_eq!(check(removed).line, 3);

        let mut swapped = owned();
        swapped.swap(1, 2);
        assert_eq!(check(swapped).line, 2);

        // A rewritten entry with a recomputed hash still breaks the link to the next one.
        let mut rehashed = owned();
        let body =
            rehashed[1][..rehashed[1].rfind(HASH_FIELD).unwrap()].replace("t-1", "t-9") + "}";
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        rehashed[1] = format!("{}{HASH_FIELD}{hash}\"}}", &body[..body.len() - 1]);
        let broken = check(rehashed);
        assert_eq!(broken.line, 3);
        assert!(broken.reason.contains("prev"), "{broken}");

        std::fs::write(&settings.path, &original[..original.len() - 10]).unwrap();
        assert!(verify(std::slice::from_ref(&settings.path))
            .unwrap_err()
            .reason
            .contains("cut short"));
    }

    #[test]
    fn one_writer_at_a_time_and_the_next_one_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), 1 << 20, Duration::from_secs(3600));
        let old = AuditLog::open(&settings).unwrap();
        // An upgrade: the new process opens the log while the old one still writes.
        let new = AuditLog::open(&settings).unwrap();
        assert!(old.take_over().unwrap());
        old.append(entry(0)).unwrap();
        assert!(
            !new.take_over().unwrap(),
            "the old process still holds the log"
        );
        old.append(entry(1)).unwrap();
        drop(old);
        assert!(new.take_over().unwrap());
        assert_eq!(
            new.append(entry(2)).unwrap().seq,
            3,
            "the chain continues after the old writer's entries"
        );
        assert_eq!(
            verify(std::slice::from_ref(&settings.path))
                .unwrap()
                .entries,
            3
        );
    }

    #[test]
    fn a_torn_last_line_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), 1 << 20, Duration::from_secs(3600));
        let log = AuditLog::open(&settings).unwrap();
        log.append(entry(0)).unwrap();
        drop(log);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&settings.path)
            .unwrap();
        file.write_all(b"{\"seq\":2,\"ti").unwrap();
        let log = AuditLog::open(&settings).unwrap();
        assert_eq!(log.append(entry(1)).unwrap().seq, 2);
        assert_eq!(
            verify(std::slice::from_ref(&settings.path))
                .unwrap()
                .entries,
            2
        );
    }

    #[test]
    fn rotation_continues_the_chain_and_keeps_files_inside_retention() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), 1000, Duration::from_secs(3600));
        let log = AuditLog::open(&settings).unwrap();
        for n in 0..20 {
            log.append(entry(n)).unwrap();
        }
        let files = all_files(&log);
        assert!(files.len() >= 5, "{files:?}");
        let verified = verify(&files).unwrap();
        assert_eq!(
            (verified.entries, verified.first_seq, verified.last_seq),
            (20, 1, 20)
        );
        let (page, more) = log
            .query(
                &Filter {
                    after_seq: 3,
                    ..Filter::default()
                },
                5,
            )
            .unwrap();
        let seqs: Vec<u64> = page.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
        assert!(more);
        let filter = Filter {
            tenant: Some("t-7".into()),
            ..Filter::default()
        };
        let (page, more) = log.query(&filter, 5).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0]["request_id"], "req-7");
        assert!(!more);

        // The live file alone verifies as a continuation of the rotated ones.
        let live = verify(std::slice::from_ref(&settings.path)).unwrap();
        assert_eq!(live.last_seq, 20);
        assert_ne!(live.starts_after, GENESIS);
        // With the live file gone, the chain is picked up from the newest rotated file.
        drop(log);
        std::fs::rename(&settings.path, dir.path().join("moved")).unwrap();
        let log = AuditLog::open(&settings).unwrap();
        assert_eq!(log.head(), (live.first_seq - 1, live.starts_after));
    }

    #[test]
    fn rotated_files_past_retention_are_deleted_and_younger_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keep = settings(dir.path(), 1000, Duration::from_secs(3600));
        let log = AuditLog::open(&keep).unwrap();
        for n in 0..10 {
            log.append(entry(n)).unwrap();
        }
        let rotated = rotated_files(log.path()).unwrap().len();
        assert!(rotated >= 2);
        drop(log);
        // A zero retention: every rotated file is past it at the next rotation.
        let expire = settings(dir.path(), 1000, Duration::ZERO);
        let log = AuditLog::open(&expire).unwrap();
        for n in 10..20 {
            log.append(entry(n)).unwrap();
        }
        let left = rotated_files(log.path()).unwrap();
        assert!(left.len() <= 1, "old rotated files are deleted: {left:?}");
    }
}
