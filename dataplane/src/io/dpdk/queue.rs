//! A worker's queue pair on a port: rx and tx bursts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use dpdk_sys as sys;

use super::error::{check, DpdkError};
use super::mbuf::{Mbuf, MbufBurst};
use super::port::PortShared;

/// Per-queue counters kept by a [`PortQueue`] (plain integers: one owner).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames received.
    pub rx: u64,
    /// Frames handed to the driver for transmission.
    pub tx: u64,
    /// Frames freed because the tx queue was full.
    pub tx_dropped: u64,
}

/// What one [`PortQueue::tx_burst`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Frames the driver took.
    pub sent: usize,
    /// Frames freed because the tx queue was full.
    pub dropped: usize,
}

/// Exclusive owner of one rx queue and the tx queue of the same number on a port: a worker's
/// fast path. `Send`, so it can move to its worker thread.
pub struct PortQueue {
    shared: Arc<PortShared>,
    port: u16,
    queue: u16,
    stats: QueueStats,
}

impl std::fmt::Debug for PortQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortQueue")
            .field("port", &self.port)
            .field("queue", &self.queue)
            .field("stats", &self.stats)
            .finish()
    }
}

impl PortQueue {
    /// The handle of a queue whose `taken` flag the caller has just set.
    pub(super) fn new(shared: Arc<PortShared>, port: u16, queue: u16) -> PortQueue {
        PortQueue {
            shared,
            port,
            queue,
            stats: QueueStats::default(),
        }
    }

    /// Port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queue number.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Counters since this handle was taken.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// A file descriptor that polls readable when the rx queue has frames
    /// (`rte_eth_dev_rx_intr_ctl_q_get_fd`), for a port configured with
    /// [`PortConfig::rx_interrupt`](super::PortConfig::rx_interrupt) and started. The PMD owns
    /// it: poll it, never read or close it.
    pub fn rx_wait_fd(&self) -> Result<std::os::fd::RawFd, DpdkError> {
        // SAFETY: a valid, started port and one of its queues; the call only reads its
        // interrupt handle.
        let fd = unsafe { sys::rte_eth_dev_rx_intr_ctl_q_get_fd(self.port, self.queue) };
        check(fd, || {
            format!(
                "rte_eth_dev_rx_intr_ctl_q_get_fd(port {}, queue {})",
                self.port, self.queue
            )
        })
    }

    /// Receive into the free slots of `burst` (`rte_eth_rx_burst`); returns how many came.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut MbufBurst) -> usize {
        let room = burst.spare() as u16;
        if room == 0 {
            return 0;
        }
        // SAFETY: this handle is the only user of the rx queue; the spare slots can take
        // `room` pointers; DPDK writes n <= room valid mbufs, which the burst then owns.
        let n =
            unsafe { sys::vipd_rte_eth_rx_burst(self.port, self.queue, burst.spare_ptr(), room) };
        let n = usize::from(n).min(usize::from(room));
        burst.len += n;
        self.stats.rx += n as u64;
        n
    }

    /// Transmit every frame of `burst` (`rte_eth_tx_burst`): the driver owns what it sent,
    /// the rest is freed and counted. The burst is empty afterwards.
    #[inline]
    pub fn tx_burst(&mut self, burst: &mut MbufBurst) -> TxOutcome {
        let sent = self.tx_raw(burst);
        let dropped = burst.len - sent;
        if dropped > 0 {
            // SAFETY: slots sent..len still hold owned mbufs; freed once, then len = 0.
            unsafe { sys::rte_pktmbuf_free_bulk(burst.raw_ptr().add(sent), dropped as u32) };
        }
        burst.len = 0;
        self.stats.tx_dropped += dropped as u64;
        TxOutcome { sent, dropped }
    }

    /// Transmit what the queue takes and keep the rest in `burst` (moved to its front) for a
    /// retry. Returns how many were sent.
    #[inline]
    pub fn tx_burst_keep(&mut self, burst: &mut MbufBurst) -> usize {
        let sent = self.tx_raw(burst);
        let rest = burst.len - sent;
        if sent > 0 && rest > 0 {
            // SAFETY: moves the `rest` owned mbufs from slots sent.. to 0.. (overlap allowed);
            // the sent slots no longer own anything.
            unsafe {
                let base = burst.mbufs.as_mut_ptr();
                std::ptr::copy(base.add(sent), base, rest);
            }
        }
        burst.len = rest;
        sent
    }

    /// Transmit one frame; gives it back if the queue is full.
    pub fn tx_one(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        let mut raw = m.into_raw();
        // SAFETY: raw is an owned mbuf; if sent, the driver owns it, else we take it back.
        let sent = unsafe { sys::vipd_rte_eth_tx_burst(self.port, self.queue, &mut raw, 1) };
        if sent == 1 {
            self.stats.tx += 1;
            Ok(())
        } else {
            // SAFETY: the driver did not take it: still ours, valid and unique.
            match unsafe { Mbuf::from_raw(raw) } {
                Some(m) => Err(m),
                None => Ok(()),
            }
        }
    }

    /// A transmit burst of no frames: a bond in 802.3ad mode (without dedicated queues) sends
    /// the LACPDUs its state machine queued only from inside a tx burst on the bond, so a
    /// queue with nothing to send still needs one now and then.
    #[inline]
    pub fn tx_empty_burst(&mut self) {
        let mut none: *mut sys::rte_mbuf = std::ptr::null_mut();
        // SAFETY: this handle is the only user of the tx queue; with a count of 0 the driver
        // takes nothing from the (valid, one-slot) array.
        unsafe { sys::vipd_rte_eth_tx_burst(self.port, self.queue, &mut none, 0) };
    }

    /// Hand `burst`'s frames to the driver; returns how many it took (from the front).
    fn tx_raw(&mut self, burst: &mut MbufBurst) -> usize {
        let len = burst.len;
        if len == 0 {
            return 0;
        }
        // SAFETY: this handle is the only user of the tx queue; slots 0..len hold owned
        // mbufs; the driver takes ownership of the first `sent` ones.
        let sent = unsafe {
            sys::vipd_rte_eth_tx_burst(self.port, self.queue, burst.raw_ptr(), len as u16)
        };
        let sent = usize::from(sent).min(len);
        self.stats.tx += sent as u64;
        sent
    }
}

impl Drop for PortQueue {
    fn drop(&mut self) {
        if let Some(slot) = self.shared.taken.get(usize::from(self.queue)) {
            slot.store(false, Ordering::Release);
        }
    }
}
