//! `x-request-id`: kept when the client sent a sane one, generated otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

const MAX_LEN: usize = 128;

/// Accepts 1 to 128 visible characters from a conservative set, so a client cannot inject
/// anything odd into backend logs.
pub fn is_acceptable(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A 32-hex-digit id, unique within the process and unlikely to collide across processes:
/// a random per-process prefix plus a counter (no syscall per request).
pub fn generate() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Mix pid and time; uniqueness comes from the counter, the prefix only separates processes.
        crate::pools::mix(nanos ^ (u64::from(std::process::id()) << 32))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{:016x}", crate::pools::mix(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_acceptable() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(is_acceptable(a.as_bytes()));
    }

    #[test]
    fn client_ids_are_checked() {
        assert!(is_acceptable(b"req-123_abc.def:9"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"has space"));
        assert!(!is_acceptable(b"new\nline"));
        assert!(!is_acceptable(&[b'a'; 129]));
    }
}
