//! Pipeline fixtures, Katran style: {description, input frame, expected action, expected output
//! bytes}. Inputs and expected outputs are written by etherparse (tests/common), which computes
//! every checksum from scratch: an independent check of vipd's in-place incremental rewrites.
//! The table runs in order on one worker, so later rows see the flows earlier rows created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::flow::{FlowKey, FlowTable};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst, process_burst_hashed, Action};

struct Fixture {
    description: &'static str,
    input: Vec<u8>,
    action: Action,
    output: Option<Vec<u8>>,
}

fn run(fixtures: &[Fixture], worker: &mut vipd_dataplane::pipeline::WorkerState) {
    let snap = snapshot();
    for (i, f) in fixtures.iter().enumerate() {
        let mut bufs = [VecBuf::new(&f.input)];
        let mut actions = [Action::Drop(DropReason::EthMalformed)];
        process_burst(&mut bufs, &mut actions, 0, worker, &snap, 1_000 + i as u64);
        assert_eq!(
            actions[0], f.action,
            "fixture {i} `{}`: action",
            f.description
        );
        if let Some(expected) = &f.output {
            assert_eq!(
                bufs[0].data(),
                &expected[..],
                "fixture {i} `{}`: output bytes",
                f.description
            );
        }
    }
}

/// What step 2 must look like: only MACs, destination address/port and TTL differ.
fn to_rs1(mut f: Frame, port: u16) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = RS1_MAC;
    f.dst = v4(RS1_IP);
    f.ttl -= 1;
    match &mut f.l4 {
        L4::Tcp { dport, .. } | L4::Udp { dport, .. } => *dport = port,
    }
    f
}

fn rs1_to_client(l4: L4, payload: &[u8]) -> Frame {
    Frame::new(RS1_MAC, LB_MAC, v4(RS1_IP), v4(CLIENT_IP), l4, payload)
}

/// What step 4 must look like: from the VIP and its port, to the router.
fn from_vip(mut f: Frame, port: u16) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = ROUTER_MAC;
    f.src = v4(VIP);
    f.ttl -= 1;
    match &mut f.l4 {
        L4::Tcp { sport, .. } | L4::Udp { sport, .. } => *sport = port,
    }
    f
}

fn fixture(
    description: &'static str,
    input: Frame,
    action: Action,
    output: Option<Frame>,
) -> Fixture {
    Fixture {
        description,
        input: input.bytes(),
        action,
        output: output.map(|f| f.bytes()),
    }
}

#[test]
fn nat_ipv4_tcp_connection_four_steps() {
    let syn = client_to_vip(tcp(40000, 80, "S"), b"");
    let synack = rs1_to_client(tcp(8080, 40000, "SA"), b"");
    let get = client_to_vip(tcp(40000, 80, "AP"), b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n");
    let resp = rs1_to_client(
        tcp(8080, 40000, "AP"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let fin = client_to_vip(tcp(40000, 80, "AF"), b"");
    let fin_back = rs1_to_client(tcp(8080, 40000, "AF"), b"");
    let mut syn_mss = client_to_vip(tcp(40001, 80, "S"), b"");
    if let L4::Tcp { options, .. } = &mut syn_mss.l4 {
        *options = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 7]; // MSS 1460, NOP, window scale 7
    }
    let fixtures = vec![
        fixture(
            "step 1->2: SYN to VIP:80 goes to RS1:8080",
            syn.clone(),
            Action::Tx(0),
            Some(to_rs1(syn, 8080)),
        ),
        fixture(
            "step 3->4: SYN-ACK from RS1 leaves from VIP:80",
            synack.clone(),
            Action::Tx(0),
            Some(from_vip(synack, 80)),
        ),
        fixture(
            "request with payload follows the flow",
            get.clone(),
            Action::Tx(0),
            Some(to_rs1(get, 8080)),
        ),
        fixture(
            "response with payload",
            resp.clone(),
            Action::Tx(0),
            Some(from_vip(resp, 80)),
        ),
        fixture(
            "client FIN",
            fin.clone(),
            Action::Tx(0),
            Some(to_rs1(fin, 8080)),
        ),
        fixture(
            "server FIN",
            fin_back.clone(),
            Action::Tx(0),
            Some(from_vip(fin_back, 80)),
        ),
        fixture(
            "TCP options are carried unchanged",
            syn_mss.clone(),
            Action::Tx(0),
            Some(to_rs1(syn_mss, 8080)),
        ),
    ];
    let mut w = worker(0, 1);
    run(&fixtures, &mut w);
    assert_eq!(w.counters.get(Counter::Forwarded), 4);
    assert_eq!(w.counters.get(Counter::NatReplies), 3);
    assert_eq!(w.counters.get(Counter::FlowsCreated), 2);
    assert_eq!(
        w.counters.get(Counter::NatRepliesStateless),
        0,
        "replies found their flow"
    );
    assert_eq!(w.counters.total_drops(), 0);
}

#[test]
fn nat_ipv4_udp_and_header_variants() {
    let query = client_to_vip(udp(5000, 53), b"\x12\x34query");
    let answer = rs1_to_client(udp(5353, 5000), b"\x12\x34answer");
    let mut no_csum = client_to_vip(udp(5001, 53), b"x");
    no_csum.l4 = L4::Udp {
        sport: 5001,
        dport: 53,
        zero_checksum: true,
    };
    let mut with_options = client_to_vip(tcp(40100, 80, "S"), b"");
    with_options.ip_options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL: IHL 6
    let mut tagged = client_to_vip(tcp(40101, 80, "S"), b"");
    tagged.vlan = Some(100);
    let fixtures = vec![
        fixture(
            "UDP query to VIP:53 goes to RS1:5353",
            query.clone(),
            Action::Tx(0),
            Some(to_rs1(query, 5353)),
        ),
        fixture(
            "UDP answer leaves from VIP:53",
            answer.clone(),
            Action::Tx(0),
            Some(from_vip(answer, 53)),
        ),
        fixture(
            "UDP without checksum keeps 0",
            no_csum.clone(),
            Action::Tx(0),
            Some(to_rs1(no_csum, 5353)),
        ),
        fixture(
            "IPv4 options kept, checksum right",
            with_options.clone(),
            Action::Tx(0),
            Some(to_rs1(with_options, 8080)),
        ),
        fixture(
            "802.1Q tagged frame of a VLAN the port does not carry dropped",
            tagged,
            Action::Drop(DropReason::UnknownVlan),
            None,
        ),
    ];
    let mut w = worker(0, 1);
    run(&fixtures, &mut w);
    assert_eq!(w.counters.total_drops(), 1);
    assert_eq!(w.counters.get(DropReason::UnknownVlan), 1);
}

#[test]
fn nat66_tcp() {
    let syn = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        tcp(40000, 80, "S"),
        b"",
    );
    let mut out = syn.clone();
    out.src_mac = LB_MAC;
    out.dst_mac = RS1_MAC;
    out.dst = rs1_ip6().into();
    out.ttl -= 1;
    if let L4::Tcp { dport, .. } = &mut out.l4 {
        *dport = 8080;
    }
    let synack = Frame::new(
        RS1_MAC,
        LB_MAC,
        rs1_ip6().into(),
        client_ip6().into(),
        tcp(8080, 40000, "SA"),
        b"",
    );
    let mut back = synack.clone();
    back.src_mac = LB_MAC;
    back.dst_mac = ROUTER_MAC;
    back.src = vip6().into();
    back.ttl -= 1;
    if let L4::Tcp { sport, .. } = &mut back.l4 {
        *sport = 80;
    }
    let fixtures = vec![
        fixture("NAT66 step 1->2", syn, Action::Tx(0), Some(out)),
        fixture("NAT66 step 3->4", synack, Action::Tx(0), Some(back)),
    ];
    let mut w = worker(0, 1);
    run(&fixtures, &mut w);
}

#[test]
fn stateless_reply_without_flow() {
    // The flow entry is gone (e.g. another box handled step 1), yet RS1:8080 serves one
    // service only, so the reply is still rewritten to come from VIP:80.
    let resp = rs1_to_client(tcp(8080, 41000, "A"), b"late");
    let fixtures = vec![fixture(
        "reply with no flow entry",
        resp.clone(),
        Action::Tx(0),
        Some(from_vip(resp, 80)),
    )];
    let mut w = worker(0, 1);
    run(&fixtures, &mut w);
    assert_eq!(w.counters.get(Counter::NatRepliesStateless), 1);
}

fn drop_fixture(description: &'static str, input: Vec<u8>, reason: DropReason) -> Fixture {
    Fixture {
        description,
        input,
        action: Action::Drop(reason),
        output: None,
    }
}

#[test]
fn malformed_and_unroutable_frames_are_counted_drops() {
    let good = client_to_vip(tcp(40000, 80, "S"), b"").bytes();
    let l2 = 14;
    let mut bad_ihl = good.clone();
    bad_ihl[l2] = 0x44;
    let mut huge_ihl = good.clone();
    huge_ihl[l2] = 0x4f;
    huge_ihl.truncate(l2 + 40);
    let mut long_total = good.clone();
    long_total[l2 + 2..l2 + 4].copy_from_slice(&1000u16.to_be_bytes());
    let mut bad_csum = good.clone();
    bad_csum[l2 + 10] ^= 0xff;
    let mut bad_doff = client_to_vip(tcp(40000, 80, "S"), b"0123456789").bytes();
    bad_doff[l2 + 20 + 12] = 0xf0; // 60-byte TCP header in a 30-byte segment
    let mut frag = client_to_vip(tcp(40000, 80, "S"), b"0123456789abcdef");
    frag.dont_fragment = false;
    let mut frag = frag.bytes();
    frag[l2 + 6] = 0x00;
    frag[l2 + 7] = 0x03; // offset 24 bytes: a later fragment whose first was never seen
    let frag = fix_ipv4_checksum(frag, l2);
    let mut ttl1 = client_to_vip(tcp(40000, 80, "S"), b"");
    ttl1.ttl = 1;
    let mut other_mac = client_to_vip(tcp(40000, 80, "S"), b"");
    other_mac.dst_mac = RS2_MAC;
    let fixtures = vec![
        drop_fixture("empty frame", vec![], DropReason::EthMalformed),
        drop_fixture(
            "13-byte frame",
            good[..13].to_vec(),
            DropReason::EthMalformed,
        ),
        drop_fixture(
            "truncated IPv4 header",
            good[..l2 + 10].to_vec(),
            DropReason::Ipv4Malformed,
        ),
        drop_fixture("IHL below 5", bad_ihl, DropReason::Ipv4Malformed),
        drop_fixture("IHL past the buffer", huge_ihl, DropReason::Ipv4Malformed),
        drop_fixture(
            "total length past the buffer",
            long_total,
            DropReason::Ipv4Malformed,
        ),
        drop_fixture(
            "bad IPv4 header checksum",
            bad_csum,
            DropReason::Ipv4BadChecksum,
        ),
        drop_fixture(
            "TCP data offset past the segment",
            bad_doff,
            DropReason::L4Malformed,
        ),
        drop_fixture(
            "truncated TCP header",
            fix_len(good[..l2 + 30].to_vec(), l2),
            DropReason::L4Malformed,
        ),
        drop_fixture(
            "later IPv4 fragment without its first",
            frag,
            DropReason::FragmentUnknown,
        ),
        drop_fixture("TTL 1", ttl1.bytes(), DropReason::TtlExceeded),
        drop_fixture(
            "unicast to another MAC",
            other_mac.bytes(),
            DropReason::NotOurMac,
        ),
        drop_fixture(
            "VIP port without service",
            client_to_vip(tcp(40000, 81, "S"), b"").bytes(),
            DropReason::NoService,
        ),
        drop_fixture(
            "not a VIP, not ours",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                v4(CLIENT_IP),
                v4(RS2_IP),
                tcp(1, 2, "S"),
                b"",
            )
            .bytes(),
            DropReason::NotLocal,
        ),
        drop_fixture(
            "TCP to our own address",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                v4(CLIENT_IP),
                v4(LB_IP),
                tcp(1, 22, "S"),
                b"",
            )
            .bytes(),
            DropReason::LocalUnhandled,
        ),
        drop_fixture(
            "real server MAC not resolved",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                v4(CLIENT_IP),
                v4(VIP_UNRESOLVED),
                tcp(1, 80, "S"),
                b"",
            )
            .bytes(),
            DropReason::NeighbourUnresolved,
        ),
        drop_fixture(
            "unknown EtherType",
            {
                let mut f = good.clone();
                f[12] = 0x88;
                f[13] = 0xcc;
                f
            },
            DropReason::UnsupportedEthertype,
        ),
    ];
    let mut w = worker(0, 1);
    run(&fixtures, &mut w);
    assert_eq!(w.counters.total_drops(), fixtures.len() as u64);
    assert_eq!(w.counters.get(Counter::Forwarded), 0);
}

fn fix_ipv4_checksum(mut f: Vec<u8>, l2: usize) -> Vec<u8> {
    f[l2 + 10] = 0;
    f[l2 + 11] = 0;
    let (h, _) = etherparse::Ipv4Header::from_slice(&f[l2..]).unwrap();
    f[l2 + 10..l2 + 12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    f
}

/// Set the IPv4 total length to the frame's and fix the checksum (a consistent but short packet).
fn fix_len(mut f: Vec<u8>, l2: usize) -> Vec<u8> {
    let len = (f.len() - l2) as u16;
    f[l2 + 2..l2 + 4].copy_from_slice(&len.to_be_bytes());
    fix_ipv4_checksum(f, l2)
}

#[test]
fn arp_and_echo_for_vip_and_port_address() {
    // Who has VIP? Tell 10.0.0.1 — literal bytes (etherparse has no ARP writer).
    let mut req = Vec::new();
    req.extend_from_slice(&[0xff; 6]);
    req.extend_from_slice(&ROUTER_MAC);
    req.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    req.extend_from_slice(&ROUTER_MAC);
    req.extend_from_slice(&ROUTER_IP.octets());
    req.extend_from_slice(&[0; 6]);
    req.extend_from_slice(&VIP.octets());
    let mut rep = Vec::new();
    rep.extend_from_slice(&ROUTER_MAC);
    rep.extend_from_slice(&LB_MAC);
    rep.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    rep.extend_from_slice(&LB_MAC);
    rep.extend_from_slice(&VIP.octets());
    rep.extend_from_slice(&ROUTER_MAC);
    rep.extend_from_slice(&ROUTER_IP.octets());
    let mut req_other = req.clone();
    req_other[38..42].copy_from_slice(&RS2_IP.octets());

    // Echo request to the port address, built with etherparse; the reply is checked by
    // parsing it back with etherparse.
    let echo = etherparse::PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
        .ipv4(CLIENT_IP.octets(), LB_IP.octets(), 64)
        .icmpv4_echo_request(7, 1);
    let mut echo_bytes = Vec::new();
    echo.write(&mut echo_bytes, b"ping").unwrap();

    let snap = snapshot();
    let mut w = worker(0, 1);
    let mut bufs = [
        VecBuf::new(&req),
        VecBuf::new(&req_other),
        VecBuf::new(&echo_bytes),
    ];
    let mut actions = [Action::ToControl; 3];
    process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1);
    assert_eq!(
        actions,
        [
            Action::Tx(0),
            Action::Drop(DropReason::ArpIgnored),
            Action::Tx(0)
        ]
    );
    assert_eq!(bufs[0].data(), &rep[..]);
    let reply = etherparse::SlicedPacket::from_ethernet(bufs[2].data()).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = reply.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip.header().source_addr(), LB_IP);
    assert_eq!(ip.header().destination_addr(), CLIENT_IP);
    let h = ip.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum);
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = reply.transport else {
        panic!("not ICMP")
    };
    assert!(
        matches!(icmp.icmp_type(), etherparse::Icmpv4Type::EchoReply(e) if e.id == 7 && e.seq == 1)
    );
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
    assert_eq!(w.counters.get(Counter::ArpReplies), 1);
    assert_eq!(w.counters.get(Counter::EchoReplies), 1);
}

#[test]
fn nat_replies_are_steered_to_the_owning_worker() {
    // With two workers, both directions of a connection go to the worker chosen by the client
    // endpoint; the owner rewrites them, whichever worker received them.
    let snap = snapshot();
    let mut workers = [worker(0, 2), worker(1, 2)];
    let syn = client_to_vip(tcp(40000, 80, "S"), b"");
    let synack = rs1_to_client(tcp(8080, 40000, "SA"), b"");
    let owner = workers[0].owner_of(&vipd_dataplane::flow::key::to_mapped(v4(CLIENT_IP)), 40000);
    let other = 1 - owner;
    // The flow table hash of each packet's own key, handed from the receiving worker to the owner.
    let tcp_key =
        |src, dst, sport, dport| FlowTable::hash(&FlowKey::v4(src, dst, sport, dport, 6)).raw();
    for (frame, expected, hash) in [
        (
            syn.clone(),
            to_rs1(syn, 8080),
            tcp_key(CLIENT_IP, VIP, 40000, 80),
        ),
        (
            synack.clone(),
            from_vip(synack, 80),
            tcp_key(RS1_IP, CLIENT_IP, 8080, 40000),
        ),
    ] {
        let mut bufs = [VecBuf::new(&frame.bytes())];
        let mut actions = [Action::ToControl];
        let mut hashes = [None];
        process_burst_hashed(
            &mut bufs,
            &mut actions,
            &mut hashes,
            0,
            &mut workers[usize::from(other)],
            &snap,
            5,
        );
        assert_eq!(actions[0], Action::Steer(owner));
        assert_eq!(hashes[0], Some(hash));
        let a = vipd_dataplane::pipeline::process_steered(
            &mut bufs[0],
            hashes[0],
            0,
            &mut workers[usize::from(owner)],
            &snap,
            5,
        );
        assert_eq!(a, Action::Tx(0));
        assert_eq!(bufs[0].data(), &expected.bytes()[..]);
    }
    assert_eq!(
        workers[usize::from(owner)]
            .counters
            .get(Counter::NatRepliesStateless),
        0
    );
    assert_eq!(
        workers[usize::from(other)].counters.get(Counter::Steered),
        2
    );
}
