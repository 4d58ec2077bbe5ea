//! Per-core counters: one writer (the worker that owns them), read by the control thread at
//! scrape time.
//!
//! Each value is an `AtomicU64` updated with a relaxed load + store rather than `fetch_add`:
//! with a single writer no increment can be lost, and on x86-64 both are plain `mov`s, so the
//! hot path pays no locked instruction while the control thread's reads stay data-race free.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    (
        events { $( $(#[doc = $edoc:expr])* $event:ident = $ename:literal; )* }
        drops { $( $(#[doc = $ddoc:expr])* $reason:ident => $dvariant:ident = $dname:literal; )* }
    ) => {
        /// Everything a worker counts: the events, then one counter per drop reason (in
        /// [`DropReason`] order, so a reason maps to its counter by an offset).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Counter {
            $( $(#[doc = $edoc])* $event, )*
            $( $(#[doc = $ddoc])* $dvariant, )*
        }

        /// Why a packet was dropped: what a dropping stage returns and `Action::Drop` carries.
        /// Only drop reasons, so a drop can never be counted as an event; each has its own
        /// [`Counter`] (`Counter::from`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[doc = $ddoc])* $reason, )*
        }

        impl Counter {
            /// All counters, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$event,)* $(Counter::$dvariant,)*];

            /// The metric-friendly name (`snake_case`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$event => $ename,)*
                    $(Counter::$dvariant => $dname,)*
                }
            }

            /// What the counter counts, for metrics help and `vipctl stats`.
            pub fn help(self) -> &'static str {
                match self {
                    $(Counter::$event => concat!($($edoc),*).trim_ascii(),)*
                    $(Counter::$dvariant => concat!($($ddoc),*).trim_ascii(),)*
                }
            }

            /// Whether this counts dropped packets (a drop reason).
            pub fn is_drop(self) -> bool {
                self as usize >= FIRST_DROP
            }
        }

        impl DropReason {
            /// All drop reasons, in index order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$reason,)*];

            /// The reason's counter.
            #[inline]
            pub const fn counter(self) -> Counter {
                match self { $(DropReason::$reason => Counter::$dvariant,)* }
            }

            /// The reason's counter name (`drop_...`).
            pub fn name(self) -> &'static str {
                self.counter().name()
            }
        }

        /// Index of the first drop counter (the number of events).
        const FIRST_DROP: usize = [$(Counter::$event,)*].len();
    };
}

counters! {
    events {
        /// Packets received.
        RxPackets = "rx_packets";
        /// Bytes received.
        RxBytes = "rx_bytes";
        /// Packets handed to the NIC and accepted by it.
        TxPackets = "tx_packets";
        /// Bytes handed to the NIC and accepted by it.
        TxBytes = "tx_bytes";
        /// Step 1->2: client packets forwarded to a real server.
        Forwarded = "forwarded";
        /// Step 3->4: NAT replies from a real server rewritten and sent to the client.
        NatReplies = "nat_replies";
        /// New flows scheduled and entered in the flow table.
        FlowsCreated = "flows_created";
        /// New flows forwarded statelessly by the consistent hash because the flow table was full.
        FlowTableFull = "flow_table_full";
        /// New connections of persistent services sent to their client network's real server by
        /// its persistence entry.
        PersistenceHits = "persistence_hits";
        /// Persistence entries moved to another real server because theirs could not take a new
        /// connection (drained, down, removed, or over its connection threshold).
        PersistenceMoved = "persistence_moved";
        /// New connections of persistent services whose client network found no room for its
        /// persistence entry (scheduled without one; raise `flows.persistence_per_worker`).
        PersistenceTableFull = "persistence_table_full";
        /// NAT replies rewritten without a flow entry, from the real server's unique service.
        NatRepliesStateless = "nat_replies_stateless";
        /// ARP requests for our addresses or VIPs answered.
        ArpReplies = "arp_replies";
        /// Neighbour solicitations for our addresses or VIPs answered.
        NdAdverts = "nd_adverts";
        /// ICMP/ICMPv6 echo requests answered.
        EchoReplies = "echo_replies";
        /// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent back to the sender of a
        /// packet that does not fit the egress MTU (NAT, DR) or the tunnel (TUN: inner packet +
        /// outer header over the MTU).
        IcmpTooBigSent = "icmp_too_big_sent";
        /// Frames handed to the control thread (neighbour learning and resolution).
        ToControl = "to_control";
        /// Frames handed to the box's kernel through a port's kernel interface (exception path).
        ToKernel = "to_kernel";
        /// Packets handed to another worker that owns their connection.
        Steered = "steered";
        /// Snapshots picked up by the worker.
        SnapshotsApplied = "snapshots_applied";
        /// Iterations of the worker's poll loop.
        WorkerPolls = "worker_polls";
        /// Iterations that found work (frames received or in the inbox): busy ratio =
        /// worker_busy_polls / worker_polls.
        WorkerBusyPolls = "worker_busy_polls";
        /// TCP segments to a VIP without a flow entry and without a lone SYN (mid-stream after a
        /// restart, an expiry or a move between boxes): forwarded by the consistent hash, no state.
        TcpNoFlowStateless = "tcp_no_flow_stateless";
        /// New flows whose key or reply key already belonged to another connection: forwarded
        /// statelessly by the consistent hash.
        FlowKeyClash = "flow_key_clash";
        /// ICMP errors about VIP traffic (unreachable, too big, time exceeded, parameter problem)
        /// delivered to the real server owning the quoted connection.
        IcmpErrorsToRealServer = "icmp_errors_to_real_server";
        /// ICMP errors from NAT real servers about a connection, un-NATed and sent to the client.
        IcmpErrorsToClient = "icmp_errors_to_client";
        /// ICMP errors to a VIP about a connection the receiving worker has no entry for (a
        /// restart, an expiry, another box's or worker's connection), delivered to the real server
        /// the service's consistent hash picks for the quoted connection (also counted in
        /// icmp_errors_to_real_server).
        IcmpErrorsStateless = "icmp_errors_stateless";
        /// IP fragments forwarded (the first by its ports, the others after it).
        FragmentsForwarded = "fragments_forwarded";
        /// Later fragments whose first fragment the worker did not see, forwarded to the real
        /// server a `hash = "3-tuple"` service's consistent hash picks for (source, destination,
        /// protocol) (also counted in fragments_forwarded).
        FragmentsStateless = "fragments_stateless";
        /// Replies to an on-link client whose MAC vipd does not know yet, handed to the control
        /// thread so it resolves the client (the reply itself is not sent; the next one is).
        NeighbourResolveRequests = "neighbour_resolve_requests";
    }
    drops {
        /// Dropped: frame shorter than an Ethernet header (or its VLAN tag).
        EthMalformed => DropEthMalformed = "drop_eth_malformed";
        /// Dropped: unicast frame for another MAC address.
        NotOurMac => DropNotOurMac = "drop_not_our_mac";
        /// Dropped: IP packet (other than Neighbour Discovery) in a link-layer multicast or
        /// broadcast frame: never forwarded nor answered (RFC 1812 5.3.4).
        LinkMulticast => DropLinkMulticast = "drop_link_multicast";
        /// Dropped: source MAC multicast, broadcast or zero (invalid in IEEE 802.3).
        SrcMacInvalid => DropSrcMacInvalid = "drop_src_mac_invalid";
        /// Dropped: 802.1ad (QinQ) or stacked VLAN tags (vipd parses one 802.1Q tag).
        VlanTagged => DropVlanTagged = "drop_vlan_tagged";
        /// Dropped: 802.1Q-tagged frame of a VLAN the receiving port does not carry.
        UnknownVlan => DropUnknownVlan = "drop_unknown_vlan";
        /// Dropped: EtherType other than IPv4, IPv6 or ARP.
        UnsupportedEthertype => DropUnsupportedEthertype = "drop_unsupported_ethertype";
        /// Dropped: malformed ARP, or ARP for an address that is not ours.
        ArpIgnored => DropArpIgnored = "drop_arp_ignored";
        /// Dropped: ARP from a multicast sender MAC or a sender address that is not unicast.
        ArpInvalid => DropArpInvalid = "drop_arp_invalid";
        /// Dropped: neighbour solicitation/advertisement failing RFC 4861 validation (hop limit
        /// not 255, code not 0, bad checksum, truncated, bad option length, multicast target).
        NdInvalid => DropNdInvalid = "drop_nd_invalid";
        /// Dropped: valid neighbour discovery message not for us (solicitation for an address
        /// that is neither ours nor a VIP, advertisement not addressed to us).
        NdIgnored => DropNdIgnored = "drop_nd_ignored";
        /// Dropped: malformed IPv4 header (length, version, IHL).
        Ipv4Malformed => DropIpv4Malformed = "drop_ipv4_malformed";
        /// Dropped: IPv4 header checksum wrong.
        Ipv4BadChecksum => DropIpv4BadChecksum = "drop_ipv4_bad_checksum";
        /// Dropped: IP fragment vipd does not forward: not TCP/UDP to a VIP or from a NAT real
        /// server, a first fragment too short for the transport header, an overlapping offset.
        FragmentInvalid => DropFragmentInvalid = "drop_fragment_invalid";
        /// Dropped: a later fragment whose first fragment was not seen (reordered, lost, decided
        /// on another box or before a restart) and that no `hash = "3-tuple"` service can place
        /// (the VIP's only service of its protocol), since it carries no ports.
        FragmentUnknown => DropFragmentUnknown = "drop_fragment_unknown";
        /// Dropped: malformed IPv6 header.
        Ipv6Malformed => DropIpv6Malformed = "drop_ipv6_malformed";
        /// Dropped: IPv6 extension header other than a fragment header (hop-by-hop, routing,
        /// destination options, chains).
        Ipv6ExtHeader => DropIpv6ExtHeader = "drop_ipv6_ext_header";
        /// Dropped: IPv6 packet with an IPv4-mapped address (`::ffff:0:0/96`) as source,
        /// destination or Neighbour Discovery target: never the box's or a neighbour's, it must not
        /// reach IPv4 services, IPv4 flow state or answers for IPv4 addresses.
        Ipv6Mapped => DropIpv6Mapped = "drop_ipv6_mapped";
        /// Dropped: martian source: unspecified, loopback, multicast, broadcast / class E, one of
        /// our own addresses, or equal to the destination (LAND).
        MartianSource => DropMartianSource = "drop_martian_source";
        /// Dropped: destination not unicast (multicast, broadcast / class E, 0/8, loopback,
        /// unspecified) outside Neighbour Discovery: nothing vipd forwards or answers goes there.
        MartianDestination => DropMartianDestination = "drop_martian_destination";
        /// Dropped: arrived with TTL / hop limit 0 (no router forwards such a packet).
        TtlZero => DropTtlZero = "drop_ttl_zero";
        /// Dropped: TCP flag combination no endpoint sends (none, SYN+FIN, SYN+RST, FIN without
        /// ACK, ...; the Linux conntrack table).
        TcpBadFlags => DropTcpBadFlags = "drop_tcp_bad_flags";
        /// Dropped: ICMP/ICMPv6 message with a wrong checksum.
        IcmpBadChecksum => DropIcmpBadChecksum = "drop_icmp_bad_checksum";
        /// Dropped: ICMP error whose quoted packet is truncated or not TCP/UDP.
        IcmpQuoteMalformed => DropIcmpQuoteMalformed = "drop_icmp_quote_malformed";
        /// Dropped: ICMP error quoting a packet of no service or connection vipd knows.
        IcmpErrorNoFlow => DropIcmpErrorNoFlow = "drop_icmp_error_no_flow";
        /// Dropped: TCP/UDP/ICMP header truncated or inconsistent.
        L4Malformed => DropL4Malformed = "drop_l4_malformed";
        /// Dropped: protocol vipd does not balance (not TCP/UDP), to a VIP.
        UnsupportedProtocol => DropUnsupportedProtocol = "drop_unsupported_protocol";
        /// Dropped: TTL/hop limit would reach zero.
        TtlExceeded => DropTtlExceeded = "drop_ttl_exceeded";
        /// Dropped: NAT/DR packet larger than the egress MTU that may be fragmented (IPv4 without
        /// DF: vipd does not fragment), or whose too-big error would report an MTU below the
        /// family minimum.
        TooBig => DropTooBig = "drop_too_big";
        /// Dropped: TUN, the packet plus the outer header exceeds the egress MTU and may be
        /// fragmented (IPv4 without DF: vipd does not fragment), or the inner MTU left is below the
        /// family's minimum (68, IPv6 1280) so no "too big" error can help.
        TunnelTooBig => DropTunnelTooBig = "drop_tunnel_too_big";
        /// Dropped: TUN, no outer source address of the real server's family (the egress port has
        /// no address of that family).
        TunnelNoSource => DropTunnelNoSource = "drop_tunnel_no_source";
        /// Dropped: packet too big for the tunnel whose ICMP error RFC 1812 / RFC 4443 forbid
        /// (source not unicast, invoking packet an ICMP error or a non-initial fragment) or that
        /// has no source address of its family.
        IcmpErrorSuppressed => DropIcmpErrorSuppressed = "drop_icmp_error_suppressed";
        /// Dropped: packet too big for the tunnel while the worker's ICMP error budget
        /// (1000/s, burst 50) was spent.
        IcmpErrorRateLimited => DropIcmpErrorRateLimited = "drop_icmp_error_rate_limited";
        /// Dropped: destination is a VIP but no service listens on that protocol/port.
        NoService => DropNoService = "drop_no_service";
        /// Dropped: the service has no real server with weight > 0.
        NoBackend => DropNoBackend = "drop_no_backend";
        /// Dropped: new connection while every real server that could take it is over its upper
        /// connection threshold (or, for `sh` without `sh-fallback`, the client's own is).
        RealServersOverloaded => DropRealServersOverloaded = "drop_real_servers_overloaded";
        /// Dropped: the flow's real server left the configuration.
        BackendGone => DropBackendGone = "drop_backend_gone";
        /// Dropped: the flow's real server failed its health checks and its service drops the
        /// flows of dead real servers (`dead_flows = "drop"`); the entry is removed too, so the
        /// client's next packet is scheduled to a live real server.
        RealServerDown => DropRealServerDown = "drop_real_server_down";
        /// Dropped: the next hop's MAC address is not resolved yet.
        NeighbourUnresolved => DropNeighbourUnresolved = "drop_neighbour_unresolved";
        /// Dropped: no route (no port on-link and no gateway) to the destination.
        NoRoute => DropNoRoute = "drop_no_route";
        /// Dropped: packet to an address that is neither ours, a VIP, nor a NAT reply.
        NotLocal => DropNotLocal = "drop_not_local";
        /// Dropped: packet from a real server with no flow and no unique service to map it back.
        NatReplyNoFlow => DropNatReplyNoFlow = "drop_nat_reply_no_flow";
        /// Dropped: a new full-NAT connection found every local address and port of its pool
        /// taken towards its real server (established connections are untouched).
        FnatPoolExhausted => DropFnatPoolExhausted = "drop_fnat_pool_exhausted";
        /// Dropped: a packet to a full-NAT real server without a connection entry (a TCP
        /// segment that is not a SYN, a full table, a key clash, a packet away from its owner):
        /// full-NAT cannot go statelessly, only the entry knows the local endpoint.
        FnatNoFlow => DropFnatNoFlow = "drop_fnat_no_flow";
        /// Dropped: a fragment of a full-NAT connection (no reassembly; later fragments carry
        /// no ports to rewrite by).
        FnatFragment => DropFnatFragment = "drop_fnat_fragment";
        /// Dropped: an ICMP error about a full-NAT connection (not relayed in this version).
        FnatIcmpError => DropFnatIcmpError = "drop_fnat_icmp_error";
        /// Dropped: packet to one of our own addresses that vipd does not serve (not echo/ARP).
        LocalUnhandled => DropLocalUnhandled = "drop_local_unhandled";
        /// Dropped: the frame buffer has no headroom left to grow the frame (tunnel header, ICMP
        /// error header).
        NoHeadroom => DropNoHeadroom = "drop_no_headroom";
        /// Dropped: the NIC TX queue was full.
        TxFull => DropTxFull = "drop_tx_full";
        /// Dropped: the ring to another worker or to the control thread was full.
        RingFull => DropRingFull = "drop_ring_full";
        /// Dropped: a frame steered to its connection's owner that the owner would steer again
        /// (the workers disagree on ownership: a bug, counted instead of looping).
        SteeredTwice => DropSteeredTwice = "drop_steered_twice";
        /// Dropped: an answer (neighbour advertisement) longer than the frame it is written into,
        /// and the frame buffer has no tailroom to grow.
        NoTailroom => DropNoTailroom = "drop_no_tailroom";
        /// Dropped: the ring to the exception path (the kernel interfaces) was full.
        KernelRingFull => DropKernelRingFull = "drop_kernel_ring_full";
    }
}

/// Number of counters.
pub const COUNT: usize = Counter::ALL.len();

impl From<DropReason> for Counter {
    #[inline]
    fn from(reason: DropReason) -> Counter {
        reason.counter()
    }
}

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
    pub fn add(&self, c: impl Into<Counter>, n: u64) {
        let v = &self.values[c.into() as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Add one to `c`. Only the owning worker may call this (single writer).
    #[inline]
    pub fn inc(&self, c: impl Into<Counter>) {
        self.add(c, 1);
    }

    /// Current value (any thread).
    pub fn get(&self, c: impl Into<Counter>) -> u64 {
        self.values[c.into() as usize].load(Ordering::Relaxed)
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
    fn drop_reasons_are_the_drop_counters() {
        assert_eq!(DropReason::ALL.len(), COUNT - FIRST_DROP);
        for (i, &r) in DropReason::ALL.iter().enumerate() {
            let c = Counter::from(r);
            assert_eq!(c as usize, FIRST_DROP + i, "{r:?}");
            assert_eq!(r as usize, i, "{r:?}");
            assert!(c.is_drop(), "{r:?}");
            assert_eq!(r.name(), c.name());
            assert_eq!(format!("Drop{r:?}"), format!("{c:?}"));
        }
        for c in &Counter::ALL[..FIRST_DROP] {
            assert!(!c.is_drop(), "{c:?}");
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
