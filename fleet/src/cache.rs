//! The local copy of the registry a router starts from when etcd is down.
//!
//! One header line, then the registry file's JSON. The header names the schema, the prefix
//! and etcd cluster it came from, the revision, when it was written and the SHA-256 of the
//! body; the file is written as temp + fsync + rename, so it is whole or absent. A router
//! starts from it only when every one of those checks out: a wrong or torn cache is worse
//! than none, since it would route tenants to a region they left.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHeader {
    pub schema: u32,
    pub prefix: String,
    pub cluster_id: u64,
    pub revision: i64,
    pub written_at_unix: u64,
    pub sha256: String,
}

/// A cache that checked out: its body is registry file JSON.
#[derive(Debug)]
pub struct Cached {
    pub header: CacheHeader,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheRefused {
    #[error("cannot read the cache: {0}")]
    Unreadable(String),
    #[error("the cache is torn or altered: {0}")]
    Corrupt(String),
    #[error("the cache has schema {0}, this router reads schema {SCHEMA}")]
    Schema(u32),
    #[error("the cache is of prefix `{found}`, not this fleet's `{expected}`")]
    Foreign { found: String, expected: String },
    #[error("the cache is {age_s} s old, older than cache_max_age_s = {max_s}")]
    TooOld { age_s: u64, max_s: u64 },
}

/// Writes the cache durably: nothing is in its place until the whole file is on disk.
pub fn write(
    path: &Path,
    prefix: &str,
    cluster_id: u64,
    revision: i64,
    now_unix: u64,
    body: &[u8],
) -> std::io::Result<()> {
    let header = CacheHeader {
        schema: SCHEMA,
        prefix: prefix.to_owned(),
        cluster_id,
        revision,
        written_at_unix: now_unix,
        sha256: hex::encode(Sha256::digest(body)),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    bytes.extend_from_slice(body);
    residency_config::StagedFile::write(path, &bytes)?
        .rename_into_place()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Reads the cache and checks it against this fleet's prefix and the age limit.
pub fn read(
    path: &Path,
    prefix: &str,
    now_unix: u64,
    max_age: Duration,
) -> Result<Cached, CacheRefused> {
    let bytes = std::fs::read(path).map_err(|e| CacheRefused::Unreadable(e.to_string()))?;
    check(bytes, prefix, now_unix, max_age)
}

/// The checks of [`read`], on the file's bytes.
pub fn check(
    mut bytes: Vec<u8>,
    prefix: &str,
    now_unix: u64,
    max_age: Duration,
) -> Result<Cached, CacheRefused> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| CacheRefused::Corrupt("no header line".into()))?;
    let header: CacheHeader = serde_json::from_slice(&bytes[..newline])
        .map_err(|e| CacheRefused::Corrupt(format!("header: {e}")))?;
    if header.schema != SCHEMA {
        return Err(CacheRefused::Schema(header.schema));
    }
    let body = bytes.split_off(newline + 1);
    if hex::encode(Sha256::digest(&body)) != header.sha256 {
        return Err(CacheRefused::Corrupt(
            "the body does not match its checksum".into(),
        ));
    }
    if header.prefix != prefix {
        return Err(CacheRefused::Foreign {
            found: header.prefix,
            expected: prefix.to_owned(),
        });
    }
    let age_s = now_unix.saturating_sub(header.written_at_unix);
    if age_s > max_age.as_secs() {
        return Err(CacheRefused::TooOld {
            age_s,
            max_s: max_age.as_secs(),
        });
    }
    Ok(Cached { header, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const BODY: &[u8] = br#"{ "tenants": [{"id":"acme","region":"us"}] }"#;

    #[test]
    fn a_cache_is_used_only_when_whole_ours_current_and_young() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.cache");
        write(&path, "/residency", 7, 42, 1_000, BODY).unwrap();
        let good = std::fs::read(&path).unwrap();
        let cached = check(good.clone(), "/residency", 1_000 + 60, DAY).unwrap();
        assert_eq!((cached.header.revision, cached.header.cluster_id), (42, 7));
        assert_eq!(cached.body, BODY);

        let refused =
            |bytes: Vec<u8>, prefix: &str, now: u64| check(bytes, prefix, now, DAY).unwrap_err();
        // Every byte of the body is covered by the checksum.
        for i in (good.iter().position(|&b| b == b'\n').unwrap() + 1)..good.len() {
            let mut flipped = good.clone();
            flipped[i] ^= 0x20;
            assert!(
                matches!(
                    refused(flipped, "/residency", 1_000),
                    CacheRefused::Corrupt(_)
                ),
                "byte {i}"
            );
        }
        // Torn anywhere: refused.
        for cut in [0, 5, good.len() / 2, good.len() - 1] {
            assert!(
                matches!(
                    refused(good[..cut].to_vec(), "/residency", 1_000),
                    CacheRefused::Corrupt(_)
                ),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            refused(good.clone(), "/other", 1_000),
            CacheRefused::Foreign { .. }
        ));
        assert_eq!(
            refused(good.clone(), "/residency", 1_000 + DAY.as_secs() + 1),
            CacheRefused::TooOld {
                age_s: DAY.as_secs() + 1,
                max_s: DAY.as_secs()
            }
        );
        let future_schema =
            String::from_utf8(good)
                .unwrap()
                .replacen("\"schema\":1", "\"schema\":2", 1);
        assert_eq!(
            refused(future_schema.into_bytes(), "/residency", 1_000),
            CacheRefused::Schema(2)
        );
    }
}
