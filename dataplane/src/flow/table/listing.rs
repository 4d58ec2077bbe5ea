//! Listing a table's connections (control side: `vipctl` listings, flow samples).

use super::super::slot::{Addrs, Key};
use super::conns::Conns;
use super::{FlowInfo, FlowTable};

fn info<A: Addrs>(c: &Conns<A>, pos: u32, now_ms: u64) -> Option<FlowInfo> {
    let l = c.listed(pos, now_ms)?;
    Some(FlowInfo {
        id: l.id,
        key: l.key.flow_key(),
        reply: l.reply.map(|r: Key<A>| r.flow_key()),
        backend: l.backend,
        state: l.state,
        remaining_ms: l.remaining_ms,
    })
}

impl FlowTable {
    /// Positions `listing_positions()` counts: IPv4 slots first, then IPv6 ones.
    pub fn listing_positions(&self) -> usize {
        self.v4.idx.slots() + self.v6.idx.slots()
    }

    fn info_at(&self, pos: usize, now_ms: u64) -> Option<FlowInfo> {
        let s4 = self.v4.idx.slots();
        if pos < s4 {
            info(&self.v4, pos as u32, now_ms)
        } else {
            info(&self.v6, (pos - s4) as u32, now_ms)
        }
    }

    /// Visit the live, unexpired connections at listing positions `from..from + max`
    /// (bounded work, for listings from a busy worker) until `f` returns false. Returns where
    /// to continue, or None when the table's end was reached (or `f` stopped).
    pub fn scan(
        &self,
        from: usize,
        max: usize,
        now_ms: u64,
        mut f: impl FnMut(FlowInfo) -> bool,
    ) -> Option<usize> {
        let total = self.listing_positions();
        let end = from.saturating_add(max).min(total);
        for pos in from.min(end)..end {
            if let Some(i) = self.info_at(pos, now_ms) {
                if !f(i) {
                    return None;
                }
            }
        }
        (end < total).then_some(end)
    }

    /// The live, unexpired connections, in slot order (for listings; not for the packet path).
    pub fn iter(&self, now_ms: u64) -> impl Iterator<Item = FlowInfo> + '_ {
        (0..self.listing_positions()).filter_map(move |pos| self.info_at(pos, now_ms))
    }
}
