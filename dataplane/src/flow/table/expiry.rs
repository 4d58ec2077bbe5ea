//! Expiry of the flow table's connections.
//!
//! An expired connection is never returned: a lookup checks the expiry it reads anyway and
//! removes the connection on the spot. Connections nobody looks up are reclaimed by
//! [`FlowTable::expire`], a cursor sweep over each family's slots, in index order (two slots
//! per cache line for IPv4, read sequentially so the hardware prefetcher streams them). A
//! packet writes only its own slot's expiry, never a timer structure; a connection lives until
//! the later of its slots' expiries, so when the sweep finds a slot in the past it reads the
//! partner's (another line, once per idle direction) and either removes the connection or
//! takes the partner's expiry. A timer wheel would cost a list unlink and relink, in other
//! cache lines, per packet.
//!
//! Bound: a connection expired at `t` is removed once the cursor has passed over one of its
//! slots after `t`. Each call either reads `SCAN_PER_REMOVAL * budget` slots of each family or
//! removes `budget` connections of it, so that takes at most
//! `ceil(slots / (SCAN_PER_REMOVAL * budget))` calls after `t`, plus one call per `budget`
//! other expired connections removed meanwhile (checked by `sweep_bound_holds`,
//! `table/tests.rs`). The worker calls it once per millisecond of its clock while it has
//! traffic and on idle polls; with the pipeline's budget and a million connections (2.9
//! million IPv4 slots) a pass takes about 11,000 calls.

use super::FlowTable;

/// Slot reads per unit of `expire` budget.
pub const SCAN_PER_REMOVAL: usize = 4;

impl FlowTable {
    /// Removes up to `budget` expired connections of each family, reading at most
    /// `SCAN_PER_REMOVAL * budget` slots of each from where the previous call stopped;
    /// returns how many it removed.
    pub fn expire(&mut self, now_ms: u64, budget: usize) -> usize {
        let scan = budget.saturating_mul(SCAN_PER_REMOVAL);
        self.v4.sweep(now_ms, budget, scan, &mut self.ctx)
            + self.v6.sweep(now_ms, budget, scan, &mut self.ctx)
    }
}
