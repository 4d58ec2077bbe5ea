//! Per-core counters: one writer (the worker that owns them), read by the control thread at
//! scrape time.
//!
//! Each value is an `AtomicU64` updated with a relaxed load + store rather than `fetch_add`:
//! with a single writer no increment can be lost, and on x86-64 both are plain `mov`s, so the
//! hot path pays no locked instruction while the control thread's reads stay data-race free.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[doc = $doc:expr])* $variant:ident = $name:literal, $kind:ident; )*) => {
        /// Everything a worker counts. Each drop reason has its own counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Counter {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Counter {
            /// All counters, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The metric-friendly name (`snake_case`).
            pub fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }

            /// What the counter counts, for metrics help and `vipctl stats`.
            pub fn help(self) -> &'static str {
                match self { $(Counter::$variant => concat!($($doc),*).trim_ascii(),)* }
            }

            /// Whether this counts dropped packets (a drop reason).
            pub fn is_drop(self) -> bool {
                match self { $(Counter::$variant => counters!(@is_drop $kind),)* }
            }
        }
    };
    (@is_drop drop) => { true };
    (@is_drop event) => { false };
}

counters! {
    /// Packets received.
    RxPackets = "rx_packets", event;
    /// Bytes received.
    RxBytes = "rx_bytes", event;
    /// Packets handed to the NIC and accepted by it.
    TxPackets = "tx_packets", event;
    /// Bytes handed to the NIC and accepted by it.
    TxBytes = "tx_bytes", event;
    /// Step 1->2: client packets forwarded to a real server.
    Forwarded = "forwarded", event;
    /// Step 3->4: NAT replies from a real server rewritten and sent to the client.
    NatReplies = "nat_replies", event;
    /// New flows scheduled and entered in the flow table.
    FlowsCreated = "flows_created", event;
    /// New flows forwarded statelessly by the consistent hash because the flow table was full.
    FlowTableFull = "flow_table_full", event;
    /// New connections of persistent services sent to their client network's real server by
    /// its persistence entry.
    PersistenceHits = "persistence_hits", event;
    /// Persistence entries moved to another real server because theirs could not take a new
    /// connection (drained, down, removed, or over its connection threshold).
    PersistenceMoved = "persistence_moved", event;
    /// New connections of persistent services whose client network found no room for its
    /// persistence entry (scheduled without one; raise `flows.persistence_per_worker`).
    PersistenceTableFull = "persistence_table_full", event;
    /// NAT replies rewritten without a flow entry, from the real server's unique service.
    NatRepliesStateless = "nat_replies_stateless", event;
    /// ARP requests for our addresses or VIPs answered.
    ArpReplies = "arp_replies", event;
    /// Neighbour solicitations for our addresses or VIPs answered.
    NdAdverts = "nd_adverts", event;
    /// ICMP/ICMPv6 echo requests answered.
    EchoReplies = "echo_replies", event;
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent back to the sender of a
    /// packet that does not fit the egress MTU (NAT, DR) or the tunnel (TUN: inner packet +
    /// outer header over the MTU).
    IcmpTooBigSent = "icmp_too_big_sent", event;
    /// Frames handed to the control thread (neighbour learning and resolution).
    ToControl = "to_control", event;
    /// Frames handed to the box's kernel through a port's kernel interface (exception path).
    ToKernel = "to_kernel", event;
    /// Packets handed to another worker that owns their connection.
    Steered = "steered", event;
    /// Snapshots picked up by the worker.
    SnapshotsApplied = "snapshots_applied", event;
    /// Iterations of the worker's poll loop.
    WorkerPolls = "worker_polls", event;
    /// Iterations that found work (frames received or in the inbox): busy ratio =
    /// worker_busy_polls / worker_polls.
    WorkerBusyPolls = "worker_busy_polls", event;
    /// TCP segments to a VIP without a flow entry and without a lone SYN (mid-stream after a
    /// restart, an expiry or a move between boxes): forwarded by the consistent hash, no state.
    TcpNoFlowStateless = "tcp_no_flow_stateless", event;
    /// New flows whose key or reply key already belonged to another connection: forwarded
    /// statelessly by the consistent hash.
    FlowKeyClash = "flow_key_clash", event;
    /// ICMP errors about VIP traffic (unreachable, too big, time exceeded, parameter problem)
    /// delivered to the real server owning the quoted connection.
    IcmpErrorsToRealServer = "icmp_errors_to_real_server", event;
    /// ICMP errors from NAT real servers about a connection, un-NATed and sent to the client.
    IcmpErrorsToClient = "icmp_errors_to_client", event;
    /// ICMP errors to a VIP about a connection the receiving worker has no entry for (a
    /// restart, an expiry, another box's or worker's connection), delivered to the real server
    /// the service's consistent hash picks for the quoted connection (also counted in
    /// icmp_errors_to_real_server).
    IcmpErrorsStateless = "icmp_errors_stateless", event;
    /// IP fragments forwarded (the first by its ports, the others after it).
    FragmentsForwarded = "fragments_forwarded", event;
    /// Later fragments whose first fragment the worker did not see, forwarded to the real
    /// server a `hash = "3-tuple"` service's consistent hash picks for (source, destination,
    /// protocol) (also counted in fragments_forwarded).
    FragmentsStateless = "fragments_stateless", event;
    /// Replies to an on-link client whose MAC vipd does not know yet, handed to the control
    /// thread so it resolves the client (the reply itself is not sent; the next one is).
    NeighbourResolveRequests = "neighbour_resolve_requests", event;
    /// Dropped: frame shorter than an Ethernet header (or its VLAN tag).
    DropEthMalformed = "drop_eth_malformed", drop;
    /// Dropped: unicast frame for another MAC address.
    DropNotOurMac = "drop_not_our_mac", drop;
    /// Dropped: IP packet (other than Neighbour Discovery) in a link-layer multicast or
    /// broadcast frame: never forwarded nor answered (RFC 1812 5.3.4).
    DropLinkMulticast = "drop_link_multicast", drop;
    /// Dropped: source MAC multicast, broadcast or zero (invalid in IEEE 802.3).
    DropSrcMacInvalid = "drop_src_mac_invalid", drop;
    /// Dropped: 802.1ad (QinQ) or stacked VLAN tags (vipd parses one 802.1Q tag).
    DropVlanTagged = "drop_vlan_tagged", drop;
    /// Dropped: 802.1Q-tagged frame of a VLAN the receiving port does not carry.
    DropUnknownVlan = "drop_unknown_vlan", drop;
    /// Dropped: EtherType other than IPv4, IPv6 or ARP.
    DropUnsupportedEthertype = "drop_unsupported_ethertype", drop;
    /// Dropped: malformed ARP, or ARP for an address that is not ours.
    DropArpIgnored = "drop_arp_ignored", drop;
    /// Dropped: ARP from a multicast sender MAC or a sender address that is not unicast.
    DropArpInvalid = "drop_arp_invalid", drop;
    /// Dropped: neighbour solicitation/advertisement failing RFC 4861 validation (hop limit
    /// not 255, code not 0, bad checksum, truncated, bad option length, multicast target).
    DropNdInvalid = "drop_nd_invalid", drop;
    /// Dropped: valid neighbour discovery message not for us (solicitation for an address
    /// that is neither ours nor a VIP, advertisement not addressed to us).
    DropNdIgnored = "drop_nd_ignored", drop;
    /// Dropped: malformed IPv4 header (length, version, IHL).
    DropIpv4Malformed = "drop_ipv4_malformed", drop;
    /// Dropped: IPv4 header checksum wrong.
    DropIpv4BadChecksum = "drop_ipv4_bad_checksum", drop;
    /// Dropped: IP fragment vipd does not forward: not TCP/UDP to a VIP or from a NAT real
    /// server, a first fragment too short for the transport header, an overlapping offset.
    DropFragmentInvalid = "drop_fragment_invalid", drop;
    /// Dropped: a later fragment whose first fragment was not seen (reordered, lost, decided
    /// on another box or before a restart) and that no `hash = "3-tuple"` service can place
    /// (the VIP's only service of its protocol), since it carries no ports.
    DropFragmentUnknown = "drop_fragment_unknown", drop;
    /// Dropped: malformed IPv6 header.
    DropIpv6Malformed = "drop_ipv6_malformed", drop;
    /// Dropped: IPv6 extension header other than a fragment header (hop-by-hop, routing,
    /// destination options, chains).
    DropIpv6ExtHeader = "drop_ipv6_ext_header", drop;
    /// Dropped: IPv6 packet with an IPv4-mapped address (`::ffff:0:0/96`) as source,
    /// destination or Neighbour Discovery target: never the box's or a neighbour's, it must not
    /// reach IPv4 services, IPv4 flow state or answers for IPv4 addresses.
    DropIpv6Mapped = "drop_ipv6_mapped", drop;
    /// Dropped: martian source: unspecified, loopback, multicast, broadcast / class E, one of
    /// our own addresses, or equal to the destination (LAND).
    DropMartianSource = "drop_martian_source", drop;
    /// Dropped: destination not unicast (multicast, broadcast / class E, 0/8, loopback,
    /// unspecified) outside Neighbour Discovery: nothing vipd forwards or answers goes there.
    DropMartianDestination = "drop_martian_destination", drop;
    /// Dropped: arrived with TTL / hop limit 0 (no router forwards such a packet).
    DropTtlZero = "drop_ttl_zero", drop;
    /// Dropped: TCP flag combination no endpoint sends (none, SYN+FIN, SYN+RST, FIN without
    /// ACK, ...; the Linux conntrack table).
    DropTcpBadFlags = "drop_tcp_bad_flags", drop;
    /// Dropped: ICMP/ICMPv6 message with a wrong checksum.
    DropIcmpBadChecksum = "drop_icmp_bad_checksum", drop;
    /// Dropped: ICMP error whose quoted packet is truncated or not TCP/UDP.
    DropIcmpQuoteMalformed = "drop_icmp_quote_malformed", drop;
    /// Dropped: ICMP error quoting a packet of no service or connection vipd knows.
    DropIcmpErrorNoFlow = "drop_icmp_error_no_flow", drop;
    /// Dropped: TCP/UDP/ICMP header truncated or inconsistent.
    DropL4Malformed = "drop_l4_malformed", drop;
    /// Dropped: protocol vipd does not balance (not TCP/UDP), to a VIP.
    DropUnsupportedProtocol = "drop_unsupported_protocol", drop;
    /// Dropped: TTL/hop limit would reach zero.
    DropTtlExceeded = "drop_ttl_exceeded", drop;
    /// Dropped: NAT/DR packet larger than the egress MTU that may be fragmented (IPv4 without
    /// DF: vipd does not fragment), or whose too-big error would report an MTU below the
    /// family minimum.
    DropTooBig = "drop_too_big", drop;
    /// Dropped: TUN, the packet plus the outer header exceeds the egress MTU and may be
    /// fragmented (IPv4 without DF: vipd does not fragment), or the inner MTU left is below the
    /// family's minimum (68, IPv6 1280) so no "too big" error can help.
    DropTunnelTooBig = "drop_tunnel_too_big", drop;
    /// Dropped: TUN, no outer source address of the real server's family (the egress port has
    /// no address of that family).
    DropTunnelNoSource = "drop_tunnel_no_source", drop;
    /// Dropped: packet too big for the tunnel whose ICMP error RFC 1812 / RFC 4443 forbid
    /// (source not unicast, invoking packet an ICMP error or a non-initial fragment) or that
    /// has no source address of its family.
    DropIcmpErrorSuppressed = "drop_icmp_error_suppressed", drop;
    /// Dropped: packet too big for the tunnel while the worker's ICMP error budget
    /// (1000/s, burst 50) was spent.
    DropIcmpErrorRateLimited = "drop_icmp_error_rate_limited", drop;
    /// Dropped: destination is a VIP but no service listens on that protocol/port.
    DropNoService = "drop_no_service", drop;
    /// Dropped: the service has no real server with weight > 0.
    DropNoBackend = "drop_no_backend", drop;
    /// Dropped: new connection while every real server that could take it is over its upper
    /// connection threshold (or, for `sh` without `sh-fallback`, the client's own is).
    DropRealServersOverloaded = "drop_real_servers_overloaded", drop;
    /// Dropped: the flow's real server left the configuration.
    DropBackendGone = "drop_backend_gone", drop;
    /// Dropped: the flow's real server failed its health checks and its service drops the
    /// flows of dead real servers (`dead_flows = "drop"`); the entry is removed too, so the
    /// client's next packet is scheduled to a live real server.
    DropRealServerDown = "drop_real_server_down", drop;
    /// Dropped: the next hop's MAC address is not resolved yet.
    DropNeighbourUnresolved = "drop_neighbour_unresolved", drop;
    /// Dropped: no route (no port on-link and no gateway) to the destination.
    DropNoRoute = "drop_no_route", drop;
    /// Dropped: packet to an address that is neither ours, a VIP, nor a NAT reply.
    DropNotLocal = "drop_not_local", drop;
    /// Dropped: packet from a real server with no flow and no unique service to map it back.
    DropNatReplyNoFlow = "drop_nat_reply_no_flow", drop;
    /// Dropped: a new full-NAT connection found every local address and port of its pool
    /// taken towards its real server (established connections are untouched).
    DropFnatPoolExhausted = "drop_fnat_pool_exhausted", drop;
    /// Dropped: a packet to a full-NAT real server without a connection entry (a TCP
    /// segment that is not a SYN, a full table, a key clash, a packet away from its owner):
    /// full-NAT cannot go statelessly, only the entry knows the local endpoint.
    DropFnatNoFlow = "drop_fnat_no_flow", drop;
    /// Dropped: a fragment of a full-NAT connection (no reassembly; later fragments carry
    /// no ports to rewrite by).
    DropFnatFragment = "drop_fnat_fragment", drop;
    /// Dropped: an ICMP error about a full-NAT connection (not relayed in this version).
    DropFnatIcmpError = "drop_fnat_icmp_error", drop;
    /// Dropped: packet to one of our own addresses that vipd does not serve (not echo/ARP).
    DropLocalUnhandled = "drop_local_unhandled", drop;
    /// Dropped: the frame buffer has no headroom left to grow the frame (tunnel header, ICMP
    /// error header).
    DropNoHeadroom = "drop_no_headroom", drop;
    /// Dropped: the NIC TX queue was full.
    DropTxFull = "drop_tx_full", drop;
    /// Dropped: the ring to another worker or to the control thread was full.
    DropRingFull = "drop_ring_full", drop;
    /// Dropped: a frame steered to its connection's owner that the owner would steer again
    /// (the workers disagree on ownership: a bug, counted instead of looping).
    DropSteeredTwice = "drop_steered_twice", drop;
    /// Dropped: an answer (neighbour advertisement) longer than the frame it is written into,
    /// and the frame buffer has no tailroom to grow.
    DropNoTailroom = "drop_no_tailroom", drop;
    /// Dropped: the ring to the exception path (the kernel interfaces) was full.
    DropKernelRingFull = "drop_kernel_ring_full", drop;
}

/// Number of counters.
pub const COUNT: usize = Counter::ALL.len();

/// One worker's counters, padded to its own cache lines so two workers never share one.
#[repr(align(64))]
#[derive(Debug)]
pub struct WorkerCounters {
    values: [AtomicU64; COUNT],
    flows_active: AtomicU64,
    generation: AtomicU64,
    heartbeat: AtomicU64,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            flows_active: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
        }
    }
}

impl WorkerCounters {
    /// Add `n` to `c`. Only the owning worker may call this (single writer).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        let v = &self.values[c as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Add one to `c`. Only the owning worker may call this (single writer).
    #[inline]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Current value (any thread).
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }

    /// Publish the number of connections in the worker's flow table (a gauge).
    pub fn set_flows_active(&self, n: u64) {
        self.flows_active.store(n, Ordering::Relaxed);
    }

    /// Connections in the worker's flow table when it last published.
    pub fn flows_active(&self) -> u64 {
        self.flows_active.load(Ordering::Relaxed)
    }

    /// Publish the generation of the snapshot the worker forwards by (when it adopts one).
    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
    }

    /// Generation of the snapshot the worker last adopted (0 before the first burst): the
    /// worker holds no reference into older snapshots' backends.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Publish the worker's loop iteration count, once per iteration: the control plane
    /// tells a stalled worker (the count stands still) from a running one. One relaxed store
    /// by the owning worker (a plain `mov`), no read-modify-write.
    #[inline]
    pub fn beat(&self, iterations: u64) {
        self.heartbeat.store(iterations, Ordering::Relaxed);
    }

    /// The last iteration count the worker published (0: it has not run a loop yet).
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// Sum of all drop counters.
    pub fn total_drops(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.is_drop())
            .map(|&c| self.get(c))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_and_help_present() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNT);
        for c in Counter::ALL {
            assert!(!c.help().is_empty(), "{c:?}");
            assert_eq!(c.is_drop(), c.name().starts_with("drop_"), "{c:?}");
        }
    }

    #[test]
    fn add_and_total() {
        let w = WorkerCounters::default();
        w.inc(Counter::DropNoService);
        w.add(Counter::DropTxFull, 2);
        w.add(Counter::RxPackets, 10);
        assert_eq!(w.get(Counter::DropNoService), 1);
        assert_eq!(w.total_drops(), 3);
    }
}
