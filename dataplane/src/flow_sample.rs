//! Connection listings from a busy box (`vipctl -c`): the control side hands each worker a
//! request; the worker, which alone may read its flow table, scans a bounded number of entries
//! per loop iteration (so a listing never stalls forwarding), copies the matching ones into the
//! request's preallocated buffer (no allocation on the worker), and hands the request back.
//! A worker that gets no request pays one empty-queue check per iteration. The same requests
//! list a worker's persistence entries (`vipctl -L -c --persistent-conn`), as IPVS lists its
//! connection templates: client network with port 0, state `none`.

use crate::flow::key::to_mapped;
use crate::flow::{FlowKey, FlowTable, TcpState};
use crate::persist::PersistTable;
use crate::pipeline::WorkerState;
use crossbeam::queue::ArrayQueue;
use std::net::IpAddr;

/// Entries a worker scans per loop iteration for a listing.
pub const SCAN_PER_ITERATION: usize = 4096;

/// Which connections to list.
#[derive(Debug, Clone, Default)]
pub struct SampleFilter {
    /// Only connections to this VIP, protocol and port.
    pub service: Option<(IpAddr, u8, u16)>,
    /// Only connections from this client address.
    pub client: Option<IpAddr>,
    /// Only connections to these backend ids (slots).
    pub backends: Option<Vec<u32>>,
}

/// One listed connection.
#[derive(Debug, Clone, Copy)]
pub struct SampledFlow {
    /// Original key (client -> VIP).
    pub key: FlowKey,
    /// Backend id (slot).
    pub backend: u32,
    /// TCP state.
    pub state: TcpState,
    /// Milliseconds until it expires unless a packet refreshes it.
    pub remaining_ms: u64,
    /// Full-NAT: the local address and port the real server sees (the reply key's
    /// destination, when it is not the client); None otherwise.
    pub local: Option<(std::net::IpAddr, u16)>,
}

/// The local endpoint of a full-NAT connection: its reply key's destination when that is
/// not the client (half-NAT's reply goes to the client itself).
fn local_of(key: &FlowKey, reply: Option<FlowKey>) -> Option<(std::net::IpAddr, u16)> {
    let r = reply?;
    (r.dst != key.src || r.dst_port != key.src_port).then(|| (r.dst_ip(), r.dst_port))
}

/// A listing request travelling to a worker and back.
#[derive(Debug)]
pub struct SampleRequest {
    /// What to list.
    pub filter: SampleFilter,
    /// The worker's matches, at most `limit` (its capacity is reserved by the requester).
    pub out: Vec<SampledFlow>,
    /// Most connections to return.
    pub limit: usize,
    /// Whether matching connections were left out because `limit` was reached.
    pub truncated: bool,
    /// List persistence entries instead of connections.
    pub persistence: bool,
    cursor: usize,
    service: Option<([u8; 16], u8, u16)>,
    client: Option<[u8; 16]>,
}

impl SampleRequest {
    /// A request for at most `limit` connections matching `filter`.
    pub fn new(filter: SampleFilter, limit: usize) -> Box<Self> {
        Box::new(SampleRequest {
            service: filter.service.map(|(ip, p, port)| (to_mapped(ip), p, port)),
            client: filter.client.map(to_mapped),
            filter,
            out: Vec::with_capacity(limit),
            limit,
            truncated: false,
            persistence: false,
            cursor: 0,
        })
    }

    /// A request for at most `limit` persistence entries matching `filter` (`client`
    /// matches an entry's client network address).
    pub fn persistence(filter: SampleFilter, limit: usize) -> Box<Self> {
        let mut r = Self::new(filter, limit);
        r.persistence = true;
        r
    }

    /// Scan the next part of what the request lists on worker `w`; true when complete.
    pub fn step_on(&mut self, w: &WorkerState, now_ms: u64) -> bool {
        if self.persistence {
            self.step_persistence(&w.persistence, now_ms)
        } else {
            self.step(&w.flows, now_ms)
        }
    }

    /// Scan the next part of the persistence `table`; true when the request is complete.
    pub fn step_persistence(&mut self, table: &PersistTable, now_ms: u64) -> bool {
        let next = table.scan(self.cursor, SCAN_PER_ITERATION, now_ms, |info| {
            if !self.matches(&info.key, info.backend) {
                return true;
            }
            if self.out.len() == self.limit {
                self.truncated = true;
                return false;
            }
            self.out.push(SampledFlow {
                key: info.key,
                backend: info.backend,
                state: TcpState::None,
                remaining_ms: info.remaining_ms,
                local: None,
            });
            true
        });
        match next {
            Some(c) if !self.truncated => {
                self.cursor = c;
                false
            }
            _ => true,
        }
    }

    fn matches(&self, key: &FlowKey, backend: u32) -> bool {
        self.service.is_none_or(|(vip, proto, port)| {
            key.dst == vip && key.proto == proto && key.dst_port == port
        }) && self.client.is_none_or(|c| key.src == c)
            && self
                .filter
                .backends
                .as_ref()
                .is_none_or(|b| b.contains(&backend))
    }

    /// Scan the next part of `table`; true when the request is complete.
    pub fn step(&mut self, table: &FlowTable, now_ms: u64) -> bool {
        let next = table.scan(self.cursor, SCAN_PER_ITERATION, now_ms, |info| {
            if !self.matches(&info.key, info.backend) {
                return true;
            }
            if self.out.len() == self.limit {
                self.truncated = true;
                return false;
            }
            self.out.push(SampledFlow {
                key: info.key,
                backend: info.backend,
                state: info.state,
                remaining_ms: info.remaining_ms,
                local: local_of(&info.key, info.reply),
            });
            true
        });
        match next {
            Some(c) if !self.truncated => {
                self.cursor = c;
                false
            }
            _ => true,
        }
    }
}

/// The request and answer queues between the control side and one worker.
#[derive(Debug)]
pub struct FlowSampler {
    requests: ArrayQueue<Box<SampleRequest>>,
    answers: ArrayQueue<Box<SampleRequest>>,
}

impl Default for FlowSampler {
    fn default() -> Self {
        FlowSampler {
            requests: ArrayQueue::new(1),
            answers: ArrayQueue::new(1),
        }
    }
}

impl FlowSampler {
    /// Hand a request to the worker; gives it back when one is pending already.
    pub fn request(&self, r: Box<SampleRequest>) -> Result<(), Box<SampleRequest>> {
        self.requests.push(r)
    }

    /// The worker's answer, when complete.
    pub fn answer(&self) -> Option<Box<SampleRequest>> {
        self.answers.pop()
    }

    /// Worker side: take a new request, if any.
    #[inline]
    pub fn take(&self) -> Option<Box<SampleRequest>> {
        if self.requests.is_empty() {
            return None;
        }
        self.requests.pop()
    }

    /// Worker side: hand a complete request back.
    pub fn give_back(&self, r: Box<SampleRequest>) {
        // The queue holds one answer and the requester takes it before asking again; if it
        // did not, the older answer is the one dropped (its requester gave up).
        let _ = self.answers.force_push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, TcpFlags, Timeouts};

    #[test]
    fn bounded_steps_filter_and_limit() {
        let mut t = FlowTable::with_capacity(20_000, Timeouts::default());
        let vip: IpAddr = "10.0.100.1".parse().unwrap();
        for i in 0..10_000u32 {
            let client = IpAddr::from([192, 0, 2, (i % 200) as u8]);
            let k = FlowKey::new(client, vip, 1024 + (i / 200) as u16, 80, 6);
            let id = t.insert(&k, FlowTable::hash(&k), None, i % 3, 0).unwrap();
            t.track(id, Direction::Original, Some(TcpFlags::from_bits(0x10)), 0);
        }
        let mut r = SampleRequest::new(
            SampleFilter {
                service: Some((vip, 6, 80)),
                client: Some(IpAddr::from([192, 0, 2, 7])),
                backends: None,
            },
            1000,
        );
        let mut steps = 1;
        while !r.step(&t, 1) {
            steps += 1;
        }
        assert_eq!(r.out.len(), 50, "one client in 200");
        assert!(!r.truncated);
        assert_eq!(
            steps,
            t.listing_positions().div_ceil(SCAN_PER_ITERATION),
            "bounded work per step"
        );
        assert!(r
            .out
            .iter()
            .all(|f| f.state == TcpState::Established && f.key.src_port >= 1024));
        let mut r = SampleRequest::new(
            SampleFilter {
                backends: Some(vec![1]),
                ..Default::default()
            },
            10,
        );
        while !r.step(&t, 1) {}
        assert_eq!((r.out.len(), r.truncated), (10, true));
        assert!(r.out.iter().all(|f| f.backend == 1));
        assert_eq!(r.out.capacity(), 10, "no reallocation");
    }
}
