//! Tracing the four steps of live connections (`vipctl trace`): while a trace request is
//! active on a worker, every frame it processes is compared with the request's filter, and a
//! matching one is recorded twice, as vipd saw it (step 1 from a client, step 3 from a real
//! server) and as vipd wrote it (step 2 to a real server, step 4 to a client): addresses,
//! ports and MACs, and the outer header of a tunnel. The records go into the request's buffer,
//! reserved by the requester (no allocation on the worker); the request ends when its buffer
//! is full or its time is up, and goes back to the requester.
//!
//! Without a request a worker pays one branch per frame (`WorkerState::trace` is `None`); with
//! one, a header parse before and after each frame, never more than the buffer holds.

use crate::flow::key::to_mapped;
use crate::pipeline::Action;
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::MacAddr;
use crossbeam::queue::ArrayQueue;
use std::net::IpAddr;

/// IP protocol numbers of IP-in-IP.
const PROTO_IPIP: u8 = 4;
const PROTO_IPV6: u8 = 41;

/// The headers of one frame as the trace shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// Source address (the inner packet's, for a tunnel).
    pub src: IpAddr,
    /// Destination address (inner).
    pub dst: IpAddr,
    /// Transport protocol (inner).
    pub proto: u8,
    /// Source port (0 without TCP/UDP).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The outer header of an IP-in-IP packet: (source, destination).
    pub outer: Option<(IpAddr, IpAddr)>,
}

/// Where `part` (a subslice of `whole`) sits in `whole`, as a slice of `whole`'s lifetime.
fn within<'a>(whole: &'a [u8], part: &[u8]) -> &'a [u8] {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    whole.get(start..start + part.len()).unwrap_or(&[])
}

fn l3(ethertype_: u16, packet: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    match ethertype_ {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            let payload = within(packet, ip.payload());
            Some((
                IpAddr::V4(ip.src()),
                IpAddr::V4(ip.dst()),
                ip.protocol(),
                payload,
            ))
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let payload = within(packet, ip.payload());
            Some((
                IpAddr::V6(ip.src()),
                IpAddr::V6(ip.dst()),
                ip.next_header(),
                payload,
            ))
        }
        _ => None,
    }
}

fn ports(proto: u8, l4: &[u8]) -> (u16, u16) {
    match (proto, l4) {
        (ipv4::proto::TCP | ipv4::proto::UDP, [a, b, c, d, ..]) => {
            (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))
        }
        _ => (0, 0),
    }
}

/// The headers of an Ethernet frame carrying IP (and, inside IP-in-IP, the inner packet's).
pub fn headers(frame: &[u8]) -> Option<Headers> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, proto, payload) = l3(eth.ethertype(), eth.payload())?;
    let inner = match proto {
        PROTO_IPIP => l3(ethertype::IPV4, payload),
        PROTO_IPV6 => l3(ethertype::IPV6, payload),
        _ => None,
    };
    let (outer, (src, dst, proto, l4)) = match inner {
        Some(i) => (Some((src, dst)), i),
        None => (None, (src, dst, proto, payload)),
    };
    let (src_port, dst_port) = ports(proto, l4);
    Some(Headers {
        src_mac: eth.src(),
        dst_mac: eth.dst(),
        src,
        dst,
        proto,
        src_port,
        dst_port,
        outer,
    })
}

/// Which connections to trace; every given part must match.
#[derive(Clone, Debug, Default)]
pub struct TraceFilter {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The VIP (and port, when given).
    pub vip: Option<(IpAddr, Option<u16>)>,
    /// The real server's address (and port).
    pub real_server: Option<(IpAddr, Option<u16>)>,
}

/// One frame as it came in and, when vipd sent it on, as it went out.
#[derive(Clone, Copy, Debug)]
pub struct TraceRecord {
    /// The worker's clock (ms).
    pub at_ms: u64,
    /// The port it came in by.
    pub rx_port: u16,
    /// As received.
    pub seen: Headers,
    /// As sent, and the port it left by; None when it was not sent on.
    pub sent: Option<(u16, Headers)>,
    /// What the pipeline decided (a drop names its reason).
    pub action: Action,
}

/// A trace request travelling to a worker and back.
#[derive(Debug)]
pub struct TraceJob {
    /// What to trace.
    pub filter: TraceFilter,
    /// What was recorded (at most its capacity).
    pub records: Vec<TraceRecord>,
    /// Matching frames left out because the buffer was full.
    pub missed: u64,
    /// Frames looked at.
    pub examined: u64,
    duration_ms: u64,
    started_ms: Option<u64>,
    pending: Option<(u64, u16, Headers)>,
}

fn mapped_eq(a: &IpAddr, b: &IpAddr) -> bool {
    to_mapped(*a) == to_mapped(*b)
}

fn endpoint_is(want: &(IpAddr, Option<u16>), ip: &IpAddr, port: u16) -> bool {
    mapped_eq(&want.0, ip) && want.1.is_none_or(|p| p == port)
}

impl TraceJob {
    /// A request for at most `capacity` records over `duration_ms` of the worker's time.
    pub fn new(filter: TraceFilter, capacity: usize, duration_ms: u64) -> Box<Self> {
        Box::new(TraceJob {
            filter,
            records: Vec::with_capacity(capacity),
            missed: 0,
            examined: 0,
            duration_ms,
            started_ms: None,
            pending: None,
        })
    }

    /// Whether a frame (as seen, and as sent when it was) belongs to the traced connections.
    fn matches(&self, seen: &Headers, sent: Option<&Headers>) -> bool {
        let f = &self.filter;
        // A full-NAT reply names the client only as sent (step 4), not as seen (step 3).
        let client = f.client.is_none_or(|c| {
            mapped_eq(&c, &seen.src)
                || mapped_eq(&c, &seen.dst)
                || sent.is_some_and(|s| mapped_eq(&c, &s.dst))
        });
        let vip = f.vip.as_ref().is_none_or(|v| {
            endpoint_is(v, &seen.dst, seen.dst_port)
                || sent.is_some_and(|s| endpoint_is(v, &s.src, s.src_port))
        });
        let rs = f.real_server.as_ref().is_none_or(|r| {
            endpoint_is(r, &seen.src, seen.src_port)
                || sent.is_some_and(|s| {
                    endpoint_is(r, &s.dst, s.dst_port)
                        || s.outer.is_some_and(|(_, o)| mapped_eq(&r.0, &o))
                })
        });
        client && vip && rs
    }

    /// The worker took the request at `now_ms`: its time runs from here.
    pub fn start(&mut self, now_ms: u64) {
        self.started_ms = Some(now_ms);
    }

    /// Before the pipeline handles a frame.
    #[inline]
    pub fn before(&mut self, frame: &[u8], rx_port: u16, now_ms: u64) {
        self.examined += 1;
        self.pending = headers(frame).map(|h| (now_ms, rx_port, h));
    }

    /// After the pipeline decided `action` for the frame now in `frame`.
    #[inline]
    pub fn after(&mut self, frame: &[u8], action: Action) {
        let Some((at_ms, rx_port, seen)) = self.pending.take() else {
            return;
        };
        let sent = match action {
            Action::Tx(port) => headers(frame).map(|h| (port, h)),
            _ => None,
        };
        if !self.matches(&seen, sent.as_ref().map(|(_, h)| h)) {
            return;
        }
        if self.records.len() == self.records.capacity() {
            self.missed += 1;
            return;
        }
        self.records.push(TraceRecord {
            at_ms,
            rx_port,
            seen,
            sent,
            action,
        });
    }

    /// Whether the request is complete at `now_ms`.
    pub fn done(&self, now_ms: u64) -> bool {
        self.records.len() == self.records.capacity()
            || self
                .started_ms
                .is_some_and(|s| now_ms.saturating_sub(s) >= self.duration_ms)
    }
}

/// The queues between the requester and one worker (one request at a time).
#[derive(Debug)]
pub struct Tracer {
    requests: ArrayQueue<Box<TraceJob>>,
    answers: ArrayQueue<Box<TraceJob>>,
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer {
            requests: ArrayQueue::new(1),
            answers: ArrayQueue::new(1),
        }
    }
}

impl Tracer {
    /// Hand a request to the worker; gives it back when one is pending already.
    pub fn request(&self, job: Box<TraceJob>) -> Result<(), Box<TraceJob>> {
        self.requests.push(job)
    }

    /// The worker's answer, when complete.
    pub fn answer(&self) -> Option<Box<TraceJob>> {
        self.answers.pop()
    }

    /// Worker side: a new request, if any.
    #[inline]
    pub fn take(&self) -> Option<Box<TraceJob>> {
        if self.requests.is_empty() {
            return None;
        }
        self.requests.pop()
    }

    /// Worker side: hand a complete request back (an older unclaimed answer is dropped).
    pub fn give_back(&self, job: Box<TraceJob>) {
        let _ = self.answers.force_push(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1000);
        let mut out = Vec::new();
        b.write(&mut out, b"x").unwrap();
        out
    }

    #[test]
    fn headers_of_plain_and_tunnelled_frames() {
        let f = frame([192, 0, 2, 1], [10, 0, 100, 1], 40000, 80);
        let h = headers(&f).unwrap();
        assert_eq!(
            (h.src, h.dst, h.proto, h.src_port, h.dst_port, h.outer),
            (
                IpAddr::from([192, 0, 2, 1]),
                IpAddr::from([10, 0, 100, 1]),
                6,
                40000,
                80,
                None
            )
        );
        assert_eq!(h.src_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        // IP-in-IP: the outer header and the inner packet.
        let inner = &f[14..];
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]).ipv4(
            [10, 0, 0, 10],
            [10, 0, 0, 21],
            64,
        );
        let mut t = Vec::new();
        b.write(&mut t, etherparse::IpNumber(4), inner).unwrap();
        let h = headers(&t).unwrap();
        assert_eq!(
            h.outer,
            Some((IpAddr::from([10, 0, 0, 10]), IpAddr::from([10, 0, 0, 21])))
        );
        assert_eq!((h.src_port, h.dst_port), (40000, 80));
        assert!(headers(&[0u8; 10]).is_none());
    }

    #[test]
    fn filter_capacity_and_time() {
        let filter = TraceFilter {
            client: Some(IpAddr::from([192, 0, 2, 1])),
            real_server: Some((IpAddr::from([10, 0, 0, 21]), None)),
            ..Default::default()
        };
        let mut job = TraceJob::new(filter, 2, 1000);
        assert!(!job.done(5_000), "not started: not done");
        job.start(10);
        let step1 = frame([192, 0, 2, 1], [10, 0, 100, 1], 40000, 80);
        let step2 = frame([192, 0, 2, 1], [10, 0, 0, 21], 40000, 8080);
        let other = frame([192, 0, 2, 9], [10, 0, 0, 21], 40000, 8080);
        job.before(&step1, 0, 10);
        job.after(&step2, Action::Tx(0));
        job.before(&other, 0, 11);
        job.after(&other, Action::Tx(0));
        job.before(&step1, 0, 12);
        job.after(&step1, Action::Drop(crate::counters::DropReason::NoBackend));
        assert_eq!(
            job.records.len(),
            1,
            "other client; no real server when dropped"
        );
        assert!(job.records[0].sent.is_some());
        assert!(!job.done(500) && job.done(1010));
        job.before(&step1, 0, 13);
        job.after(&step2, Action::Tx(0));
        job.before(&step1, 0, 14);
        job.after(&step2, Action::Tx(0));
        assert_eq!((job.records.len(), job.missed, job.examined), (2, 1, 5));
        assert!(job.done(15), "full");
        assert_eq!(job.records.capacity(), 2, "no reallocation");
    }

    #[test]
    fn a_full_nat_reply_matches_its_client_as_sent() {
        let filter = TraceFilter {
            client: Some(IpAddr::from([192, 0, 2, 1])),
            ..Default::default()
        };
        let mut job = TraceJob::new(filter, 4, 1000);
        job.start(0);
        // Step 3: real server -> local address; step 4: VIP -> client.
        let step3 = frame([10, 0, 0, 21], [10, 0, 0, 100], 8080, 40000);
        let step4 = frame([10, 0, 100, 1], [192, 0, 2, 1], 80, 5000);
        job.before(&step3, 0, 1);
        job.after(&step4, Action::Tx(0));
        assert_eq!(job.records.len(), 1);
        let other = frame([10, 0, 100, 1], [192, 0, 2, 9], 80, 5000);
        job.before(&step3, 0, 2);
        job.after(&other, Action::Tx(0));
        assert_eq!(job.records.len(), 1, "another client's reply");
    }
}
