//! Which address a request comes from. Behind a reverse proxy every request arrives from the
//! proxy, and the client's address is in `X-Forwarded-For`, which anyone can write; so the
//! header is believed only when the peer is a configured trusted proxy, and then only up to
//! the first hop that is not itself one. This is the one place that decides it: the limits,
//! the sign-in throttle and any log of who asked use the address resolved here.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Hops of `X-Forwarded-For` read at most: no legitimate chain of proxies is longer, and a
/// longer header costs only this much.
const MAX_HOPS: usize = 32;

/// The `trusted_proxies` setting: addresses and CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses entries such as `10.0.0.0/8`, `192.0.2.7` or `::1`; a bare address is a range
    /// of one. Errors name the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("trusted_proxies entry {e:?} is not an address or CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
    /// right-most address of `X-Forwarded-For` (its header lines in order, each a comma-separated
    /// list) that is not itself a trusted proxy. A hop that does not parse ends the walk at the
    /// trusted hop that reported it, since nothing left of it can be believed; if every hop is
    /// trusted, the left-most one. `None` only when the peer is unknown.
    pub fn client_address<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.contains(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let hops = forwarded_for.rev().flat_map(|line| line.rsplit(',')).take(MAX_HOPS);
        for hop in hops {
            let Some(ip) = parse_hop(hop.trim()) else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// An `X-Forwarded-For` entry: an address, or an address with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`), which some proxies write.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:a.b.c.d`) as the IPv4 address they are,
/// so that one client has one key and matches IPv4 ranges.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_parse_as_ranges_or_addresses() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.7", "::1"]).unwrap();
        assert!(t.contains(ip("10.1.2.3")));
        assert!(t.contains(ip("192.0.2.7")));
        assert!(!t.contains(ip("192.0.2.8")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped addresses are IPv4");
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example"]).is_err());
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_trusted() {
        let t = TrustedProxies::parse(&["10.0.0.1"]).unwrap();
        let from = |peer: &str, xff: &[&str]| t.client_address(Some(ip(peer)), xff.iter().copied());
        assert_eq!(from("192.0.2.9", &["203.0.113.5"]), Some(ip("192.0.2.9")));
        assert_eq!(from("10.0.0.1", &["203.0.113.5"]), Some(ip("203.0.113.5")));
        assert_eq!(from("10.0.0.1", &[]), Some(ip("10.0.0.1")));
        assert_eq!(
            TrustedProxies::default().client_address(Some(ip("10.0.0.1")), ["203.0.113.5"].into_iter()),
            Some(ip("10.0.0.1")),
            "no trusted proxies: the header is never believed"
        );
        assert_eq!(TrustedProxies::default().client_address(None, [].into_iter()), None);
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let from = |xff: &[&str]| t.client_address(Some(ip("10.0.0.1")), xff.iter().copied());
        // A client can put anything on the left; only what our proxies appended counts.
        assert_eq!(from(&["198.51.100.1, 203.0.113.5, 10.0.0.2"]), Some(ip("203.0.113.5")));
        assert_eq!(
            from(&["198.51.100.1", "203.0.113.5"]),
            Some(ip("203.0.113.5")),
            "several lines"
        );
        assert_eq!(from(&["203.0.113.5:4711"]), Some(ip("203.0.113.5")));
        assert_eq!(from(&["[2001:db8::5]:443"]), Some(ip("2001:db8::5")));
        assert_eq!(
            from(&["10.0.0.3, 10.0.0.2"]),
            Some(ip("10.0.0.3")),
            "all trusted: left-most"
        );
        assert_eq!(
            from(&["203.0.113.5, garbage, 10.0.0.2"]),
            Some(ip("10.0.0.2")),
            "a hop that does not parse stops the walk at the proxy that reported it"
        );
        let long = vec!["10.0.0.9"; 100].join(",");
        assert_eq!(from(&[&long]), Some(ip("10.0.0.9")));
    }
}
