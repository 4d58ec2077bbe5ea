//! Expiry of the flow table's connections.
//!
//! An expired entry is never returned: [`FlowTable::lookup`] checks the expiry it reads anyway
//! and removes the entry on the spot. Entries nobody looks up are reclaimed by
//! [`FlowTable::expire`], a cursor sweep over `hints[..high_water]`. Refreshing an entry (every
//! tracked packet) writes only the entry's own `expires_ms`, never a timer structure: the hint
//! stays a lower bound, and when the sweep finds a hint in the past it reads the entry's real
//! expiry, then removes the entry or raises the hint. (The only write to a hint besides
//! insert and removal is when a state change shortens the expiry, e.g. at RST: about once per
//! connection.) A timer wheel would cost a list unlink and relink, in other cache lines, per
//! packet; the sweep costs each call at most `SCAN_PER_REMOVAL * budget` hint reads (sequential,
//! 16 per line) and one entry read per hint in the past.
//!
//! Bound: an entry expired at `t` is removed once the cursor has passed over it after `t`.
//! Each call either reads `SCAN_PER_REMOVAL * budget` hints or removes `budget` connections,
//! so that takes at most `ceil(high_water / (SCAN_PER_REMOVAL * budget))` calls of `expire`
//! after `t`, plus one call per `budget` other expired connections removed meanwhile. With the
//! pipeline's budget of 64 per burst and a million connections: 3,907 calls (the worker should
//! also call it on empty polls, or idle entries linger while no traffic arrives; they are
//! never returned meanwhile). A call that finds nothing due costs about 120 ns (256 hints
//! compared 16 at a time). Checked by `sweep_bound_holds` (`table/tests.rs`).

use super::{FlowTable, FREE};

/// Hint reads per unit of `expire` budget.
pub const SCAN_PER_REMOVAL: usize = 4;
/// Hints the sweep compares at once.
const SWEEP_CHUNK: usize = 16;

/// The hint (expiry lower bound, 1024 ms units) of an expiry.
#[inline]
pub(super) fn tick(ms: u64) -> u32 {
    (ms >> 10).min(u64::from(FREE - 1)) as u32
}

/// Bit `j` set when `hints[j]` (at most [`SWEEP_CHUNK`] of them) is due at `now_tick`.
#[inline]
fn due_mask(hints: &[u32], now_tick: u32) -> u32 {
    if let Ok(full) = <&[u32; SWEEP_CHUNK]>::try_from(hints) {
        // The common case: a fixed length, and a quick "none due" test first, both of which
        // compile to a few vector instructions.
        if !full.iter().fold(false, |any, &h| any | (h <= now_tick)) {
            return 0;
        }
    }
    let mut m = 0u32;
    for (j, &h) in hints.iter().enumerate().take(SWEEP_CHUNK) {
        m |= u32::from(h <= now_tick) << j;
    }
    m
}

impl FlowTable {
    /// Removes up to `budget` expired connections, reading at most `SCAN_PER_REMOVAL * budget`
    /// entries' hints from where the previous call stopped; returns how many it removed.
    /// Meant to be called once per burst with a small budget (see the module documentation
    /// for the bound on how long an idle connection survives its expiry).
    pub fn expire(&mut self, now_ms: u64, budget: usize) -> usize {
        self.sweep(now_ms, budget, budget.saturating_mul(SCAN_PER_REMOVAL))
    }

    pub(super) fn sweep(&mut self, now_ms: u64, max_remove: usize, max_scan: usize) -> usize {
        let hw = self.high_water as usize;
        if hw == 0 || max_remove == 0 {
            return 0;
        }
        let now_tick = tick(now_ms);
        let mut c = self.cursor as usize;
        if c >= hw {
            c = 0;
        }
        let (mut scanned, mut removed) = (0, 0);
        let max_scan = max_scan.min(hw);
        while scanned < max_scan {
            // Up to 16 hints (one cache line) at a time, compared as one vector.
            let len = SWEEP_CHUNK.min(hw - c).min(max_scan - scanned);
            let mut due = due_mask(&self.hints[c..c + len], now_tick);
            let mut next = c + len;
            while due != 0 {
                let i = c + due.trailing_zeros() as usize;
                due &= due - 1;
                let expires_ms = self.entries[i].expires_ms;
                if expires_ms > now_ms {
                    self.hints[i] = tick(expires_ms);
                    continue;
                }
                self.free(i);
                self.expired += 1;
                removed += 1;
                if removed == max_remove {
                    next = i + 1;
                    break;
                }
            }
            scanned += next - c;
            c = if next == hw { 0 } else { next };
            if removed == max_remove {
                break;
            }
        }
        self.cursor = c as u32;
        removed
    }
}
