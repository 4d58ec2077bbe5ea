//! Address classes the pipeline decides on: which source addresses no honest packet carries
//! (martians, RFC 1812 5.3.7 and RFC 4291 2.5.2-2.7), and IPv4-mapped IPv6 addresses.
//!
//! Addresses come as the 16 bytes of a flow key (IPv4 stored IPv4-mapped), so one function
//! serves both families without converting.

/// Whether the 16 bytes hold an IPv4 address (IPv4-mapped form `::ffff:a.b.c.d`): the top
/// 96 bits are `0xffff`.
#[inline]
pub fn is_mapped(a: &[u8; 16]) -> bool {
    u128::from_be_bytes(*a) >> 32 == 0xffff
}

/// Whether an IPv4 address (4 bytes) may be a packet's source: not 0.0.0.0/8 ("this network"),
/// 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast) or 240.0.0.0/4 (reserved, with the limited
/// broadcast 255.255.255.255).
#[inline]
pub fn is_unicast_source_v4(a: [u8; 4]) -> bool {
    a[0] != 0 && a[0] != 127 && a[0] < 224
}

/// Whether an IPv6 address may be a packet's source: not `::` (unspecified), `::1` (loopback),
/// `ff00::/8` (multicast) or IPv4-mapped (`::ffff:0:0/96`, RFC 4291 2.5.5.2: never on the wire).
/// On the address as one 128-bit word: every packet's source and destination go through it.
#[inline]
pub fn is_unicast_source_v6(a: &[u8; 16]) -> bool {
    let x = u128::from_be_bytes(*a);
    // `::` and `::1` are the two words below 2.
    x > 1 && x >> 120 != 0xff && x >> 32 != 0xffff
}

/// Whether a flow-key address (either family) may be a packet's source.
#[inline]
pub fn is_unicast_source(a: &[u8; 16]) -> bool {
    if is_mapped(a) {
        is_unicast_source_v4([a[12], a[13], a[14], a[15]])
    } else {
        is_unicast_source_v6(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(a: &str) -> [u8; 16] {
        match a.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    #[test]
    fn martian_sources() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "ff02::1",
            "ff0e::5",
        ] {
            assert!(!is_unicast_source(&key(bad)), "{bad}");
        }
        for good in [
            "1.0.0.1",
            "10.0.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "223.255.255.254",
            "192.0.2.1",
            "2001:db8::1",
            "fe80::1",
            "fd00::1",
            "::2",
        ] {
            assert!(is_unicast_source(&key(good)), "{good}");
        }
    }

    proptest::proptest! {
        /// The word forms against the standard library's address classes.
        #[test]
        fn word_checks_agree_with_std(bytes in proptest::prelude::any::<[u8; 16]>(), class in 0u8..5) {
            let mut a = bytes;
            match class {
                0 => a = [0; 16],
                1 => a = std::net::Ipv6Addr::LOCALHOST.octets(),
                2 => a[0] = 0xff,
                3 => {
                    a[..10].fill(0);
                    a[10] = 0xff;
                    a[11] = 0xff;
                }
                _ => {}
            }
            let ip = std::net::Ipv6Addr::from(a);
            let mapped = ip.to_ipv4_mapped().is_some();
            proptest::prop_assert_eq!(is_mapped(&a), mapped);
            proptest::prop_assert_eq!(
                is_unicast_source_v6(&a),
                !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast() && !mapped
            );
        }
    }

    #[test]
    fn mapped_v6_is_never_a_source() {
        let m = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets();
        assert!(is_mapped(&m));
        assert!(!is_unicast_source_v6(&m));
        assert!(!is_mapped(&key("::a00:1")), "IPv4-compatible is not mapped");
    }
}
