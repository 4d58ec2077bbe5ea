//! The connections of one address family: their keys in a cuckoo index, the state machine
//! applied to both keys of a connection, expiry. [`FlowTable`](super::FlowTable) keeps one of
//! these per family and hands each key to its own.

use super::super::cuckoo::{Cuckoo, Vacancy};
use super::super::hash::TableHash;
use super::super::key::{PROTO_TCP, PROTO_UDP};
use super::super::mem::Pages;
use super::super::slot::{ahead, Addrs, Key, Slot, NIL, PAIRED, REFRESH_ONLY, REPLY, WAYS};
use super::super::state::{next_state, Direction, Seen, TcpFlags, TcpState};
use super::{conn_class, Ctx, FlowHit, FlowId, InsertError, STEP3_REPORTED, SYN_SEEN};

/// Hints an insert into a full table reads to reclaim one expired connection.
pub(super) const RECLAIM_SCAN: usize = 256;

/// Slots per connection the index is sized for: every connection with two keys leaves the
/// index 70 % full (inserts into two-way buckets succeed reliably up to ~85 %).
const SLOTS_PER_CONNECTION: f64 = 2.0 / 0.7;

/// A connection as [`Conns::listed`] finds it.
pub(super) struct Listed<A> {
    pub(super) id: FlowId,
    pub(super) key: Key<A>,
    pub(super) reply: Option<Key<A>>,
    pub(super) backend: u32,
    pub(super) state: TcpState,
    pub(super) remaining_ms: u64,
}

/// One family's connections.
pub(super) struct Conns<A> {
    pub(super) idx: Cuckoo<A>,
    len: usize,
    capacity: usize,
    /// Where the sweep goes on.
    cursor: u32,
    /// A reclaim (insert into a full table) found nothing due at this millisecond: the next
    /// one waits for the clock to move (see [`Conns::room`]).
    reclaim_dry_ms: Option<u64>,
    /// Whether these are IPv6 connections (for the ids handed out).
    v6: bool,
}

/// The state a slot of direction `reply` holds, with its `REFRESH_ONLY` flag set right.
#[inline]
pub(super) fn refresh_flag(proto: u8, state: TcpState, bits: u8, reply: bool) -> u8 {
    let steady = (proto == PROTO_TCP && state == TcpState::Established)
        || (proto == PROTO_UDP && state == TcpState::None);
    if steady && (!reply || bits & Seen::REPLY != 0) {
        REFRESH_ONLY
    } else {
        0
    }
}

/// The state a new connection of protocol `proto` starts in.
#[inline(always)]
fn initial_state(proto: u8) -> TcpState {
    if proto == PROTO_TCP {
        TcpState::SynRecv
    } else {
        TcpState::None
    }
}

/// The bits of a new connection of protocol `proto` once its opening packet (UDP, or a TCP
/// lone SYN) is tracked: `SYN_SEEN` for TCP when connections are counted per backend.
#[inline(always)]
fn opened_bits(proto: u8, ctx: &Ctx) -> u8 {
    if proto == PROTO_TCP && ctx.backend_stats.is_some() {
        SYN_SEEN
    } else {
        0
    }
}

/// The slot of key `k` of a new connection (number `ctx.serial`) in `state` with bits
/// `bits`, unlinked; `paired`: the connection has a reply key; `reply`: `k` is it.
#[allow(clippy::too_many_arguments)] // the slot's fields
#[inline(always)]
fn new_slot<A: Addrs>(
    k: &Key<A>,
    state: TcpState,
    bits: u8,
    paired: bool,
    reply: bool,
    backend: u32,
    now: u64,
    ctx: &Ctx,
) -> Slot<A> {
    Slot {
        addrs: k.addrs,
        ports: k.ports,
        proto: k.proto,
        state: state as u8,
        bits,
        flags: if paired { PAIRED } else { 0 }
            | if reply { REPLY } else { 0 }
            | refresh_flag(k.proto, state, bits, reply),
        expires: (now as u32).wrapping_add(ctx.timeout_ms[state as usize]),
        backend,
        partner: NIL,
        serial: ctx.serial,
    }
}

impl<A: Addrs> Conns<A> {
    pub(super) fn new(capacity: usize, pages: Pages, v6: bool) -> Self {
        let slots = (capacity as f64 * SLOTS_PER_CONNECTION).ceil() as usize;
        Conns {
            idx: Cuckoo::new(slots.div_ceil(WAYS), pages),
            len: 0,
            capacity,
            cursor: 0,
            reclaim_dry_ms: None,
            v6,
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    fn id(&self, hash: TableHash, serial: u32, pos: u32) -> FlowId {
        FlowId {
            v6: self.v6,
            hash,
            serial,
            pos,
        }
    }

    /// Whether the connection holding `s` lives at `now`: until the later of its keys' expiries.
    #[inline]
    pub(super) fn alive(&self, s: &Slot<A>, now: u32) -> bool {
        ahead(s.expires, now)
            || s.partner()
                .is_some_and(|p| ahead(self.idx.slot(p).expires, now))
    }

    /// The position of the original key of connection `id`, if it is still in the table.
    pub(super) fn find_id(&self, id: FlowId) -> Option<u32> {
        let is = |p: u32| {
            self.idx
                .get(p)
                .is_some_and(|s| !s.is_free() && !s.is_reply() && s.serial == id.serial)
        };
        // Where the id was made, unless an insert moved the key since.
        if is(id.pos) {
            return Some(id.pos);
        }
        [self.idx.primary(id.hash), self.idx.secondary(id.hash)]
            .into_iter()
            .flat_map(|b| (0..WAYS as u32).map(move |w| b * WAYS as u32 + w))
            .find(|&p| is(p))
    }

    /// The connection holding the slot at `pos` as a hit (its id names the original key).
    fn hit(&self, pos: u32) -> FlowHit {
        let s = self.idx.slot(pos);
        let (orig, orig_pos, dir) = match (s.is_reply(), s.partner()) {
            (true, Some(p)) => (self.idx.slot(p), p, Direction::Reply),
            _ => (s, pos, Direction::Original),
        };
        FlowHit {
            id: self.id(orig.key().hash(), s.serial, orig_pos),
            backend: s.backend,
            dir,
            state: TcpState::from_u8(s.state),
        }
    }

    /// The live connection `key` (hash `hash`) belongs to. An expired one is removed.
    #[inline]
    pub(super) fn lookup(
        &mut self,
        key: &Key<A>,
        hash: TableHash,
        now: u64,
        ctx: &mut Ctx,
    ) -> Option<FlowHit> {
        let pos = self.idx.find(key, hash)?;
        if !self.alive(self.idx.slot(pos), now as u32) {
            self.free(pos, ctx);
            ctx.counts.expired += 1;
            return None;
        }
        Some(self.hit(pos))
    }

    /// Start loading `hash`'s primary bucket.
    #[inline(always)]
    pub(super) fn prefetch(&self, hash: TableHash) {
        self.idx.prefetch(self.idx.primary(hash));
    }

    /// Whether a live connection holds `key`; an expired one is removed instead.
    fn blocks(&mut self, key: &Key<A>, hash: TableHash, now: u64, ctx: &mut Ctx) -> bool {
        match self.idx.find(key, hash) {
            None => false,
            Some(pos) if self.alive(self.idx.slot(pos), now as u32) => true,
            Some(pos) => {
                self.free(pos, ctx);
                ctx.counts.expired += 1;
                false
            }
        }
    }

    /// Whether a connection may be entered at `now`: below capacity, or once an expired one
    /// was reclaimed. A reclaim that found nothing is not tried again before the clock moves
    /// (a SYN flood into a full table would scan per packet otherwise).
    fn room(&mut self, now: u64, ctx: &mut Ctx) -> bool {
        if self.len < self.capacity {
            return true;
        }
        if self.reclaim_dry_ms == Some(now) || self.sweep(now, 1, RECLAIM_SCAN, ctx) == 0 {
            self.reclaim_dry_ms = Some(now);
            return false;
        }
        self.reclaim_dry_ms = None;
        true
    }

    /// Whether an insert at `now` is refused as full before any key is looked at.
    #[inline]
    pub(super) fn refuses_new(&self, now: u64) -> bool {
        self.reclaim_dry_ms == Some(now) && self.len >= self.capacity
    }

    /// The clash checks of an insert: `Exists` when a key belongs to a live connection.
    /// `skip_key`: the caller's lookup already found `key` in no live connection.
    #[allow(clippy::too_many_arguments)] // the insert's own arguments, passed through
    pub(super) fn insert(
        &mut self,
        key: &Key<A>,
        hash: TableHash,
        skip_key: bool,
        reply: Option<(Key<A>, TableHash)>,
        backend: u32,
        now: u64,
        ctx: &mut Ctx,
    ) -> Result<FlowId, InsertError> {
        let exists = (!skip_key && self.blocks(key, hash, now, ctx))
            || reply.is_some_and(|(rk, rh)| rk == *key || self.blocks(&rk, rh, now, ctx));
        if exists {
            ctx.counts.insert_exists += 1;
            return Err(InsertError::Exists);
        }
        self.enter(key, hash, reply, backend, now, ctx)
    }

    /// An insert whose reply key is the first of `candidate(0)`, ..., `candidate(tries - 1)`
    /// that no live connection holds (`None`: no candidate there, skipped); returns the
    /// connection and the index of the candidate it took. `Exists`: `key` clashes (unless
    /// `skip_key`); `Full`: no room (checked before any candidate is looked at);
    /// `NoReplyKey`: every candidate was taken.
    #[allow(clippy::too_many_arguments)] // the insert's own arguments, passed through
    pub(super) fn insert_searching(
        &mut self,
        key: &Key<A>,
        hash: TableHash,
        skip_key: bool,
        mut candidate: impl FnMut(u32) -> Option<(Key<A>, TableHash)>,
        tries: u32,
        backend: u32,
        now: u64,
        ctx: &mut Ctx,
    ) -> Result<(FlowId, u32), InsertError> {
        if !skip_key && self.blocks(key, hash, now, ctx) {
            ctx.counts.insert_exists += 1;
            return Err(InsertError::Exists);
        }
        if !self.room(now, ctx) {
            ctx.counts.insert_full += 1;
            return Err(InsertError::Full);
        }
        for i in 0..tries {
            let Some((rk, rh)) = candidate(i) else {
                continue;
            };
            if rk == *key || self.blocks(&rk, rh, now, ctx) {
                continue;
            }
            return self
                .enter(key, hash, Some((rk, rh)), backend, now, ctx)
                .map(|id| (id, i));
        }
        ctx.counts.insert_no_reply_key += 1;
        Err(InsertError::NoReplyKey)
    }

    /// The keys of connection `id`: its original key and, when it has one, its reply key.
    pub(super) fn keys(&self, id: FlowId) -> Option<(Key<A>, Option<Key<A>>)> {
        let pos = self.find_id(id)?;
        let s = self.idx.slot(pos);
        Some((s.key(), s.partner().map(|p| self.idx.slot(p).key())))
    }

    /// The part of an insert after the clash checks.
    pub(super) fn enter(
        &mut self,
        key: &Key<A>,
        hash: TableHash,
        reply: Option<(Key<A>, TableHash)>,
        backend: u32,
        now: u64,
        ctx: &mut Ctx,
    ) -> Result<FlowId, InsertError> {
        self.enter_with_bits(key, hash, reply, backend, now, 0, ctx)
    }

    /// [`enter`](Self::enter) and then [`track_at`](Self::track_at) of the packet that opens
    /// the connection, in one write of each slot, for a packet that opens one: UDP, or a TCP
    /// lone SYN (the caller's promise). Tracking such a packet on a new entry leaves its
    /// state and expiry as they are (SYN_RECV or NONE, from now) and sets only `SYN_SEEN`
    /// for TCP when connections are counted per backend (the step-3 check needs a reply key
    /// and an earlier SYN: never on the first packet); the per-backend class does not move.
    ///
    /// The keys are in no slot while the family is below capacity (the caller's promise too):
    /// the slots are written, linked, into the places `at` the index's
    /// [`vacancy`](Cuckoo::vacancy) of them found, unchanged since, with no search; when the
    /// insert would move slots (`at.moves`), by `enter`'s own insert.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the insert's own arguments, passed through
    pub(super) fn enter_opened_at(
        &mut self,
        key: &Key<A>,
        hash: TableHash,
        reply: Option<(Key<A>, TableHash)>,
        backend: u32,
        now: u64,
        at: Vacancy,
        ctx: &mut Ctx,
    ) -> Result<(), InsertError> {
        let bits = opened_bits(key.proto, ctx);
        if at.moves {
            return self
                .enter_with_bits(key, hash, reply, backend, now, bits, ctx)
                .map(|_| ());
        }
        let state = initial_state(key.proto);
        ctx.serial = ctx.serial.wrapping_add(1);
        let paired = reply.is_some();
        let mut original = new_slot(key, state, bits, paired, false, backend, now, ctx);
        if let Some((rk, _)) = reply {
            original.partner = at.then;
            let mut r = new_slot(&rk, state, bits, true, true, backend, now, ctx);
            r.partner = at.first;
            *self.idx.slot_mut(at.then) = r;
        }
        *self.idx.slot_mut(at.first) = original;
        self.entered(backend, state, ctx);
        Ok(())
    }

    /// The count of a connection entered.
    #[inline(always)]
    fn entered(&mut self, backend: u32, state: TcpState, ctx: &mut Ctx) {
        self.len += 1;
        ctx.counts.inserts += 1;
        ctx.epoch += 1;
        if let Some(stats) = &ctx.backend_stats {
            stats.conn_added(backend, conn_class(state));
        }
    }

    /// [`enter`](Self::enter) with the state machine's bits `bits` in both slots.
    #[allow(clippy::too_many_arguments)] // the insert's own arguments, passed through
    #[inline(always)]
    fn enter_with_bits(
        &mut self,
        key: &Key<A>,
        hash: TableHash,
        reply: Option<(Key<A>, TableHash)>,
        backend: u32,
        now: u64,
        bits: u8,
        ctx: &mut Ctx,
    ) -> Result<FlowId, InsertError> {
        if !self.room(now, ctx) {
            ctx.counts.insert_full += 1;
            return Err(InsertError::Full);
        }
        let state = initial_state(key.proto);
        ctx.serial = ctx.serial.wrapping_add(1);
        let paired = reply.is_some();
        let slot =
            |k: &Key<A>, reply: bool| new_slot(k, state, bits, paired, reply, backend, now, ctx);
        let mut watch = NIL;
        let Some(mut po) = self.idx.insert(hash, slot(key, false), &mut watch) else {
            ctx.counts.insert_full += 1;
            return Err(InsertError::Full);
        };
        if let Some((rk, rh)) = reply {
            // The reply's insert may move the original key: `watch` follows it.
            let mut watch = po;
            let Some(pr) = self.idx.insert(rh, slot(&rk, true), &mut watch) else {
                self.idx.clear(watch);
                ctx.counts.insert_full += 1;
                return Err(InsertError::Full);
            };
            self.idx.slot_mut(watch).partner = pr;
            self.idx.slot_mut(pr).partner = watch;
            po = watch;
        }
        self.entered(backend, state, ctx);
        Ok(self.id(hash, ctx.serial, po))
    }

    /// Frees the connection holding the slot at `pos` (both keys).
    fn free(&mut self, pos: u32, ctx: &Ctx) {
        let s = *self.idx.slot(pos);
        if let Some(stats) = &ctx.backend_stats {
            stats.conn_removed(s.backend, conn_class(TcpState::from_u8(s.state)));
        }
        if let Some(p) = s.partner() {
            self.idx.clear(p);
        }
        self.idx.clear(pos);
        self.len -= 1;
    }

    /// Removes connection `id`; a stale id is ignored. Returns whether it was there.
    pub(super) fn remove(&mut self, id: FlowId, ctx: &Ctx) -> bool {
        match self.find_id(id) {
            Some(pos) => {
                self.free(pos, ctx);
                true
            }
            None => false,
        }
    }

    /// Advances connection `id` with a packet in `dir` carrying `flags`; refreshes its
    /// expiry. Returns the new state ([`TcpState::Close`] for a stale id, changing nothing).
    pub(super) fn track(
        &mut self,
        id: FlowId,
        dir: Direction,
        flags: Option<TcpFlags>,
        now: u64,
        ctx: &Ctx,
    ) -> TcpState {
        let Some(pos) = self.find_id(id) else {
            return TcpState::Close;
        };
        self.track_at(pos, dir, flags, now, ctx)
    }

    /// [`track`](Self::track) of the connection whose original key is at `pos`.
    pub(super) fn track_at(
        &mut self,
        pos: u32,
        dir: Direction,
        flags: Option<TcpFlags>,
        now: u64,
        ctx: &Ctx,
    ) -> TcpState {
        let s = *self.idx.slot(pos);
        let old = TcpState::from_u8(s.state);
        let (state, seen) = next_state(old, Seen(s.bits & Seen::MASK), dir, flags);
        let mut bits = (s.bits & !Seen::MASK) | seen.0;
        if let Some(stats) = &ctx.backend_stats {
            stats.conn_moved(s.backend, conn_class(old), conn_class(state));
            // The client retransmits its SYN (>= 1 s later) and nothing ever came back
            // through us: the real server's SYN-ACK took another path (step 3).
            let lone_syn = flags.is_some_and(|f| f.syn && !f.ack && !f.rst && !f.fin);
            if lone_syn && dir == Direction::Original {
                if old == TcpState::SynRecv
                    && s.partner().is_some()
                    && bits & (STEP3_REPORTED | SYN_SEEN) == SYN_SEEN
                    && bits & Seen::REPLY == 0
                {
                    bits |= STEP3_REPORTED;
                    stats.count_step3_missing(s.backend);
                }
                bits |= SYN_SEEN;
            }
        }
        let expires = (now as u32).wrapping_add(ctx.timeout_ms[state as usize]);
        let write = |slot: &mut Slot<A>| {
            slot.state = state as u8;
            slot.bits = bits;
            slot.flags = (slot.flags & !REFRESH_ONLY)
                | refresh_flag(slot.proto, state, bits, slot.is_reply());
            slot.expires = expires;
        };
        write(self.idx.slot_mut(pos));
        // The partner holds the same state and bits: rewritten only when they change. Its
        // expiry may stay behind (a connection lives until the later of its slots'
        // expiries, as for `refresh4`), which spares a packet that changes nothing (a
        // retransmitted SYN, say) a second, cold line.
        if state != old || bits != s.bits {
            if let Some(p) = s.partner() {
                write(self.idx.slot_mut(p));
            }
        }
        state
    }

    /// Removes up to `max_remove` expired connections, reading at most `max_scan` slots from
    /// where the previous sweep stopped; returns how many it removed. A slot past its expiry
    /// whose partner keeps the connection alive takes the partner's expiry.
    pub(super) fn sweep(
        &mut self,
        now: u64,
        max_remove: usize,
        max_scan: usize,
        ctx: &mut Ctx,
    ) -> usize {
        if self.len == 0 || max_remove == 0 {
            return 0;
        }
        let slots = self.idx.slots() as u32;
        let now32 = now as u32;
        let mut c = if self.cursor >= slots { 0 } else { self.cursor };
        let (mut scanned, mut removed) = (0usize, 0usize);
        let max_scan = max_scan.min(slots as usize);
        while scanned < max_scan && removed < max_remove {
            let s = self.idx.slot(c);
            if !s.is_free() && !ahead(s.expires, now32) {
                match s.partner() {
                    Some(p) if ahead(self.idx.slot(p).expires, now32) => {
                        let e = self.idx.slot(p).expires;
                        self.idx.slot_mut(c).expires = e;
                    }
                    _ => {
                        self.free(c, ctx);
                        ctx.counts.expired += 1;
                        removed += 1;
                    }
                }
            }
            c = if c + 1 == slots { 0 } else { c + 1 };
            scanned += 1;
        }
        self.cursor = c;
        removed
    }

    /// The connection of the original key in `pos` for listings: its reply key, state and
    /// the time it has left (None if `pos` holds no live original key at `now`).
    pub(super) fn listed(&self, pos: u32, now: u64) -> Option<Listed<A>> {
        let s = self.idx.get(pos)?;
        if s.is_free() || s.is_reply() || !self.alive(s, now as u32) {
            return None;
        }
        let now32 = now as u32;
        let left = |e: u32| {
            if ahead(e, now32) {
                u64::from(e.wrapping_sub(now32))
            } else {
                0
            }
        };
        let mut remaining = left(s.expires);
        let reply = s.partner().map(|p| {
            let r = self.idx.slot(p);
            remaining = remaining.max(left(r.expires));
            r.key()
        });
        let key = s.key();
        Some(Listed {
            id: self.id(key.hash(), s.serial, pos),
            key,
            reply,
            backend: s.backend,
            state: TcpState::from_u8(s.state),
            remaining_ms: remaining,
        })
    }
}

#[cfg(test)]
impl<A: Addrs> Conns<A> {
    /// Test support: a family of `capacity` connections over an index of `buckets` buckets.
    pub(super) fn with_buckets(capacity: usize, buckets: usize) -> Self {
        Conns {
            idx: Cuckoo::new(buckets, Pages::Small),
            len: 0,
            capacity,
            cursor: 0,
            reclaim_dry_ms: None,
            v6: false,
        }
    }
}
