//! `x-request-id`: kept when the client sent a sane one, generated otherwise.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

const MAX_LEN: usize = 128;

/// Accepts 1 to 128 visible characters from a conservative set, so a client cannot inject
/// anything odd into backend logs.
fn is_acceptable(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A request's id as a header value: built once, then shared (a reference count, no copy)
/// by the backend request, the response and the access log.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl Default for RequestId {
    fn default() -> Self {
        RequestId(HeaderValue::from_static(""))
    }
}

/// Where generated ids come from: one per router, shared by its listeners. A generated id is
/// 32 hex digits: this router's random prefix and a mixed counter, unique within the router
/// and unlikely to collide across routers, with no syscall per request.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut random = [0u8; 8];
        // The prefix only separates routers; time and pid stand in if the OS has no entropy.
        let entropy = getrandom::fill(&mut random).map_or(0, |()| u64::from_le_bytes(random));
        RequestIds {
            prefix: crate::pools::mix(nanos ^ (u64::from(std::process::id()) << 32) ^ entropy),
            counter: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The client's `x-request-id` if it is acceptable, else a generated one.
    pub fn for_request(&self, sent: Option<&HeaderValue>) -> RequestId {
        match sent {
            // Copied, not shared: a shared value would keep the client's whole header buffer
            // alive for as long as the access log holds the record.
            Some(value) if is_acceptable(value.as_bytes()) => RequestId(
                HeaderValue::from_bytes(value.as_bytes()).expect("acceptable ids are valid"),
            ),
            _ => RequestId(self.generate()),
        }
    }

    fn generate(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        hex(self.prefix, &mut id[..16]);
        hex(crate::pools::mix(n), &mut id[16..]);
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }
}

impl RequestId {
    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }

    pub fn as_str(&self) -> &str {
        // Only acceptable ids (ASCII) and generated ones (hex) are ever held.
        self.0.to_str().unwrap_or_default()
    }
}

fn hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[(value >> (60 - 4 * i)) as usize & 0xf];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_acceptable() {
        let ids = RequestIds::default();
        let a = ids.generate();
        let b = ids.generate();
        assert_ne!(a, b);
        let other_router = RequestIds::default().generate();
        assert_ne!(
            a.as_bytes()[..16],
            other_router.as_bytes()[..16],
            "each router has its own prefix"
        );
        assert_eq!(a.len(), 32);
        assert!(is_acceptable(a.as_bytes()));
    }

    #[test]
    fn hex_digits_match_the_formatter() {
        for value in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut out = [0u8; 16];
            hex(value, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{value:016x}"));
        }
    }

    #[test]
    fn a_client_id_is_kept_only_when_acceptable() {
        let ids = RequestIds::default();
        let kept = ids.for_request(Some(&HeaderValue::from_static("abc-1")));
        assert_eq!(kept.as_str(), "abc-1");
        let replaced = ids.for_request(Some(&HeaderValue::from_static("a b")));
        assert_eq!(replaced.as_str().len(), 32);
        assert_eq!(ids.for_request(None).as_str().len(), 32);
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
