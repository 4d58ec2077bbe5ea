//! IPv6 Neighbour Discovery (RFC 4861): Neighbour Solicitation (type 135) and Neighbour
//! Advertisement (type 136), the ICMPv6 messages that do for IPv6 what ARP does for IPv4, with
//! their Source/Target Link-Layer Address options.
//!
//! Both messages share one layout, so one view serves both:
//!
//! ```text
//!  0      type (135 NS, 136 NA)
//!  1      code (0)
//!  2..4   checksum (ICMPv6, over the IPv6 pseudo-header)
//!  4      NA: R (0x80), S (0x40), O (0x20) flags; NS: reserved
//!  5..8   reserved
//!  8..24  target address
//!  24..   options: type (1 byte), length in units of 8 bytes (1 byte, never 0), data
//! ```

use super::{be16, checksum, ipv6, set_be16, MacAddr, WireError};
use std::net::Ipv6Addr;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const FLAGS: usize = 4;
    pub const RESERVED: std::ops::Range<usize> = 4..8;
    pub const TARGET: std::ops::Range<usize> = 8..24;
    pub const OPTIONS: usize = 24;
}

/// Length of the fixed part of a solicitation or an advertisement (RFC 4861: ICMP length
/// must be at least 24).
pub const HEADER_LEN: usize = 24;

/// Length of a link-layer address option for Ethernet (option length field 1).
pub const LL_OPTION_LEN: usize = 8;

/// ICMPv6 type of a Neighbour Solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a Neighbour Advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;

/// The all-nodes link-local multicast address, ff02::1 (where answers to duplicate address
/// detection go).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Neighbour Discovery option types.
pub mod option {
    /// Source Link-Layer Address.
    pub const SOURCE_LL_ADDR: u8 = 1;
    /// Target Link-Layer Address.
    pub const TARGET_LL_ADDR: u8 = 2;
}

/// Flags of a Neighbour Advertisement (first byte after the checksum).
pub mod flags {
    /// Router: the sender is a router.
    pub const ROUTER: u8 = 0x80;
    /// Solicited: sent in response to a solicitation.
    pub const SOLICITED: u8 = 0x40;
    /// Override: the advertisement should override a cached link-layer address.
    pub const OVERRIDE: u8 = 0x20;
}

/// The solicited-node multicast address of `addr`: ff02::1:ff00:0/104 plus its low 24 bits.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    let mut m = [0u8; 16];
    m[0] = 0xff;
    m[1] = 0x02;
    m[11] = 0x01;
    m[12] = 0xff;
    m[13..].copy_from_slice(&o[13..]);
    Ipv6Addr::from(m)
}

/// The Ethernet MAC an IPv6 multicast address maps to: 33:33 and its low 32 bits (RFC 2464).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// One option of a Neighbour Discovery message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdOption<'a> {
    /// Option type.
    pub kind: u8,
    /// The whole option, type and length bytes included (a multiple of 8 bytes).
    pub bytes: &'a [u8],
}

impl NdOption<'_> {
    /// The Ethernet address of a Source/Target Link-Layer Address option (length 1), or None
    /// for any other option or length.
    pub fn ll_addr(&self) -> Option<MacAddr> {
        let is_ll = matches!(self.kind, option::SOURCE_LL_ADDR | option::TARGET_LL_ADDR);
        match self.bytes {
            [_, 1, a, b, c, d, e, f] if is_ll => Some(MacAddr([*a, *b, *c, *d, *e, *f])),
            _ => None,
        }
    }
}

/// Iterator over the options of a Neighbour Discovery message. Stops at the first malformed
/// option (never the case after [`NdiscPacket::new_checked`]).
#[derive(Clone, Debug)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdOptions<'a> {
    /// Options from raw option bytes.
    pub fn new(bytes: &'a [u8]) -> Self {
        NdOptions { rest: bytes }
    }
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = NdOption<'a>;

    fn next(&mut self) -> Option<NdOption<'a>> {
        let (kind, units) = match self.rest {
            [kind, units, ..] => (*kind, usize::from(*units)),
            _ => return None,
        };
        let len = units * 8;
        if len == 0 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(NdOption { kind, bytes })
    }
}

/// Check that option bytes are a sequence of options with non-zero lengths inside the buffer.
fn check_options(mut rest: &[u8]) -> Result<(), WireError> {
    while !rest.is_empty() {
        let [_, units, ..] = rest else {
            return Err(WireError::Truncated);
        };
        let len = usize::from(*units) * 8;
        if len == 0 {
            return Err(WireError::BadLength);
        }
        rest = rest.get(len..).ok_or(WireError::Truncated)?;
    }
    Ok(())
}

/// A view of a Neighbour Solicitation or Advertisement (the whole ICMPv6 message, exactly:
/// pass the IPv6 payload, not the frame's tail with Ethernet padding).
#[derive(Debug)]
pub struct NdiscPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdiscPacket<T> {
    /// Check the message on untrusted input: at least [`HEADER_LEN`] bytes, type 135 or 136
    /// ([`WireError::Unsupported`] otherwise), and every option of non-zero length within the
    /// buffer. Hop limit, code, checksum and target are the caller's RFC 4861 checks.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if !matches!(b[field::TYPE], NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT) {
            return Err(WireError::Unsupported);
        }
        check_options(&b[field::OPTIONS..])?;
        Ok(NdiscPacket { buffer })
    }

    /// Message type: [`NEIGHBOR_SOLICIT`] or [`NEIGHBOR_ADVERT`].
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code (0 for a valid message).
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Raw flags byte (advertisement: [`flags`]; solicitation: reserved).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Advertisement's Router flag.
    pub fn router_flag(&self) -> bool {
        self.flags() & flags::ROUTER != 0
    }

    /// Advertisement's Solicited flag.
    pub fn solicited_flag(&self) -> bool {
        self.flags() & flags::SOLICITED != 0
    }

    /// Advertisement's Override flag.
    pub fn override_flag(&self) -> bool {
        self.flags() & flags::OVERRIDE != 0
    }

    /// Target address.
    pub fn target(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::TARGET]);
        Ipv6Addr::from(a)
    }

    /// The options.
    pub fn options(&self) -> NdOptions<'_> {
        NdOptions::new(&self.buffer.as_ref()[field::OPTIONS..])
    }

    /// The MAC of the first Source Link-Layer Address option, if any.
    pub fn source_ll_addr(&self) -> Option<MacAddr> {
        self.ll_addr(option::SOURCE_LL_ADDR)
    }

    /// The MAC of the first Target Link-Layer Address option, if any.
    pub fn target_ll_addr(&self) -> Option<MacAddr> {
        self.ll_addr(option::TARGET_LL_ADDR)
    }

    fn ll_addr(&self, kind: u8) -> Option<MacAddr> {
        self.options()
            .find(|o| o.kind == kind)
            .and_then(|o| o.ll_addr())
    }

    /// Whether the ICMPv6 checksum is right for a message from `src` to `dst`.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let acc = checksum::pseudo_v6(
            &src.octets(),
            &dst.octets(),
            ipv6::NEXT_HEADER_ICMPV6,
            b.len() as u32,
        ) + checksum::sum(b);
        checksum::fold(acc) == 0xffff
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdiscPacket<T> {
    /// Compute and set the ICMPv6 checksum for a message from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        fill_checksum(self.buffer.as_mut(), src, dst);
    }
}

fn fill_checksum(b: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    set_be16(b, field::CHECKSUM, 0);
    let acc = checksum::pseudo_v6(
        &src.octets(),
        &dst.octets(),
        ipv6::NEXT_HEADER_ICMPV6,
        b.len() as u32,
    ) + checksum::sum(b);
    set_be16(b, field::CHECKSUM, checksum::finish(acc));
}

/// Length of a message with an optional Ethernet link-layer address option.
pub const fn message_len(ll_option: bool) -> usize {
    if ll_option {
        HEADER_LEN + LL_OPTION_LEN
    } else {
        HEADER_LEN
    }
}

fn emit(
    buf: &mut [u8],
    ty: u8,
    flag_bits: u8,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    target: &Ipv6Addr,
    ll: Option<(u8, MacAddr)>,
) -> Result<usize, WireError> {
    let len = message_len(ll.is_some());
    let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
    b[field::TYPE] = ty;
    b[field::CODE] = 0;
    b[field::RESERVED].fill(0);
    b[field::FLAGS] = flag_bits;
    b[field::TARGET].copy_from_slice(&target.octets());
    if let Some((kind, mac)) = ll {
        let o = &mut b[field::OPTIONS..];
        o[0] = kind;
        o[1] = 1;
        o[2..8].copy_from_slice(&mac.0);
    }
    fill_checksum(b, src, dst);
    Ok(len)
}

/// Write a Neighbour Solicitation for `target` from `src` to `dst` (normally
/// [`solicited_node`]`(target)`) at the start of `buf`, with a Source Link-Layer Address
/// option when `source_ll` is given (it must not be when `src` is `::`), checksum filled.
/// Returns the message length, or [`WireError::Truncated`] when `buf` is too short.
pub fn emit_ns(
    buf: &mut [u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    target: &Ipv6Addr,
    source_ll: Option<MacAddr>,
) -> Result<usize, WireError> {
    let ll = source_ll.map(|m| (option::SOURCE_LL_ADDR, m));
    emit(buf, NEIGHBOR_SOLICIT, 0, src, dst, target, ll)
}

/// Write a Neighbour Advertisement for `target` from `src` to `dst` at the start of `buf`,
/// with `flag_bits` (see [`flags`]) and a Target Link-Layer Address option when `target_ll`
/// is given, checksum filled. Returns the message length, or [`WireError::Truncated`] when
/// `buf` is too short.
pub fn emit_na(
    buf: &mut [u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    flag_bits: u8,
    target: &Ipv6Addr,
    target_ll: Option<MacAddr>,
) -> Result<usize, WireError> {
    let ll = target_ll.map(|m| (option::TARGET_LL_ADDR, m));
    emit(buf, NEIGHBOR_ADVERT, flag_bits, src, dst, target, ll)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv6Slice, Icmpv6Type};

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);

    // NS for 2001:db8::1 with SLLA 02:00:00:00:00:0a (checksum left zero here; filled below).
    const NS: [u8; 32] = [
        135, 0, 0, 0, 0, 0, 0, 0, // type, code, checksum, reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // target
        1, 1, 0x02, 0, 0, 0, 0, 0x0a, // SLLA
    ];

    fn etherparse_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
        let t = Icmpv6Type::Unknown {
            type_u8: msg[0],
            code_u8: msg[1],
            bytes5to8: [msg[4], msg[5], msg[6], msg[7]],
        };
        t.calc_checksum(src.octets(), dst.octets(), &msg[8..])
            .unwrap()
    }

    #[test]
    fn parse_solicitation() {
        let (src, dst) = (ip("2001:db8::a"), solicited_node(ip("2001:db8::1")));
        let mut m = NS;
        let c = etherparse_checksum(&src, &dst, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let p = NdiscPacket::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), NEIGHBOR_SOLICIT);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), c);
        assert_eq!(p.target(), ip("2001:db8::1"));
        assert_eq!(p.source_ll_addr(), Some(MAC));
        assert_eq!(p.target_ll_addr(), None);
        assert_eq!(p.options().count(), 1);
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&ip("2001:db8::b"), &dst));
    }

    #[test]
    fn emit_ns_matches_literal_and_etherparse() {
        let (src, target) = (ip("2001:db8::a"), ip("2001:db8::1"));
        let dst = solicited_node(target);
        assert_eq!(dst, ip("ff02::1:ff00:1"));
        let mut buf = [0xa5u8; 40];
        let n = emit_ns(&mut buf, &src, &dst, &target, Some(MAC)).unwrap();
        assert_eq!(n, 32);
        assert_eq!(&buf[4..32], &NS[4..]);
        assert_eq!(&buf[..2], &NS[..2]);
        assert!(
            buf[32..].iter().all(|&b| b == 0xa5),
            "nothing past the message"
        );
        let s = Icmpv6Slice::from_slice(&buf[..n]).unwrap();
        assert!(s.is_checksum_valid(src.octets(), dst.octets()));
        assert_eq!(s.checksum(), etherparse_checksum(&src, &dst, &buf[..n]));
        assert_eq!(s.type_u8(), 135);
        assert!(emit_ns(&mut [0u8; 31], &src, &dst, &target, Some(MAC)).is_err());
        assert_eq!(emit_ns(&mut buf, &ip("::"), &dst, &target, None), Ok(24));
    }

    #[test]
    fn emit_na_flags_and_option() {
        let (src, dst) = (ip("2001:db8::1"), ip("2001:db8::a"));
        let mut buf = [0u8; 32];
        let f = flags::SOLICITED | flags::OVERRIDE;
        let n = emit_na(&mut buf, &src, &dst, f, &src, Some(MAC)).unwrap();
        assert_eq!(n, 32);
        assert_eq!(&buf[..2], &[136, 0]);
        assert_eq!(&buf[4..8], &[0x60, 0, 0, 0]);
        assert_eq!(&buf[24..32], &[2, 1, 0x02, 0, 0, 0, 0, 0x0a]);
        let p = NdiscPacket::new_checked(&buf[..]).unwrap();
        assert!(!p.router_flag() && p.solicited_flag() && p.override_flag());
        assert_eq!(p.target(), src);
        assert_eq!(p.target_ll_addr(), Some(MAC));
        assert_eq!(p.source_ll_addr(), None);
        assert!(p.verify_checksum(&src, &dst));
        let s = Icmpv6Slice::from_slice(&buf).unwrap();
        assert!(s.is_checksum_valid(src.octets(), dst.octets()));
        assert_eq!(s.bytes5to8(), [0x60, 0, 0, 0]);
        assert_eq!(s.checksum(), etherparse_checksum(&src, &dst, &buf));
    }

    #[test]
    fn fill_checksum_after_edit() {
        let (src, dst) = (ip("fe80::1"), ip("ff02::1"));
        let mut m = NS;
        let mut p = NdiscPacket::new_checked(&mut m[..]).unwrap();
        p.fill_checksum(&src, &dst);
        assert!(p.verify_checksum(&src, &dst));
        assert_eq!(p.checksum(), etherparse_checksum(&src, &dst, &NS));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            NdiscPacket::new_checked(&NS[..23]).unwrap_err(),
            WireError::Truncated
        );
        let mut echo = NS;
        echo[0] = 128;
        assert_eq!(
            NdiscPacket::new_checked(&echo[..]).unwrap_err(),
            WireError::Unsupported
        );
        let mut zero_len = NS;
        zero_len[25] = 0;
        assert_eq!(
            NdiscPacket::new_checked(&zero_len[..]).unwrap_err(),
            WireError::BadLength
        );
        let mut too_long = NS;
        too_long[25] = 2;
        assert_eq!(
            NdiscPacket::new_checked(&too_long[..]).unwrap_err(),
            WireError::Truncated
        );
        // A lone option type byte with no length byte.
        assert_eq!(
            NdiscPacket::new_checked(&NS[..25]).unwrap_err(),
            WireError::Truncated
        );
        // Without options is fine.
        assert!(NdiscPacket::new_checked(&NS[..24]).is_ok());
    }

    #[test]
    fn options_iterate_and_skip_unknown() {
        let mut m = NS.to_vec();
        // A 16-byte unknown option (type 14, nonce-like), then a TLLA.
        m.extend_from_slice(&[14, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        m.extend_from_slice(&[2, 1, 0x02, 0, 0, 0, 0, 0x0b]);
        let p = NdiscPacket::new_checked(&m[..]).unwrap();
        let kinds: Vec<u8> = p.options().map(|o| o.kind).collect();
        assert_eq!(kinds, vec![1, 14, 2]);
        assert_eq!(p.options().nth(1).unwrap().bytes.len(), 16);
        assert_eq!(p.options().nth(1).unwrap().ll_addr(), None);
        assert_eq!(p.target_ll_addr(), Some(MacAddr([2, 0, 0, 0, 0, 0x0b])));
        // A link-layer option of another length is not an Ethernet address.
        let odd = [1u8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(NdOptions::new(&odd).next().unwrap().ll_addr(), None);
        // The raw iterator stops on garbage instead of looping or panicking.
        assert_eq!(NdOptions::new(&[1, 0, 1, 1]).count(), 0);
        assert_eq!(NdOptions::new(&[1]).count(), 0);
    }

    #[test]
    fn multicast_mapping() {
        let t = ip("2001:db8::12:3456");
        assert_eq!(solicited_node(t), ip("ff02::1:ff12:3456"));
        assert_eq!(
            multicast_mac(solicited_node(t)),
            MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
        assert_eq!(multicast_mac(ALL_NODES), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
    }

    proptest::proptest! {
        #[test]
        fn new_checked_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            if let Some(b) = bytes.first_mut() {
                *b = NEIGHBOR_SOLICIT + (*b & 1);
            }
            if let Ok(p) = NdiscPacket::new_checked(&bytes[..]) {
                let total: usize = p.options().map(|o| o.bytes.len()).sum();
                proptest::prop_assert_eq!(total, bytes.len() - HEADER_LEN);
                let _ = (p.target(), p.source_ll_addr(), p.target_ll_addr(), p.flags());
                let _ = p.verify_checksum(&Ipv6Addr::UNSPECIFIED, &ALL_NODES);
            }
        }
    }
}
