//! How other servers may read the same request bytes (issue 14: one canonical reading).
//!
//! The router decides the tenant from the request as sent and forwards those bytes. A backend
//! framework that reads the path or the Host more leniently (decoding `%2F`, treating `\` as
//! `/`, dropping `;params`, resolving dots, matching case-insensitively, cutting the Host at
//! its first colon) could serve a different tenant than the one the router routed, in the wrong
//! region. These functions model the most lenient mainstream reading so that identification can
//! refuse every request whose readings disagree.

use std::borrow::Cow;

/// Decoding rounds a lenient reading applies (`%252F` -> `%2F` -> `/`); a path that still
/// decodes after this many is refused rather than read.
const MAX_DECODING_ROUNDS: usize = 3;

/// The path as the most lenient mainstream backend reads it: percent-decoded until nothing
/// decodes (double encodings included), `\` read as `/`, `;params` dropped from every segment
/// (Tomcat, Jetty, Spring), empty segments merged (nginx's `merge_slashes`) and dot segments
/// resolved (RFC 3986 5.2.4, Go's `path.Clean`).
///
/// `None` when no single reading is safe to assume: a NUL byte (C backends cut the path
/// there), an overlong UTF-8 sequence (old decoders read `%C0%AF` as `/`), or more encoding
/// layers than [`MAX_DECODING_ROUNDS`]. Borrowed (no allocation) when the path has nothing a
/// lenient reader would change apart from dot or empty segments, which strict identification
/// refuses on its own.
pub fn lenient_path(path: &str) -> Option<Cow<'_, str>> {
    if !path.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        return Some(Cow::Borrowed(path));
    }
    let mut bytes = path.as_bytes().to_vec();
    let mut rounds = 0;
    while let Some(decoded) = percent_decode_once(&bytes) {
        rounds += 1;
        if rounds > MAX_DECODING_ROUNDS {
            return None;
        }
        bytes = decoded;
    }
    if bytes.contains(&0) || has_overlong_utf8(&bytes) {
        return None;
    }
    for b in &mut bytes {
        if *b == b'\\' {
            *b = b'/';
        }
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in bytes.split(|b| *b == b'/') {
        let segment = match segment.iter().position(|b| *b == b';') {
            Some(params) => &segment[..params],
            None => segment,
        };
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut read = Vec::with_capacity(bytes.len() + 1);
    for segment in &segments {
        read.push(b'/');
        read.extend_from_slice(segment);
    }
    // A trailing slash (or a trailing dot segment, which names the directory) is kept: it
    // decides whether `/t/{tenant}` without its own slash matched.
    if segments.is_empty()
        || matches!(
            bytes.rsplit(|b| *b == b'/').next(),
            Some(b"" | b"." | b"..")
        )
    {
        read.push(b'/');
    }
    Some(Cow::Owned(String::from_utf8_lossy(&read).into_owned()))
}

/// One round of percent-decoding, or `None` when nothing in `bytes` decodes.
fn percent_decode_once(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut decoded_any = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high << 4 | low);
                decoded_any = true;
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    decoded_any.then_some(out)
}

/// Lead bytes that only ever start an overlong (non-shortest) UTF-8 encoding.
fn has_overlong_utf8(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| {
        matches!(w[0], 0xC0 | 0xC1)
            || (w[0] == 0xE0 && (0x80..=0x9F).contains(&w[1]))
            || (w[0] == 0xF0 && (0x80..=0x8F).contains(&w[1]))
    }) || bytes.last().is_some_and(|b| matches!(b, 0xC0 | 0xC1))
}

/// Whether a Host (or `:authority`) value has one reading: `host[:port]` where host is a DNS
/// name of `[A-Za-z0-9._-]` or a bracketed IPv6 literal and port is digits. Anything else
/// (`globex.app.example.com:x`, a comma list, spaces, `@`, percent-encoding) is read
/// differently by different servers: Express cuts at the first colon, others at the last or
/// not at all. An empty value is "no Host" (RFC 9112 3.2).
pub fn is_plain_authority(value: &str) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("ipv6", Some(port)),
            None if after.is_empty() => ("ipv6", None),
            None => return false,
        }
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_reading_of_paths() {
        for (path, read) in [
            ("/t/acme/orders", Some("/t/acme/orders")),
            ("/t/acme/..;/globex/orders", Some("/t/globex/orders")),
            ("/t/acme/..%2Fglobex/orders", Some("/t/globex/orders")),
            ("/t/acme/..%2fglobex/orders", Some("/t/globex/orders")),
            ("/t/acme/..\\globex/o", Some("/t/globex/o")),
            ("/t/acme/..%5Cglobex/o", Some("/t/globex/o")),
            ("/t%2Fglobex/orders", Some("/t/globex/orders")),
            ("/t;x/globex/orders", Some("/t/globex/orders")),
            ("/t%3Bx/globex/orders", Some("/t/globex/orders")),
            ("/t/acme/..%252Fglobex", Some("/t/globex")),
            ("/t/acme/%2e%2e/globex/", Some("/t/globex/")),
            ("/t/acme/100%25", Some("/t/acme/100%")),
            ("/t/acme/a%2Fb", Some("/t/acme/a/b")),
            ("/t/acme;jsessionid=1/x", Some("/t/acme/x")),
            ("/t/acme/%2e%2e", Some("/t/")),
            ("/%2e%2e/%2e%2e/t/globex", Some("/t/globex")),
            ("/;/t/globex", Some("/t/globex")),
            ("/t/acme/x%00", None),
            ("/t/acme/%C0%AF..%C0%AFglobex", None),
            ("/t/acme/%E0%80%AF", None),
            ("/t/acme/..%25252525%32%46globex", None),
            ("/t/acme/%zz", Some("/t/acme/%zz")),
            ("/t/acme/%", Some("/t/acme/%")),
            ("/t/acme/%4", Some("/t/acme/%4")),
            ("/t/caf%C3%A9", Some("/t/café")),
        ] {
            assert_eq!(lenient_path(path).as_deref(), read, "{path}");
        }
        assert!(matches!(lenient_path("/t/acme/x"), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn plain_authorities_have_one_reading() {
        for ok in [
            "globex.app.example.com",
            "globex.app.example.com:8080",
            "GLOBEX.App.Example.com.",
            "localhost:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8443",
            "[2001:db8::1]:80",
            "my_host.internal",
        ] {
            assert!(is_plain_authority(ok), "{ok}");
        }
        for bad in [
            "globex.app.example.com:x",
            "acme.app.example.com:80:globex",
            "globex.app.example.com:80x",
            "acme.app.example.com, globex.app.example.com",
            "acme.app.example.com globex.app.example.com",
            "user@globex.app.example.com",
            "glo%62ex.app.example.com",
            ":80",
            "[::1",
            "[::1]x",
            "[]",
            "[::1]:80:80",
            "acme.app.example.com:123456",
            "acme.app.example.com/x",
            "acme.app.example.com\\x",
            "caf\u{e9}.app.example.com",
        ] {
            assert!(!is_plain_authority(bad), "{bad}");
        }
    }
}
