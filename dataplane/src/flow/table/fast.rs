//! The fast path's access to one family's slots, shared by both families' entry points
//! (`fast4`, `fast6`): the lookup of an established connection's packet, stage 2's probe of
//! its primary bucket, and the refresh of its expiry. Each does what the general methods do
//! for the same packet, no more (the pipeline's differential tests).

use super::super::hash::TableHash;
use super::super::slot::{ahead, Addrs, Key, Slot, NIL, REFRESH_ONLY};
use super::conns::Conns;

/// A fast-path hit: what stage 3 needs to forward the packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    /// The slot.
    pub(crate) pos: u32,
    pub(crate) backend: u32,
    /// Whether a packet of this direction without SYN, FIN or RST only refreshes the expiry.
    pub(crate) refresh_only: bool,
    pub(crate) reply: bool,
}

impl<A: Addrs> Conns<A> {
    /// `key`'s slot when the connection is live and its slot's expiry is ahead (`None`
    /// otherwise, changing nothing: the general path then looks again and removes what is
    /// expired). `primary_pos`: [`fast_probe`](Self::fast_probe)'s answer, a hint checked against the
    /// key.
    #[inline(always)]
    pub(super) fn fast_hit(
        &self,
        key: &Key<A>,
        hash: TableHash,
        primary_pos: u32,
        now_ms: u64,
    ) -> Option<Hit> {
        let idx = &self.idx;
        // The position stage 2 found, if it still holds the key: a frame handled before this
        // one in the burst may have moved or removed slots since.
        let (pos, s): (u32, &Slot<A>) = match idx.get(primary_pos) {
            Some(s) if s.holds(key) => (primary_pos, s),
            _ => {
                let pos = idx.find(key, hash)?;
                (pos, idx.slot(pos))
            }
        };
        if !ahead(s.expires, now_ms as u32) {
            return None;
        }
        Some(Hit {
            pos,
            backend: s.backend,
            refresh_only: s.flags & REFRESH_ONLY != 0,
            reply: s.is_reply(),
        })
    }

    /// Stage 2 of a burst: `key`'s slot if its primary bucket (prefetched in stage 1) holds
    /// it; else `NIL`, having started to load its secondary bucket.
    #[inline(always)]
    pub(super) fn fast_probe(&self, key: &Key<A>, hash: TableHash) -> u32 {
        let idx = &self.idx;
        match idx.find_in(idx.primary(hash), key) {
            Some(pos) => pos,
            None => {
                idx.prefetch(idx.secondary(hash));
                NIL
            }
        }
    }

    /// A packet of a [`Hit`] with `refresh_only` that changes nothing but the expiry: what
    /// `track` would do for it, on its own slot (the connection lives until the later of its
    /// slots' expiries). `timeouts`: by state, in milliseconds.
    #[inline(always)]
    pub(super) fn fast_refresh(&mut self, timeouts: &[u32], hit: &Hit, now_ms: u64) {
        let s = self.idx.slot_mut(hit.pos);
        let timeout = timeouts.get(usize::from(s.state)).copied().unwrap_or(0);
        s.expires = (now_ms as u32).wrapping_add(timeout);
    }
}
