//! Carrying out the pipeline's actions: each frame of a burst to its port's transmit stage,
//! the ring of the control thread, the exception path or the owning worker, or freed. The
//! DPDK worker (`worker.rs`) and the in-memory benchmark (`examples/pipeline_bench.rs`) both
//! run this code over their own [`Outputs`], so the benchmark counts the worker's whole path.

use crate::counters::{Counter, DropReason, WorkerCounters};
use crate::io::PacketBuf;
use crate::pipeline::Action;

/// Frames a transmit stage holds (the worker's burst size).
pub const STAGE_FRAMES: usize = 32;

/// Where a worker's decided frames go.
pub trait Outputs<B: PacketBuf> {
    /// Stage `buf` (`len` bytes) for `port`'s transmit queue, sending the stage first if it is
    /// full; `Err` gives the frame back when there is no such port.
    fn tx(&mut self, port: u16, buf: B, len: usize, counters: &WorkerCounters) -> Result<(), B>;
    /// Free `buf` (with the loop iteration's other drops).
    fn free(&mut self, buf: B);
    /// Hand `buf`, received on `port`, to the control thread; `false` when its ring is full
    /// (the frame was freed).
    fn to_control(&mut self, port: u16, buf: B) -> bool;
    /// Hand `buf` to the exception path (the port's kernel interface); `false` when its ring
    /// is full (freed).
    fn to_kernel(&mut self, port: u16, buf: B) -> bool;
    /// Hand `buf` to worker `worker`'s inbox with its flow hash; `false` when the inbox is
    /// full or there is no such worker (freed).
    fn steer(&mut self, worker: u16, port: u16, buf: B, hash: Option<u64>) -> bool;
}

/// Carry out `actions[i]` for the `i`th frame of `bufs` received on `rx_port`; `hashes[i]`
/// goes with a steered frame (missing entries: none). Counts what cannot be carried out.
#[inline(always)]
pub fn dispatch<B: PacketBuf, O: Outputs<B>>(
    out: &mut O,
    bufs: impl Iterator<Item = B>,
    actions: &[Action],
    hashes: &[Option<u64>],
    rx_port: u16,
    counters: &WorkerCounters,
) {
    for (i, (buf, &action)) in bufs.zip(actions).enumerate() {
        match action {
            Action::Tx(port) => {
                let len = buf.data().len();
                if let Err(buf) = out.tx(port, buf, len, counters) {
                    counters.inc(DropReason::NoRoute);
                    out.free(buf);
                }
            }
            Action::Drop(_) => out.free(buf),
            Action::ToControl => {
                if !out.to_control(rx_port, buf) {
                    counters.inc(DropReason::RingFull);
                }
            }
            Action::ToKernel => {
                if !out.to_kernel(rx_port, buf) {
                    counters.inc(DropReason::KernelRingFull);
                }
            }
            Action::Steer(w) => {
                let hash = hashes.get(i).copied().flatten();
                if !out.steer(w, rx_port, buf, hash) {
                    counters.inc(DropReason::RingFull);
                }
            }
        }
    }
}

/// The byte counts of one port's transmit stage, recorded as frames are staged, so sending
/// counts bytes without walking the frames again.
#[derive(Clone, Debug)]
pub struct StagedBytes {
    lens: [u32; STAGE_FRAMES],
    n: usize,
    total: u64,
}

impl Default for StagedBytes {
    fn default() -> Self {
        StagedBytes {
            lens: [0; STAGE_FRAMES],
            n: 0,
            total: 0,
        }
    }
}

impl StagedBytes {
    /// A frame of `len` bytes was staged.
    #[inline(always)]
    pub fn record(&mut self, len: usize) {
        if let Some(l) = self.lens.get_mut(self.n) {
            *l = len as u32;
            self.n += 1;
            self.total += len as u64;
        }
    }

    /// The driver took the first `sent` of the staged frames and dropped `dropped`: count
    /// them (`tx_packets`, `tx_bytes`, `drop_tx_full`) and start afresh.
    #[inline]
    pub fn sent(&mut self, sent: usize, dropped: usize, counters: &WorkerCounters) {
        let bytes = if sent >= self.n {
            self.total
        } else {
            self.lens[..sent].iter().map(|&l| u64::from(l)).sum()
        };
        if sent > 0 {
            counters.add(Counter::TxPackets, sent as u64);
            counters.add(Counter::TxBytes, bytes);
        }
        if dropped > 0 {
            counters.add(DropReason::TxFull, dropped as u64);
        }
        self.n = 0;
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::VecBuf;

    /// Outputs into vectors, as a test sees them.
    #[derive(Default)]
    struct Seen {
        tx: Vec<(u16, usize)>,
        freed: usize,
        control: usize,
        kernel: usize,
        steered: Vec<(u16, Option<u64>)>,
        ring_full: bool,
    }

    impl Outputs<VecBuf> for Seen {
        fn tx(
            &mut self,
            port: u16,
            b: VecBuf,
            len: usize,
            _: &WorkerCounters,
        ) -> Result<(), VecBuf> {
            if port > 1 {
                return Err(b);
            }
            self.tx.push((port, len));
            Ok(())
        }
        fn free(&mut self, _: VecBuf) {
            self.freed += 1;
        }
        fn to_control(&mut self, _: u16, _: VecBuf) -> bool {
            self.control += 1;
            !self.ring_full
        }
        fn to_kernel(&mut self, _: u16, _: VecBuf) -> bool {
            self.kernel += 1;
            true
        }
        fn steer(&mut self, w: u16, _: u16, _: VecBuf, h: Option<u64>) -> bool {
            self.steered.push((w, h));
            true
        }
    }

    #[test]
    fn every_action_reaches_its_output_and_failures_are_counted() {
        let c = WorkerCounters::default();
        let mut out = Seen {
            ring_full: true,
            ..Seen::default()
        };
        let bufs = (0..6).map(|i| VecBuf::new(&vec![0u8; 60 + i]));
        let actions = [
            Action::Tx(1),
            Action::Tx(7),
            Action::Drop(DropReason::NotLocal),
            Action::ToControl,
            Action::ToKernel,
            Action::Steer(3),
        ];
        let hashes = [None, None, None, None, None, Some(42)];
        dispatch(&mut out, bufs, &actions, &hashes, 0, &c);
        assert_eq!(out.tx, vec![(1, 60)]);
        assert_eq!((out.freed, out.control, out.kernel), (2, 1, 1));
        assert_eq!(out.steered, vec![(3, Some(42))]);
        assert_eq!(c.get(DropReason::NoRoute), 1);
        assert_eq!(c.get(DropReason::RingFull), 1);
    }

    #[test]
    fn bytes_of_what_the_driver_took() {
        let c = WorkerCounters::default();
        let mut s = StagedBytes::default();
        for len in [60, 70, 80] {
            s.record(len);
        }
        s.sent(2, 1, &c);
        assert_eq!(c.get(Counter::TxPackets), 2);
        assert_eq!(c.get(Counter::TxBytes), 130);
        assert_eq!(c.get(DropReason::TxFull), 1);
        s.record(100);
        s.sent(1, 0, &c);
        assert_eq!(c.get(Counter::TxBytes), 230);
    }
}
