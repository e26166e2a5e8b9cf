use std::net::IpAddr;

use ipnet::IpNet;

/// The address to locate (SPEC 6): the socket peer, unless the peer is a trusted proxy; then
/// the right-most `x-forwarded-for` entry that is not itself a trusted proxy. Entries that do
/// not parse end the walk: nothing left of a garbled entry can be trusted. When every entry is
/// trusted, the left-most one is the best guess.
///
/// `forwarded_for` yields the raw header lines in order; each may hold a comma-separated list.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`.
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let mut leftmost_trusted = peer;
    for line in forwarded_for.rev() {
        for entry in line.rsplit(|&b| b == b',') {
            let Some(ip) = parse_entry(entry) else {
                return leftmost_trusted;
            };
            if !is_trusted(&ip) {
                return ip;
            }
            leftmost_trusted = ip;
        }
    }
    leftmost_trusted
}

/// Whether the socket peer is one of the `trusted` proxies, whose forwarding headers are
/// believed. A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`: they are compared
/// as IPv4.
pub fn is_trusted_proxy(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = peer.to_canonical();
    trusted.iter().any(|net| net.contains(&peer))
}

/// One `x-forwarded-for` entry: an IPv4 or IPv6 address, optionally bracketed or with a port.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    parse_address(entry).map(|ip| ip.to_canonical())
}

fn parse_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    // `[2001:db8::1]:443` or `[2001:db8::1]`
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    // `203.0.113.7:443`
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn trusted_proxies_are_matched_as_ipv4_when_mapped() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        for (peer, expected) in [
            ("10.1.2.3", true),
            ("::ffff:10.1.2.3", true),
            ("2001:db8::1", true),
            ("11.0.0.1", false),
            ("::ffff:11.0.0.1", false),
        ] {
            assert_eq!(
                is_trusted_proxy(peer.parse().unwrap(), &trusted),
                expected,
                "{peer}"
            );
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(peer: &str, xff: &[&str], trusted: &[&str]) -> IpAddr {
        client_address(ip(peer), xff.iter().map(|l| l.as_bytes()), &nets(trusted))
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            client("81.2.69.1", &["1.2.3.4"], &["10.0.0.0/8"]),
            ip("81.2.69.1")
        );
        assert_eq!(client("127.0.0.1", &["1.2.3.4"], &[]), ip("127.0.0.1"));
    }

    #[test]
    fn trusted_chain_yields_the_rightmost_untrusted_entry() {
        let trusted = ["127.0.0.1/32", "10.0.0.0/8"];
        assert_eq!(
            client("127.0.0.1", &["81.2.69.1"], &trusted),
            ip("81.2.69.1")
        );
        // The client can prepend lies; only entries added by trusted hops count.
        assert_eq!(
            client("127.0.0.1", &["6.6.6.6, 81.2.69.1, 10.1.2.3"], &trusted),
            ip("81.2.69.1")
        );
        // The list may be split over several header lines.
        assert_eq!(
            client("127.0.0.1", &["6.6.6.6, 81.2.69.1", "10.1.2.3"], &trusted),
            ip("81.2.69.1")
        );
    }

    #[test]
    fn ipv6_and_ports_are_understood() {
        let trusted = ["::1/128", "fd00::/8"];
        assert_eq!(
            client("::1", &["2a02:8108::1, fd00::7"], &trusted),
            ip("2a02:8108::1")
        );
        assert_eq!(
            client("::1", &["[2a02:8108::1]:443"], &trusted),
            ip("2a02:8108::1")
        );
        assert_eq!(
            client("::1", &["81.2.69.1:1234"], &trusted),
            ip("81.2.69.1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            client("::ffff:10.1.2.3", &["81.2.69.1"], &trusted),
            ip("81.2.69.1")
        );
        assert_eq!(
            client(
                "::ffff:10.1.2.3",
                &["::ffff:10.9.9.9, 81.2.69.1, ::ffff:10.0.0.2"],
                &trusted
            ),
            ip("81.2.69.1")
        );
        assert_eq!(client("::ffff:81.2.69.1", &[], &trusted), ip("81.2.69.1"));
    }

    #[test]
    fn garbage_or_all_trusted_falls_back_safely() {
        let trusted = ["127.0.0.1/32", "10.0.0.0/8"];
        assert_eq!(
            client("127.0.0.1", &["81.2.69.1, garbage"], &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client("127.0.0.1", &["10.0.0.9, 10.0.0.8"], &trusted),
            ip("10.0.0.9")
        );
        assert_eq!(client("127.0.0.1", &[], &trusted), ip("127.0.0.1"));
    }
}
