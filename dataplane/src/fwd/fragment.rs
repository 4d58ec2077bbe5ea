//! Fragments without reassembly: the first fragment of a datagram carries the transport
//! ports, so the pipeline decides it like any packet (service, flow entry, real server); the
//! tracker remembers that decision under the datagram's identity (source, destination,
//! protocol, IP identification) so the later fragments, which carry no ports, follow it.
//!
//! Why not a 3-tuple hash for fragments (Maglev's way): the fragments would then go where the
//! hash of (source, destination, protocol) points, while the datagrams of the same flow that
//! were not fragmented go where the flow entry or the 5-tuple hash points: a UDP flow mixing
//! both would be split across real servers, and a VIP with several services could not even
//! tell which service a later fragment belongs to. Following the first fragment keeps every
//! fragment with its flow and its service. The cost: later fragments that arrive before the
//! first one (reordered) are dropped and counted (`drop_fragment_unknown`); Linux and the
//! BSDs send fragments in order, so this is the rare case. A service whose every packet is
//! hashed on the 3-tuple (`hash = "3-tuple"`) needs no tracker entry: a later fragment without
//! its first goes where that hash points (`pipeline::egress::later_fragment`).
//!
//! The table is a fixed array per worker (allocated once, no allocation per packet), indexed
//! by a hash of the identity; a newer datagram takes the slot of an older one that collides
//! (under a fragment flood legitimate datagrams lose their slot and their later fragments are
//! dropped: bounded memory first). Entries live [`FRAGMENT_LIFETIME_MS`]: far longer than the
//! microseconds between the fragments of one datagram, far shorter than the time the 16-bit
//! IPv4 identification takes to wrap for one source and destination.

/// How long a first fragment's decision is kept for the fragments after it.
pub const FRAGMENT_LIFETIME_MS: u64 = 5_000;

/// Slots per worker: enough for the datagrams of a few milliseconds at line rate.
pub const FRAGMENT_SLOTS: usize = 4096;

/// The identity shared by every fragment of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragmentKey {
    /// Source address (flow-key form: IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    pub ident: u32,
    /// Transport protocol.
    pub proto: u8,
}

impl FragmentKey {
    /// The datagram's hash (also the tunnel flow hash of its fragments, so they share one
    /// outer header and one receive queue at the real server).
    pub fn hash(&self) -> u64 {
        let mut b = [0u8; 37];
        b[..16].copy_from_slice(&self.src);
        b[16..32].copy_from_slice(&self.dst);
        b[32..36].copy_from_slice(&self.ident.to_be_bytes());
        b[36] = self.proto;
        xxhash_rust::xxh3::xxh3_64(&b)
    }
}

/// What the first fragment of a datagram was decided to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragmentRoute {
    /// A client packet forwarded to this real server (backend id).
    ToBackend(u32),
    /// A NAT real server's reply of this service (service index), sent to the client from
    /// the VIP.
    NatReply(u32),
}

#[derive(Clone, Copy)]
struct Slot {
    key: FragmentKey,
    route: FragmentRoute,
    expires_ms: u64,
}

/// The per-worker table of first-fragment decisions.
pub struct FragmentTracker {
    slots: Box<[Option<Slot>]>,
    mask: usize,
}

impl FragmentTracker {
    /// A tracker with `slots` slots (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        FragmentTracker {
            slots: vec![None; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// Remember the decision of a datagram's first fragment (replacing whatever held the slot).
    pub fn remember(&mut self, key: &FragmentKey, route: FragmentRoute, now_ms: u64) {
        let i = key.hash() as usize & self.mask;
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(Slot {
                key: *key,
                route,
                expires_ms: now_ms.saturating_add(FRAGMENT_LIFETIME_MS),
            });
        }
    }

    /// The decision for a later fragment of the datagram `key`, if its first fragment was seen
    /// less than [`FRAGMENT_LIFETIME_MS`] ago and no other datagram took its slot since.
    pub fn lookup(&self, key: &FragmentKey, now_ms: u64) -> Option<FragmentRoute> {
        let i = key.hash() as usize & self.mask;
        match self.slots.get(i)? {
            Some(s) if s.key == *key && s.expires_ms > now_ms => Some(s.route),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ident: u32) -> FragmentKey {
        FragmentKey {
            src: [1; 16],
            dst: [2; 16],
            ident,
            proto: 17,
        }
    }

    #[test]
    fn remembers_until_lifetime_and_by_exact_key() {
        let mut t = FragmentTracker::new(16);
        t.remember(&key(7), FragmentRoute::ToBackend(3), 1000);
        assert_eq!(t.lookup(&key(7), 1000), Some(FragmentRoute::ToBackend(3)));
        assert_eq!(
            t.lookup(&key(7), 1000 + FRAGMENT_LIFETIME_MS - 1),
            Some(FragmentRoute::ToBackend(3))
        );
        assert_eq!(t.lookup(&key(7), 1000 + FRAGMENT_LIFETIME_MS), None);
        assert_eq!(t.lookup(&key(8), 1000), None);
        let mut other_proto = key(7);
        other_proto.proto = 6;
        assert_eq!(t.lookup(&other_proto, 1000), None);
    }

    #[test]
    fn a_colliding_datagram_takes_the_slot() {
        let mut t = FragmentTracker::new(1);
        t.remember(&key(1), FragmentRoute::ToBackend(1), 0);
        t.remember(&key(2), FragmentRoute::NatReply(5), 0);
        assert_eq!(t.lookup(&key(1), 0), None);
        assert_eq!(t.lookup(&key(2), 0), Some(FragmentRoute::NatReply(5)));
    }
}
