//! The IPv4 fast path's access to the table (`pipeline::fast4`): the staged prefetches and
//! probes of a burst, the lookup of an established connection's packet and its refresh, and
//! the entry of a new connection whose every check was made beforehand. Each does what the
//! general methods do for the same packet, no more (the pipeline's differential test).

use super::super::cuckoo::Vacancy;
use super::super::hash::TableHash;
use super::super::slot::{ahead, Key, Slot, NIL, REFRESH_ONLY, V4};
use super::{FlowTable, InsertError};

#[cfg(test)]
mod tests;

/// A fast-path hit on an IPv4 key: what stage 3 needs to forward the packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit4 {
    /// The slot.
    pub(crate) pos: u32,
    pub(crate) backend: u32,
    /// Whether a packet of this direction without SYN, FIN or RST only refreshes the expiry.
    pub(crate) refresh_only: bool,
    pub(crate) reply: bool,
}

impl FlowTable {
    /// The fast path's stage 2: start loading the primary bucket of an IPv4 key.
    #[inline(always)]
    pub(crate) fn prefetch4(&self, hash: TableHash) {
        self.v4.prefetch(hash);
    }

    /// The fast path's lookup of an IPv4 key: its slot when the connection is live and its
    /// slot's expiry is ahead (`None` otherwise, changing nothing: the general path then
    /// looks again and removes what is expired). `primary_pos`: [`probe4`](Self::probe4)'s
    /// answer, a hint checked against the key.
    #[inline(always)]
    pub(crate) fn hit4(
        &self,
        key: &Key<V4>,
        hash: TableHash,
        primary_pos: u32,
        now_ms: u64,
    ) -> Option<Hit4> {
        let idx = &self.v4.idx;
        // The position stage 2 found, if it still holds the key: a frame handled before this
        // one in the burst may have moved or removed slots since.
        let (pos, s): (u32, &Slot<V4>) = match idx.get(primary_pos) {
            Some(s) if s.holds(key) => (primary_pos, s),
            _ => {
                let pos = idx.find(key, hash)?;
                (pos, idx.slot(pos))
            }
        };
        if !ahead(s.expires, now_ms as u32) {
            return None;
        }
        Some(Hit4 {
            pos,
            backend: s.backend,
            refresh_only: s.flags & REFRESH_ONLY != 0,
            reply: s.is_reply(),
        })
    }

    /// Stage 2 of a burst: `key`'s slot if its primary bucket (prefetched in stage 1) holds
    /// it; else `NIL`, having started to load its secondary bucket.
    #[inline(always)]
    pub(crate) fn probe4(&self, key: &Key<V4>, hash: TableHash) -> u32 {
        let idx = &self.v4.idx;
        match idx.find_in(idx.primary(hash), key) {
            Some(pos) => pos,
            None => {
                idx.prefetch(idx.secondary(hash));
                NIL
            }
        }
    }

    /// Start loading the secondary bucket of an IPv4 key's hash.
    #[inline(always)]
    pub(crate) fn prefetch_secondary4(&self, hash: TableHash) {
        let idx = &self.v4.idx;
        idx.prefetch(idx.secondary(hash));
    }

    /// A packet of a [`Hit4`] with `refresh_only` that changes nothing but the expiry: what
    /// [`track`](FlowTable::track) would do for it, on its own slot (the connection lives
    /// until the later of its slots' expiries).
    #[inline(always)]
    pub(crate) fn refresh4(&mut self, hit: &Hit4, now_ms: u64) {
        let timeouts = &self.ctx.timeout_ms;
        let s = self.v4.idx.slot_mut(hit.pos);
        let timeout = timeouts.get(usize::from(s.state)).copied().unwrap_or(0);
        s.expires = (now_ms as u32).wrapping_add(timeout);
    }

    /// Whether a new connection under `key` (hash `hash`) may be entered with
    /// [`open4`](Self::open4) exactly as [`insert_after_miss`](Self::insert_after_miss) after a
    /// miss would enter it, as far as `key` goes: the table is below capacity (no reclaim, no
    /// refusal) and `key` is in no slot, live or expired (the general path removes an expired
    /// holder first, and a clash is its decision). If so, where the index puts it; its reply
    /// key, if any, is then asked of [`vacancy4_then`](Self::vacancy4_then). Changes nothing.
    #[inline(always)]
    pub(crate) fn vacancy4(&self, key: &Key<V4>, hash: TableHash) -> Option<Vacancy> {
        let c = &self.v4;
        if c.len() >= c.capacity() {
            return None;
        }
        c.idx.vacancy(key, hash)
    }

    /// [`vacancy4`](Self::vacancy4)'s answer `at` for `key`, completed with the connection's
    /// `reply` key: `None` if that is `key` itself or in a slot; else where the index puts it
    /// too, and in `moves` whether it would move other slots for either key (an insert that
    /// may fail). Changes nothing.
    #[inline(always)]
    pub(crate) fn vacancy4_then(
        &self,
        at: Vacancy,
        key: &Key<V4>,
        reply: Option<&(Key<V4>, TableHash)>,
    ) -> Option<Vacancy> {
        match reply {
            None => Some(at),
            Some((rk, _)) if rk == key => None,
            Some((rk, rh)) => self.v4.idx.vacancy_then(at, rk, *rh),
        }
    }

    /// Enters a new connection [`vacancy4_then`](Self::vacancy4_then) found room for (`at`,
    /// with nothing changed in the table since), as `insert_after_miss` and then `track` of the
    /// packet that opens it would leave it: that packet is UDP or a TCP lone SYN (the
    /// caller's promise). `Full` (counted): the index found no slot for a key (only when
    /// `at.moves`), nothing stays.
    #[inline]
    pub(crate) fn open4(
        &mut self,
        key: &Key<V4>,
        hash: TableHash,
        reply: Option<(Key<V4>, TableHash)>,
        backend: u32,
        now_ms: u64,
        at: Vacancy,
    ) -> Result<(), InsertError> {
        self.v4
            .enter_opened_at(key, hash, reply, backend, now_ms, at, &mut self.ctx)
    }
}
