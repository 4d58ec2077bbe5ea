//! The exception thread (`vipd-kernel` in the docs; an EAL lcore of its own, after the
//! workers' and on the control core, so the OS names it `rte-worker-N`): moves frames between
//! the ports and their kernel interfaces. Wire to kernel: it pops `Rings::to_kernel` (filled by the workers and the
//! control thread) and writes each frame to its port's tap. Kernel to wire: it reads the taps
//! and hands each frame to a worker's inbox as a [`ParcelKind::Transmit`] parcel, since the
//! workers own the physical TX queues. Work per round is bounded, an idle thread backs off to
//! sleeping (a few hundred wake-ups a second), and every frame is counted both ways or by the
//! reason it was dropped. A worker never waits for it: the workers only push to a ring and
//! count `drop_kernel_ring_full` when it is full. A VLAN's kernel interface carries the VLAN
//! untagged: a frame for it leaves the ring tagged, and goes to the tap of its port and VLAN
//! id with the tag removed; what the kernel sends there gets the tag back ([`super::tag`]).

use super::counters::{InterfaceCounters, KernelCounter, KernelCounters};
use super::tag;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use vipd_dataplane::io::dpdk::{Mbuf, MbufBurst, PortQueue};
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::wire::ethernet::{ethertype, EthernetFrame};
use vipd_dataplane::wire::ipv4::{self, Ipv4Packet};
use vipd_dataplane::wire::ipv6::Ipv6Packet;
use vipd_dataplane::wire::{vlan, MacAddr};
use vipd_dataplane::worker::{Parcel, ParcelKind, Rings, BURST};

/// Bursts moved per direction and interface in one round: bounds a round's work, so both
/// directions and every interface get their turn under load.
pub const BURSTS_PER_ROUND: usize = 4;

/// Ethernet header with one VLAN tag: what a frame may carry beyond the IP MTU.
const L2_OVERHEAD: usize = 18;

/// One kernel interface as the exception thread sees it.
pub struct Tap {
    /// Configuration index of the port (the port carrying the VLAN, for a VLAN's).
    pub port: u16,
    /// The VLAN's id, for a VLAN's kernel interface (its frames are tagged on the wire).
    pub vlan: Option<u16>,
    /// The tap's only queue pair.
    pub queue: PortQueue,
    /// The port's MAC, which the kernel interface carries.
    pub mac: MacAddr,
    /// Longest frame the tap takes (its MTU plus Ethernet header and tag).
    pub max_to_kernel: usize,
    /// Longest frame the port sends (its MTU plus Ethernet header and tag).
    pub max_to_wire: usize,
    /// Polls readable when the kernel has sent a frame (the tap's rx interrupt), if the PMD
    /// gave one.
    pub wait_fd: Option<RawFd>,
}

impl Tap {
    /// A tap on `port` (in VLAN `vlan` of it) whose kernel interface has `kernel_mtu`, on a
    /// port of `port_mtu`.
    pub fn new(
        port: u16,
        vlan: Option<u16>,
        queue: PortQueue,
        mac: MacAddr,
        kernel_mtu: u16,
        port_mtu: u16,
    ) -> Self {
        let wait_fd = match queue.rx_wait_fd() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(
                    "exception path: no rx interrupt on the tap of port {port} ({e}): it polls the tap on a timer"
                );
                None
            }
        };
        Tap {
            wait_fd,
            port,
            vlan,
            queue,
            mac,
            max_to_kernel: usize::from(kernel_mtu) + L2_OVERHEAD,
            max_to_wire: usize::from(port_mtu) + L2_OVERHEAD,
        }
    }
}

/// Sleep between idle rounds: none after a round that moved frames, then doubling from
/// [`Backoff::MIN`] to [`Backoff::MAX`]. The sleep is a poll() on the taps, so a frame from
/// the kernel ends it at once; one from the wire (in the ring, which has no descriptor to
/// wait on) waits for its end: little when it answers recent traffic, [`Backoff::MAX`] at
/// most. A quiet thread wakes [`Backoff::MAX`]'s inverse times a second.
#[derive(Debug, Default)]
pub struct Backoff {
    idle_rounds: u32,
}

impl Backoff {
    /// First sleep after traffic.
    pub const MIN: Duration = Duration::from_micros(5);
    /// Longest sleep: the most a frame from the wire waits for a thread that has been idle.
    pub const MAX: Duration = Duration::from_millis(2);

    /// How long to sleep after a round that did (or did not) move frames.
    pub fn after_round(&mut self, worked: bool) -> Option<Duration> {
        if worked {
            self.idle_rounds = 0;
            return None;
        }
        let doublings = self.idle_rounds.min(16);
        self.idle_rounds = self.idle_rounds.saturating_add(1);
        Some((Self::MIN * (1u32 << doublings)).min(Self::MAX))
    }
}

/// Sleep until one of `fds` is readable or `pause` has passed; true when one was readable.
fn wait_readable(fds: &mut [libc::pollfd], pause: Duration) -> bool {
    let ts = libc::timespec {
        tv_sec: pause.as_secs() as libc::time_t,
        tv_nsec: pause.subsec_nanos() as libc::c_long,
    };
    // SAFETY: fds is a valid array of fds.len() pollfd structures, ts a valid timespec, no
    // signal mask is passed; the descriptors belong to the taps, which outlive this thread.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    n > 0
}

/// The worker whose TX queue sends a frame from the kernel: by a hash of its addresses and
/// ports, so one connection's frames leave in order through one queue, and different
/// connections spread over the workers' inboxes.
pub fn worker_for(frame: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let mut key = [0u8; 40];
    let n = flow_key(frame, &mut key);
    (xxhash_rust::xxh3::xxh3_64(&key[..n]) % workers as u64) as usize
}

/// Addresses, protocol and (for TCP and UDP, unfragmented IPv4 or IPv6 without extension
/// headers) ports of an IP frame into `key`, else its destination MAC; returns the length
/// used. At most 16 + 16 + 1 + 4 bytes.
fn flow_key(frame: &[u8], key: &mut [u8; 40]) -> usize {
    let mut k = KeyWriter { key, len: 0 };
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    let l4 = match eth.ethertype() {
        ethertype::IPV4 => Ipv4Packet::new_checked(eth.payload()).ok().map(|ip| {
            k.put(&ip.src().octets());
            k.put(&ip.dst().octets());
            k.put(&[ip.protocol()]);
            let ports = is_tcp_udp(ip.protocol()) && !ip.is_fragment();
            ports.then(|| first4(ip.payload())).flatten()
        }),
        ethertype::IPV6 => Ipv6Packet::new_checked(eth.payload()).ok().map(|ip| {
            k.put(&ip.src().octets());
            k.put(&ip.dst().octets());
            k.put(&[ip.next_header()]);
            let ports = is_tcp_udp(ip.next_header());
            ports.then(|| first4(ip.payload())).flatten()
        }),
        _ => None,
    };
    match l4 {
        Some(Some(ports)) => k.put(&ports),
        Some(None) => {}
        None => k.put(&eth.dst().0),
    }
    k.len
}

fn first4(b: &[u8]) -> Option<[u8; 4]> {
    b.get(..4).and_then(|p| p.try_into().ok())
}

fn is_tcp_udp(proto: u8) -> bool {
    matches!(proto, ipv4::proto::TCP | ipv4::proto::UDP)
}

struct KeyWriter<'a> {
    key: &'a mut [u8; 40],
    len: usize,
}

impl KeyWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.key.len());
        self.key[self.len..end].copy_from_slice(&bytes[..end - self.len]);
        self.len = end;
    }
}

/// The exception thread's state.
pub struct ExceptionPath<'a> {
    /// The kernel interfaces.
    pub taps: Vec<Tap>,
    /// Rings to and from the workers.
    pub rings: &'a Rings,
    /// Counters, one entry per tap in the same order.
    pub counters: &'a KernelCounters,
    /// Set to stop the thread.
    pub stop: &'a AtomicBool,
}

impl ExceptionPath<'_> {
    /// Run until `stop` is set.
    pub fn run(mut self) {
        let mut to_kernel: Vec<MbufBurst> = self.taps.iter().map(|_| MbufBurst::new()).collect();
        let mut from_kernel = MbufBurst::new();
        let mut backoff = Backoff::default();
        let mut fds: Vec<libc::pollfd> = self
            .taps
            .iter()
            .filter_map(|t| t.wait_fd)
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let can_poll = !fds.is_empty() && fds.len() == self.taps.len();
        let mut woken_by_tap = false;
        while !self.stop.load(Ordering::Relaxed) {
            let moved = self.wire_to_kernel(&mut to_kernel) + self.kernel_to_wire(&mut from_kernel);
            if let Some(pause) = backoff.after_round(moved > 0) {
                // A tap readable yet empty to its PMD (net_tap reads after its SIGIO, and not
                // with the mbuf pool dry) would make poll() return at once: sleep instead.
                woken_by_tap = if can_poll && !(woken_by_tap && moved == 0) {
                    wait_readable(&mut fds, pause)
                } else {
                    std::thread::sleep(pause);
                    false
                };
            }
        }
    }

    fn counters(&self, tap: usize) -> Option<&InterfaceCounters> {
        self.counters.interfaces.get(tap)
    }

    /// Frames from the ring to their taps; returns how many were popped.
    fn wire_to_kernel(&mut self, bursts: &mut [MbufBurst]) -> usize {
        let mut popped = 0;
        while popped < BURST * BURSTS_PER_ROUND {
            let Some((port, m)) = self.rings.to_kernel.pop() else {
                break;
            };
            popped += 1;
            // The pipeline hands over only frames of ports and VLANs with a kernel interface,
            // which is a restart-only setting: a frame without a tap cannot come. A VLAN's
            // frames carry its tag; a priority-tagged frame (VLAN id 0) is the port's own and
            // goes to its tap as received (the kernel reads it as untagged).
            let mut m = m;
            let vid = vlan::vlan_of(m.data());
            let Some(i) = self
                .taps
                .iter()
                .position(|t| t.port == port && t.vlan == vid)
            else {
                continue;
            };
            if m.data().len() > self.taps[i].max_to_kernel {
                if let Some(c) = self.counters(i) {
                    c.add(KernelCounter::DropTooBigForKernel, 1);
                }
                continue;
            }
            if let Some(id) = vid {
                if let Err(drop) = tag::untag_for_kernel(&mut m, id) {
                    if let Some(c) = self.counters(i) {
                        c.add(drop, 1);
                    }
                    continue;
                }
            }
            if bursts[i].is_full() {
                self.write_to_tap(i, &mut bursts[i]);
            }
            // Cannot fail: the burst was flushed when full.
            let _ = bursts[i].push(m);
        }
        for (i, burst) in bursts.iter_mut().enumerate() {
            self.write_to_tap(i, burst);
        }
        popped
    }

    fn write_to_tap(&mut self, i: usize, burst: &mut MbufBurst) {
        if burst.is_empty() {
            return;
        }
        let mut lens = [0u64; BURST];
        for (l, m) in lens.iter_mut().zip(burst.iter()) {
            *l = m.data().len() as u64;
        }
        let out = self.taps[i].queue.tx_burst(burst);
        if let Some(c) = self.counters(i) {
            c.add(KernelCounter::ToKernelPackets, out.sent as u64);
            c.add(
                KernelCounter::ToKernelBytes,
                lens[..out.sent.min(BURST)].iter().sum(),
            );
            c.add(KernelCounter::DropTapFull, out.dropped as u64);
        }
    }

    /// Whether every worker's inbox has room for a burst. A worker drains a burst of its inbox
    /// per loop iteration; reading faster would only drop frames (`drop_inbox_full`), while
    /// frames left in the tap wait in the kernel's queue and pace the box's TCP.
    fn inboxes_have_room(&self) -> bool {
        self.rings
            .inboxes
            .iter()
            .all(|q| q.capacity() - q.len() >= BURST)
    }

    /// Frames the kernel sent to the workers that transmit them; returns how many were read.
    fn kernel_to_wire(&mut self, rx: &mut MbufBurst) -> usize {
        let mut read = 0;
        for i in 0..self.taps.len() {
            for _ in 0..BURSTS_PER_ROUND {
                if !self.inboxes_have_room() {
                    return read;
                }
                let n = self.taps[i].queue.rx_burst(rx);
                read += n;
                for m in rx.drain() {
                    self.send_out(i, m);
                }
                if n < BURST {
                    break;
                }
            }
        }
        read
    }

    fn send_out(&self, i: usize, mut m: Mbuf) {
        let tap = &self.taps[i];
        let Some(c) = self.counters(i) else {
            return;
        };
        let tag_len = if tap.vlan.is_some() { vlan::TAG_LEN } else { 0 };
        let len = m.data().len();
        if len < 14 || len + tag_len > tap.max_to_wire {
            c.add(KernelCounter::DropBadLength, 1);
            return;
        }
        if m.data()[6..12] != tap.mac.0 {
            c.add(KernelCounter::DropForeignSource, 1);
            return;
        }
        if let Some(id) = tap.vlan {
            if let Err(drop) = tag::tag_for_wire(&mut m, id) {
                c.add(drop, 1);
                return;
            }
        }
        let len = m.data().len();
        let inboxes = &self.rings.inboxes;
        let first = worker_for(m.data(), inboxes.len());
        let mut parcel = Parcel {
            mbuf: m,
            port: tap.port,
            kind: ParcelKind::Transmit,
        };
        // The flow's own worker first; another when its inbox is full (order matters less
        // than delivery then).
        for k in 0..inboxes.len() {
            let w = (first + k) % inboxes.len();
            match inboxes[w].push(parcel) {
                Ok(()) => {
                    c.add(KernelCounter::FromKernelPackets, 1);
                    c.add(KernelCounter::FromKernelBytes, len as u64);
                    return;
                }
                Err(back) => parcel = back,
            }
        }
        c.add(KernelCounter::DropInboxFull, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, [10, 0, 0, 21], 64)
            .tcp(sport, 8080, 1, 1000);
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        out
    }

    fn udp6(sport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(sport, 53);
        let mut out = Vec::new();
        b.write(&mut out, b"q").unwrap();
        out
    }

    #[test]
    fn one_connection_always_goes_to_one_worker() {
        let a = tcp4([10, 0, 0, 10], 40000);
        let w = worker_for(&a, 4);
        for _ in 0..10 {
            assert_eq!(worker_for(&a, 4), w);
        }
        // A different payload in the same connection: same worker.
        let mut b = a.clone();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert_eq!(worker_for(&b, 4), w);
        assert_eq!(worker_for(&a, 1), 0);
    }

    #[test]
    fn connections_spread_over_workers() {
        let mut seen = [0usize; 4];
        for p in 0..400u16 {
            seen[worker_for(&tcp4([10, 0, 0, 10], 30000 + p), 4)] += 1;
            seen[worker_for(&udp6(30000 + p), 4)] += 1;
        }
        for (w, &n) in seen.iter().enumerate() {
            assert!(n > 120, "worker {w} got {n} of 800: {seen:?}");
        }
    }

    #[test]
    fn non_ip_frames_and_junk_pick_a_valid_worker() {
        let arp = [0xffu8; 42];
        assert!(worker_for(&arp, 3) < 3);
        assert!(worker_for(&[1, 2, 3], 3) < 3);
        let mut truncated = tcp4([10, 0, 0, 10], 1);
        truncated.truncate(20);
        assert!(worker_for(&truncated, 3) < 3);
    }

    #[test]
    fn backoff_sleeps_only_when_idle_and_doubles_to_its_ceiling() {
        let mut b = Backoff::default();
        assert_eq!(b.after_round(true), None);
        assert_eq!(b.after_round(false), Some(Backoff::MIN));
        assert_eq!(b.after_round(false), Some(Backoff::MIN * 2));
        assert_eq!(b.after_round(false), Some(Backoff::MIN * 4));
        for _ in 0..100 {
            b.after_round(false);
        }
        assert_eq!(b.after_round(false), Some(Backoff::MAX));
        assert_eq!(b.after_round(true), None);
        assert_eq!(b.after_round(false), Some(Backoff::MIN));
    }
}
