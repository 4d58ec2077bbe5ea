//! Zero-copy header views over frame bytes, in the manner of smoltcp's `wire` module.
//!
//! Each view wraps a buffer (`T: AsRef<[u8]>`, plus `AsMut<[u8]>` for setters). `new_checked`
//! validates untrusted input once; after it succeeds no accessor of that view can panic.
//! Field offsets live in a `field` module per header. Hand-written (rather than etherparse)
//! because the hot path needs in-place setters on mbuf memory and no copies; etherparse is used
//! by the tests as the independent parser.

pub mod addr;
pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod ndisc;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use ethernet::MacAddr;

/// Why a header failed its check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field claims).
    #[error("truncated header")]
    Truncated,
    /// The IP version field does not match the header type.
    #[error("wrong IP version")]
    BadVersion,
    /// A header length field (IHL, TCP data offset) is below the minimum or past the buffer.
    #[error("bad header length")]
    BadHeaderLen,
    /// A total/payload length field is inconsistent with the header or the buffer.
    #[error("bad length field")]
    BadLength,
    /// A field value the view does not support (e.g. ARP for a non-Ethernet/IPv4 pair).
    #[error("unsupported field value")]
    Unsupported,
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn set_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
