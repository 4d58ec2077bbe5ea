//! Packet capture by DPDK's own tools (`dpdk-dumpcap`, `dpdk-pdump`): they start as secondary
//! processes of vipd (same `--file-prefix`), ask it over DPDK's multi-process channel to copy
//! the frames of a port's queues into a ring they own, and write pcapng/pcap. The primary's
//! part is `rte_pdump_init`: it registers the channel's request handler. Nothing runs on the
//! packet path until a capture is enabled; then the copy (and the capture's BPF filter) runs in
//! ethdev's rx/tx callbacks inside the workers' bursts.
//!
//! Only a primary whose memory secondaries can map (hugepages, no `--in-memory`/`--no-shconf`)
//! can serve captures: with `--no-shconf` DPDK has no multi-process channel and
//! `rte_pdump_init` fails.

use super::dpdk::{rte_errno, strerror, DpdkError, Eal};
use dpdk_sys as sys;

/// Captures can attach while this lives (`rte_pdump_init`); dropping it stops serving them
/// (`rte_pdump_uninit`). It borrows the [`Eal`], so it is gone before `Eal::cleanup`.
#[derive(Debug)]
pub struct CaptureServer<'eal> {
    _eal: &'eal Eal,
}

impl<'eal> CaptureServer<'eal> {
    /// Register the capture request handler (`rte_pdump_init`).
    pub fn start(eal: &'eal Eal) -> Result<Self, DpdkError> {
        // SAFETY: the EAL is initialised (we hold an `Eal`); the call registers an IPC action
        // and reserves a memzone for capture statistics, nothing else.
        let ret = unsafe { sys::rte_pdump_init() };
        if ret < 0 {
            let errno = rte_errno();
            return Err(DpdkError::Call {
                call: "rte_pdump_init".into(),
                errno,
                reason: strerror(errno),
            });
        }
        Ok(CaptureServer { _eal: eal })
    }
}

impl Drop for CaptureServer<'_> {
    fn drop(&mut self) {
        // SAFETY: rte_pdump_init succeeded and the EAL is still up (the borrow of `Eal` proves
        // cleanup has not run); the call only unregisters the IPC action.
        unsafe {
            sys::rte_pdump_uninit();
        }
    }
}
