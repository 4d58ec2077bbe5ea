//! Per-service and per-real-server statistics as an operator reads them: the workers' slot
//! counters summed, minus what a reused slot had counted for its previous owner and what was
//! zeroed (`vipctl -Z`), plus what real servers that left a service had counted; and rates over
//! the last interval (ipvsadm `--rate`), computed here on the control side, never on the hot
//! path. Prometheus gets the raw monotonic sums; zeroing affects only these listings.

use crate::backend_slots::RsIdentity;
use crate::config::ServiceKey;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use vipd_dataplane::backend_stats::{self, BackendCounts, BackendStats};

/// Counter fields of a reading with `base` taken away (gauges stay as read).
pub fn since(now: BackendCounts, base: &BackendCounts) -> BackendCounts {
    BackendCounts {
        step1_packets: now.step1_packets.saturating_sub(base.step1_packets),
        step3_packets: now.step3_packets.saturating_sub(base.step3_packets),
        step3_missing: now.step3_missing.saturating_sub(base.step3_missing),
        new_conns: now.new_conns.saturating_sub(base.new_conns),
        in_packets: now.in_packets.saturating_sub(base.in_packets),
        in_bytes: now.in_bytes.saturating_sub(base.in_bytes),
        out_packets: now.out_packets.saturating_sub(base.out_packets),
        out_bytes: now.out_bytes.saturating_sub(base.out_bytes),
        active: now.active,
        inactive: now.inactive,
        persistent: now.persistent,
    }
}

/// Per-second rates.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Rates {
    /// New connections per second.
    pub conns: f64,
    /// Packets per second to the real servers.
    pub in_packets: f64,
    /// Packets per second back from them (NAT).
    pub out_packets: f64,
    /// Bytes per second to the real servers.
    pub in_bytes: f64,
    /// Bytes per second back from them.
    pub out_bytes: f64,
}

fn rate(now: &BackendCounts, before: &BackendCounts, secs: f64) -> Rates {
    let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    Rates {
        conns: r(now.new_conns, before.new_conns),
        in_packets: r(now.in_packets, before.in_packets),
        out_packets: r(now.out_packets, before.out_packets),
        in_bytes: r(now.in_bytes, before.in_bytes),
        out_bytes: r(now.out_bytes, before.out_bytes),
    }
}

/// Baselines and rates, kept by the control loop and published with the view.
#[derive(Debug, Clone, Default)]
pub struct StatsBook {
    /// What a slot had counted when it was last freed: its next owner starts from there.
    reuse_base: HashMap<u32, BackendCounts>,
    /// Readings at the last zeroing, per real server.
    zero_base: HashMap<RsIdentity, BackendCounts>,
    /// What real servers that left a service had counted (since the last zeroing).
    departed: HashMap<ServiceKey, BackendCounts>,
    /// Rates over the last interval.
    rates: HashMap<RsIdentity, Rates>,
    last: Option<(Instant, HashMap<RsIdentity, BackendCounts>)>,
}

impl StatsBook {
    /// A real server's counters since it got its slot.
    pub fn read(&self, workers: &[Arc<BackendStats>], slot: u32) -> BackendCounts {
        let now = backend_stats::sum(workers, slot);
        match self.reuse_base.get(&slot) {
            Some(base) => since(now, base),
            None => now,
        }
    }

    /// A real server's counters as listed (since the last zeroing).
    pub fn listed(
        &self,
        workers: &[Arc<BackendStats>],
        id: &RsIdentity,
        slot: u32,
    ) -> BackendCounts {
        let c = self.read(workers, slot);
        match self.zero_base.get(id) {
            Some(base) => since(c, base),
            None => c,
        }
    }

    /// What left a service (as listed).
    pub fn departed(&self, key: &ServiceKey) -> BackendCounts {
        self.departed.get(key).copied().unwrap_or_default()
    }

    /// A real server's rates.
    pub fn rates(&self, id: &RsIdentity) -> Rates {
        self.rates.get(id).copied().unwrap_or_default()
    }

    /// A slot was freed: remember what it counted (for its next owner), and add the part its
    /// owner counted to its service's departed totals.
    pub fn slot_freed(&mut self, workers: &[Arc<BackendStats>], id: &RsIdentity, slot: u32) {
        let gone = self.listed(workers, id, slot);
        let d = self.departed.entry(id.0).or_default();
        *d += BackendCounts {
            active: 0,
            inactive: 0,
            ..gone
        };
        self.zero_base.remove(id);
        self.rates.remove(id);
        self.reuse_base
            .insert(slot, backend_stats::sum(workers, slot));
    }

    /// Zero the listed counters of the real servers `ids` (with their slots) and the departed
    /// totals of `services` (None: every service).
    pub fn zero(
        &mut self,
        workers: &[Arc<BackendStats>],
        ids: &[(RsIdentity, u32)],
        services: Option<&[ServiceKey]>,
    ) {
        for (id, slot) in ids {
            let c = self.read(workers, *slot);
            self.zero_base.insert(*id, c);
        }
        match services {
            Some(keys) => {
                for k in keys {
                    self.departed.remove(k);
                }
            }
            None => self.departed.clear(),
        }
    }

    /// Sample every real server (identity, slot) and update the rates over the time since
    /// the previous sample.
    pub fn sample(
        &mut self,
        workers: &[Arc<BackendStats>],
        ids: &[(RsIdentity, u32)],
        now: Instant,
    ) {
        let current: HashMap<RsIdentity, BackendCounts> = ids
            .iter()
            .map(|(id, slot)| (*id, self.read(workers, *slot)))
            .collect();
        if let Some((then, before)) = &self.last {
            let secs = now.duration_since(*then).as_secs_f64();
            if secs > 0.0 {
                self.rates = current
                    .iter()
                    .map(|(id, c)| {
                        let b = before.get(id).copied().unwrap_or(*c);
                        (*id, rate(c, &b, secs))
                    })
                    .collect();
            }
        }
        self.last = Some((now, current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;
    use vipd_dataplane::backend_stats::ConnClass;

    fn id(i: u8) -> RsIdentity {
        (
            ServiceKey {
                vip: "10.0.100.1".parse().unwrap(),
                proto: Proto::Tcp,
                port: 80,
            },
            std::net::IpAddr::from([10, 0, 0, i]),
            80,
        )
    }

    #[test]
    fn reuse_zero_departed_and_rates() {
        let w = vec![
            Arc::new(BackendStats::new(4)),
            Arc::new(BackendStats::new(4)),
        ];
        let mut book = StatsBook::default();
        for _ in 0..5 {
            w[0].count_new(1);
            w[1].count_in(1, 100);
        }
        w[0].conn_added(1, ConnClass::Active);
        let c = book.listed(&w, &id(1), 1);
        assert_eq!(
            (c.new_conns, c.in_packets, c.in_bytes, c.active),
            (5, 5, 500, 1)
        );
        book.zero(&w, &[(id(1), 1)], None);
        w[1].count_in(1, 100);
        let c = book.listed(&w, &id(1), 1);
        assert_eq!(
            (c.new_conns, c.in_packets, c.active),
            (0, 1, 1),
            "gauges are not zeroed"
        );
        w[0].conn_removed(1, ConnClass::Active);
        book.slot_freed(&w, &id(1), 1);
        assert_eq!(book.departed(&id(1).0).in_packets, 1);
        // The slot's next owner starts at zero.
        assert_eq!(book.listed(&w, &id(2), 1), BackendCounts::default());
        let t0 = Instant::now();
        book.sample(&w, &[(id(2), 1)], t0);
        for _ in 0..10 {
            w[0].count_new(1);
        }
        book.sample(&w, &[(id(2), 1)], t0 + std::time::Duration::from_secs(2));
        assert_eq!(book.rates(&id(2)).conns, 5.0);
    }
}
