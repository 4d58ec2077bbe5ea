//! The IPv4 fast path's access to the table (`pipeline::fast4`): the staged prefetches and
//! probes of a burst, the lookup of an established connection's packet and its refresh, and
//! the entry of a new connection whose every check was made beforehand. Each does what the
//! general methods do for the same packet, no more (the pipeline's differential test).

use super::super::cuckoo::Vacancy;
use super::super::hash::TableHash;
use super::super::slot::{Key, V4};
use super::fast::Hit;
use super::{FlowTable, InsertError};

#[cfg(test)]
mod tests;

impl FlowTable {
    /// The fast path's stage 2: start loading the primary bucket of an IPv4 key.
    #[inline(always)]
    pub(crate) fn prefetch4(&self, hash: TableHash) {
        self.v4.prefetch(hash);
    }

    /// The fast path's lookup of an IPv4 key: its live slot (see `Conns::fast_hit`).
    #[inline(always)]
    pub(crate) fn hit4(
        &self,
        key: &Key<V4>,
        hash: TableHash,
        primary_pos: u32,
        now_ms: u64,
    ) -> Option<Hit> {
        self.v4.fast_hit(key, hash, primary_pos, now_ms)
    }

    /// Stage 2 of a burst for an IPv4 key: its slot if its primary bucket holds it, else
    /// `NIL` (its secondary bucket then loading).
    #[inline(always)]
    pub(crate) fn probe4(&self, key: &Key<V4>, hash: TableHash) -> u32 {
        self.v4.fast_probe(key, hash)
    }

    /// Start loading the secondary bucket of an IPv4 key's hash.
    #[inline(always)]
    pub(crate) fn prefetch_secondary4(&self, hash: TableHash) {
        let idx = &self.v4.idx;
        idx.prefetch(idx.secondary(hash));
    }

    /// The expiry refresh of an IPv4 [`Hit`] with `refresh_only`: what
    /// [`track`](FlowTable::track) would do for its packet.
    #[inline(always)]
    pub(crate) fn refresh4(&mut self, hit: &Hit, now_ms: u64) {
        self.v4.fast_refresh(&self.ctx.timeout_ms, hit, now_ms);
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
