//! The IPv6 fast path's access to the table (`pipeline::fast6`): the staged prefetch and
//! probe of a burst, the lookup of an established connection's packet and its refresh, on
//! the IPv6 slots (the code shared with IPv4 is `Conns`'s, in `fast.rs`). New connections
//! are the general path's.

use super::super::hash::TableHash;
use super::super::slot::{Key, V6};
use super::fast::Hit;
use super::FlowTable;

impl FlowTable {
    /// Stage 1: start loading the primary bucket of an IPv6 key.
    #[inline(always)]
    pub(crate) fn prefetch6(&self, hash: TableHash) {
        self.v6.prefetch(hash);
    }

    /// The fast path's lookup of an IPv6 key: its live slot (see `Conns::fast_hit`).
    #[inline(always)]
    pub(crate) fn hit6(
        &self,
        key: &Key<V6>,
        hash: TableHash,
        primary_pos: u32,
        now_ms: u64,
    ) -> Option<Hit> {
        self.v6.fast_hit(key, hash, primary_pos, now_ms)
    }

    /// Stage 2 of a burst for an IPv6 key: its slot if its primary bucket holds it, else
    /// `NIL` (its secondary bucket then loading).
    #[inline(always)]
    pub(crate) fn probe6(&self, key: &Key<V6>, hash: TableHash) -> u32 {
        self.v6.fast_probe(key, hash)
    }

    /// The expiry refresh of an IPv6 [`Hit`] with `refresh_only`: what
    /// [`track`](FlowTable::track) would do for its packet.
    #[inline(always)]
    pub(crate) fn refresh6(&mut self, hit: &Hit, now_ms: u64) {
        self.v6.fast_refresh(&self.ctx.timeout_ms, hit, now_ms);
    }
}
