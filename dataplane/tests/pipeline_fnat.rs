//! Full-NAT through the whole pipeline: both directions of a connection rewritten at both
//! ends (expected bytes written by etherparse, checksums from scratch), the local endpoint
//! chosen from the service's pool on the worker that owns the connection, pool exhaustion
//! counted without touching established connections, and what full-NAT refuses to do
//! without an entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{SlicedPacket, TransportSlice};
use std::net::{IpAddr, Ipv4Addr};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::flow::key::to_mapped;
use vipd_dataplane::pipeline::{Action, WorkerState};
use vipd_dataplane::snapshot::{BackendSpec, FwdMode, LocalPool, ServiceSpec, Snapshot};

const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const PORT_MIN: u16 = 40000;

/// VIP:80/tcp -> RS1:8080 in full-NAT, local pool 10.0.0.100:40000..40000+ports-1.
fn fnat_snapshot(ports: u16) -> Snapshot {
    snapshot_of(&[ServiceSpec {
        vip: v4(VIP),
        proto: 6,
        port: 80,
        backends: vec![BackendSpec {
            mode: FwdMode::Fnat,
            ..nat_rs(1, v4(RS1_IP), 8080)
        }],
        local_pool: LocalPool {
            addrs: vec![to_mapped(v4(LOCAL))],
            port_min: PORT_MIN,
            port_max: PORT_MIN + ports - 1,
        },
        ..Default::default()
    }])
}

/// The source port of an IPv4 TCP frame, read by etherparse.
fn src_port(frame: &[u8]) -> u16 {
    match SlicedPacket::from_ethernet(frame).unwrap().transport {
        Some(TransportSlice::Tcp(t)) => t.source_port(),
        other => panic!("not TCP: {other:?}"),
    }
}

/// Step 2 as it must look: from the local endpoint to RS1:8080, TTL one less.
fn to_rs1(mut f: Frame, local_port: u16) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = RS1_MAC;
    f.src = v4(LOCAL);
    f.dst = v4(RS1_IP);
    f.ttl -= 1;
    if let L4::Tcp { sport, dport, .. } = &mut f.l4 {
        (*sport, *dport) = (local_port, 8080);
    }
    f
}

fn rs1_to_local(local_port: u16, flags: &'static str, payload: &[u8]) -> Frame {
    Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(LOCAL),
        tcp(8080, local_port, flags),
        payload,
    )
}

/// Step 4 as it must look: from VIP:80 to the client, through the router.
fn to_client(mut f: Frame, client_port: u16) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = ROUTER_MAC;
    f.src = v4(VIP);
    f.dst = v4(CLIENT_IP);
    f.ttl -= 1;
    if let L4::Tcp { sport, dport, .. } = &mut f.l4 {
        (*sport, *dport) = (80, client_port);
    }
    f
}

/// A SYN from `client_port` through `w`: the local port it was given.
fn open(w: &mut WorkerState, snap: &Snapshot, client_port: u16, now: u64) -> u16 {
    let syn = client_to_vip(tcp(client_port, 80, "S"), b"");
    let (action, out) = run1(w, snap, &syn.bytes(), now);
    assert_eq!(action, Action::Tx(0), "SYN from {client_port}");
    let local_port = src_port(&out);
    assert_eq!(
        out,
        to_rs1(syn, local_port).bytes(),
        "SYN from {client_port}"
    );
    local_port
}

#[test]
fn both_directions_are_rewritten_at_both_ends() {
    let snap = fnat_snapshot(64);
    let mut w = worker(0, 1);
    for fast_path in [true, false] {
        w.fast_path = fast_path;
        let cport = if fast_path { 5000 } else { 5001 };
        let lport = open(&mut w, &snap, cport, 10);
        assert!((PORT_MIN..PORT_MIN + 64).contains(&lport));
        let synack = rs1_to_local(lport, "SA", b"");
        let (a, out) = run1(&mut w, &snap, &synack.bytes(), 11);
        assert_eq!((a, out), (Action::Tx(0), to_client(synack, cport).bytes()));
        let get = client_to_vip(tcp(cport, 80, "AP"), b"GET / HTTP/1.0\r\n\r\n");
        let (a, out) = run1(&mut w, &snap, &get.bytes(), 12);
        assert_eq!((a, out), (Action::Tx(0), to_rs1(get, lport).bytes()));
        let resp = rs1_to_local(lport, "AP", b"HTTP/1.0 200 OK\r\n\r\nhello");
        let (a, out) = run1(&mut w, &snap, &resp.bytes(), 13);
        assert_eq!((a, out), (Action::Tx(0), to_client(resp, cport).bytes()));
    }
    let c = &w.counters;
    assert_eq!(c.get(Counter::Forwarded), 4);
    assert_eq!(c.get(Counter::NatReplies), 4);
    assert_eq!(c.get(Counter::FlowsCreated), 2);
    // The listing shows both ends: the client's key and the local endpoint's reply key.
    let flows: Vec<_> = w.flows.iter(14).collect();
    assert_eq!(flows.len(), 2);
    for f in flows {
        let reply = f.reply.expect("a full-NAT connection has a reply key");
        assert_eq!(f.key.src_ip(), IpAddr::V4(CLIENT_IP));
        assert_eq!(reply.dst_ip(), IpAddr::V4(LOCAL));
        assert_eq!(reply.src_ip(), IpAddr::V4(RS1_IP));
    }
}

#[test]
fn exhaustion_is_counted_and_spares_established_connections() {
    let snap = fnat_snapshot(4);
    let mut w = worker(0, 1);
    let lports: Vec<u16> = (0..4).map(|i| open(&mut w, &snap, 6000 + i, 10)).collect();
    let mut sorted = lports.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![40000, 40001, 40002, 40003],
        "each local port once"
    );
    for i in 0..10 {
        let syn = client_to_vip(tcp(7000 + i, 80, "S"), b"");
        let (a, _) = run1(&mut w, &snap, &syn.bytes(), 20);
        assert_eq!(a, Action::Drop(DropReason::FnatPoolExhausted));
    }
    assert_eq!(w.counters.get(DropReason::FnatPoolExhausted), 10);
    // Every established connection still goes both ways, to its own local port.
    for (i, &lport) in lports.iter().enumerate() {
        let cport = 6000 + i as u16;
        let data = client_to_vip(tcp(cport, 80, "A"), b"x");
        let (a, out) = run1(&mut w, &snap, &data.bytes(), 21);
        assert_eq!((a, out), (Action::Tx(0), to_rs1(data, lport).bytes()));
        let back = rs1_to_local(lport, "A", b"y");
        let (a, out) = run1(&mut w, &snap, &back.bytes(), 22);
        assert_eq!((a, out), (Action::Tx(0), to_client(back, cport).bytes()));
    }
    // Once a connection has expired its local port is free again.
    let far = 10_000_000;
    let port = open(&mut w, &snap, 8000, far);
    assert!(lports.contains(&port));
}

#[test]
fn the_local_port_is_owned_by_the_worker_that_owns_the_connection() {
    let snap = fnat_snapshot(256);
    let mut workers = [worker(0, 2), worker(1, 2)];
    let client = to_mapped(v4(CLIENT_IP));
    for cport in 9000..9040u16 {
        let owner = workers[0].owner_of(&client, cport);
        let w = &mut workers[usize::from(owner)];
        let lport = open(w, &snap, cport, 10);
        assert_eq!(
            w.owner_of(&to_mapped(v4(LOCAL)), lport),
            owner,
            "the reply to {LOCAL}:{lport} is steered to the connection's owner"
        );
        // Received by the other worker, the reply is steered to the owner.
        let other = &mut workers[usize::from(1 - owner)];
        let (a, _) = run1(other, &snap, &rs1_to_local(lport, "SA", b"").bytes(), 11);
        assert_eq!(a, Action::Steer(owner));
    }
}

#[test]
fn without_an_entry_nothing_is_full_natted() {
    let snap = fnat_snapshot(64);
    let mut w = worker(0, 1);
    let (a, _) = run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(5000, 80, "A"), b"x").bytes(),
        1,
    );
    assert_eq!(a, Action::Drop(DropReason::FnatNoFlow));
    let (a, _) = run1(&mut w, &snap, &rs1_to_local(40000, "A", b"y").bytes(), 2);
    assert_eq!(a, Action::Drop(DropReason::NatReplyNoFlow));
}

#[test]
fn the_local_address_is_answered_to_arp() {
    let snap = fnat_snapshot(64);
    let mut w = worker(0, 1);
    let req = arp_frame(1, RS1_MAC, RS1_IP, LOCAL);
    let (a, out) = run1(&mut w, &snap, &req, 1);
    assert_eq!(a, Action::Tx(0));
    assert_eq!(&out[22..28], &LB_MAC, "sender MAC: ours");
    assert_eq!(
        &out[28..32],
        &LOCAL.octets(),
        "sender address: the local one"
    );
}
