//! Listing a table's connections (control side: `vipctl` listings, flow samples).

use super::{FlowId, FlowInfo, FlowTable, HAS_REPLY, LIVE};

impl FlowTable {
    /// Visit the live, unexpired connections in slots `from..from + max` (bounded work, for
    /// listings from a busy worker) until `f` returns false. Returns where to continue, or
    /// None when the table's end was reached (or `f` stopped).
    pub fn scan(
        &self,
        from: usize,
        max: usize,
        now_ms: u64,
        mut f: impl FnMut(FlowInfo) -> bool,
    ) -> Option<usize> {
        let hw = self.high_water as usize;
        let end = from.saturating_add(max).min(hw);
        for i in from.min(end)..end {
            let e = &self.entries[i];
            if e.bits & LIVE == 0 || e.expires_ms <= now_ms {
                continue;
            }
            let info = FlowInfo {
                id: FlowId {
                    index: i as u32,
                    gen: e.gen,
                },
                key: e.key,
                reply: (e.bits & HAS_REPLY != 0).then_some(self.reply_keys[i]),
                backend: e.backend,
                state: e.state,
                remaining_ms: e.expires_ms - now_ms,
            };
            if !f(info) {
                return None;
            }
        }
        (end < hw).then_some(end)
    }

    /// The live, unexpired connections, in slot order (for listings; not for the packet path).
    pub fn iter(&self, now_ms: u64) -> impl Iterator<Item = FlowInfo> + '_ {
        self.entries[..self.high_water as usize]
            .iter()
            .zip(self.reply_keys.iter())
            .enumerate()
            .filter(move |(_, (e, _))| e.bits & LIVE != 0 && e.expires_ms > now_ms)
            .map(move |(i, (e, rk))| FlowInfo {
                id: FlowId {
                    index: i as u32,
                    gen: e.gen,
                },
                key: e.key,
                reply: (e.bits & HAS_REPLY != 0).then_some(*rk),
                backend: e.backend,
                state: e.state,
                remaining_ms: e.expires_ms - now_ms,
            })
    }
}
