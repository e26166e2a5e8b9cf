//! Addresses as text in a stack buffer, without `fmt` for IPv4 (the common case on the
//! request path: `x-forwarded-for` and the access log's backend).

use std::net::{IpAddr, SocketAddr};

/// Holds any IP address (45 bytes for IPv6), a colon and a port.
pub(crate) type AddrBuf = [u8; 64];

/// `ip` as text in `buf`.
pub(crate) fn ip_text(ip: IpAddr, buf: &mut AddrBuf) -> &str {
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                len = put(buf, len, itoa::Buffer::new().format(octet));
            }
            len
        }
        IpAddr::V6(_) => formatted(&ip, buf),
    };
    std::str::from_utf8(&buf[..len]).expect("an address is ASCII")
}

/// `addr` as `ip:port` (`[ip]:port` for IPv6) in `buf`.
pub(crate) fn socket_addr_text(addr: SocketAddr, buf: &mut AddrBuf) -> &str {
    let len = match addr {
        SocketAddr::V4(v4) => {
            let len = ip_text(IpAddr::V4(*v4.ip()), buf).len();
            let len = put(buf, len, ":");
            put(buf, len, itoa::Buffer::new().format(v4.port()))
        }
        SocketAddr::V6(_) => formatted(&addr, buf),
    };
    std::str::from_utf8(&buf[..len]).expect("an address is ASCII")
}

/// Writes `text` at `at`; returns where it ends.
fn put(buf: &mut AddrBuf, at: usize, text: &str) -> usize {
    let end = at + text.len();
    buf[at..end].copy_from_slice(text.as_bytes());
    end
}

fn formatted(value: &impl std::fmt::Display, buf: &mut AddrBuf) -> usize {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{value}").expect("64 bytes hold any socket address");
    cursor.position() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_is_what_display_writes(ip in any::<IpAddr>(), port in any::<u16>()) {
            let mut buf = [0u8; 64];
            prop_assert_eq!(ip_text(ip, &mut buf), ip.to_string());
            let addr = SocketAddr::new(ip, port);
            prop_assert_eq!(socket_addr_text(addr, &mut buf), addr.to_string());
        }
    }

    #[test]
    fn edges() {
        let mut buf = [0u8; 64];
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip, &mut buf), text);
        }
        let longest: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
            .parse()
            .unwrap();
        assert_eq!(socket_addr_text(longest, &mut buf), longest.to_string());
    }
}
