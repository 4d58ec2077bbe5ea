//! The NIC's IPv4 checksum verdict (RX checksum offload) replaces the software check: a frame
//! the NIC found good is not summed again, one it found bad is dropped whatever its bytes say,
//! and without a verdict the software check still catches a bad header. Frames are written by
//! etherparse (tests/common).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use std::net::IpAddr;
use vipd_dataplane::counters::DropReason;
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::RxChecksum;
use vipd_dataplane::pipeline::{process_burst, Action};

fn verdict(frame: &[u8], nic: RxChecksum) -> Action {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let mut bufs = [VecBuf::new(frame)];
    bufs[0].set_rx_ipv4_checksum(nic);
    let mut actions = [Action::Drop(DropReason::EthMalformed)];
    process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1_000);
    actions[0]
}

#[test]
fn nic_checksum_verdict_is_trusted_and_software_is_the_fallback() {
    let good = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        IpAddr::V4(CLIENT_IP),
        IpAddr::V4(VIP),
        tcp(40000, 80, "S"),
        b"",
    )
    .bytes();
    let mut bad = good.clone();
    bad[14 + 10] ^= 0x5a; // corrupt the IPv4 header checksum
    let forwarded = verdict(&good, RxChecksum::Unknown);
    assert!(
        matches!(forwarded, Action::Tx(_)),
        "a good frame is forwarded: {forwarded:?}"
    );
    assert_eq!(verdict(&good, RxChecksum::Good), forwarded);
    assert_eq!(
        verdict(&bad, RxChecksum::Unknown),
        Action::Drop(DropReason::Ipv4BadChecksum),
        "software check"
    );
    assert_eq!(
        verdict(&good, RxChecksum::Bad),
        Action::Drop(DropReason::Ipv4BadChecksum),
        "the NIC said bad"
    );
    // Trusting the NIC means not summing again: the corrupted frame passes when the NIC vouched
    // for it (in reality the NIC saw the frame before any corruption could happen).
    assert!(matches!(verdict(&bad, RxChecksum::Good), Action::Tx(_)));
}
