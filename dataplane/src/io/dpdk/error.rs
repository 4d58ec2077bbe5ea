//! Errors of the DPDK layer and the helpers that build them from DPDK's return codes.

use std::ffi::{CStr, CString};

use dpdk_sys as sys;
use thiserror::Error;

/// Errors of the DPDK layer. Each message names the DPDK call and DPDK's reason.
#[derive(Debug, Error)]
pub enum DpdkError {
    /// `rte_eal_init` may run once per process.
    #[error("the EAL is already initialised in this process (rte_eal_init runs once per process)")]
    AlreadyInitialized,
    /// A DPDK call failed; `errno` is the (positive) rte_errno or returned error code.
    #[error("{call} failed: {reason} (errno {errno})")]
    Call {
        /// The call and its main arguments, e.g. `rte_eth_dev_configure(port 0, 2 queues)`.
        call: String,
        /// The error number DPDK reported.
        errno: i32,
        /// `rte_strerror(errno)`.
        reason: String,
    },
    /// An argument we refuse before calling DPDK.
    #[error("{call}: invalid argument: {what}")]
    InvalidArgument {
        /// The call it was meant for.
        call: &'static str,
        /// What is wrong with it.
        what: String,
    },
    /// No ethdev port has this name.
    #[error(
        "no DPDK port named {0:?} (rte_eth_dev_get_port_by_name): check the EAL's --vdev / -a \
         arguments"
    )]
    PortNotFound(String),
    /// A queue handle is already owned by someone else.
    #[error("port {port}: queue {queue} is already taken (one owner per queue)")]
    QueueTaken {
        /// Port id.
        port: u16,
        /// Queue number.
        queue: u16,
    },
    /// Start/stop/close while workers still own queue handles.
    #[error(
        "port {port}: {count} queue handle(s) still alive; drop them (join the workers) before \
         starting, stopping or closing the port"
    )]
    QueuesInUse {
        /// Port id.
        port: u16,
        /// Live queue handles.
        count: usize,
    },
    /// The pool has no free mbuf.
    #[error("mempool {pool:?} is empty: rte_pktmbuf_alloc returned NULL")]
    PoolEmpty {
        /// Pool name.
        pool: String,
    },
    /// A frame larger than an mbuf's room.
    #[error("frame of {len} bytes does not fit in an mbuf with {room} bytes of tailroom")]
    FrameTooLarge {
        /// Frame length.
        len: usize,
        /// Room in the mbuf.
        room: usize,
    },
}

impl DpdkError {
    /// A failed call whose error number is `errno` (positive).
    pub(super) fn call(call: impl Into<String>, errno: i32) -> Self {
        DpdkError::Call {
            call: call.into(),
            errno,
            reason: strerror(errno),
        }
    }

    /// A failed call that reported through `rte_errno`.
    pub(super) fn from_rte_errno(call: impl Into<String>) -> Self {
        Self::call(call, rte_errno())
    }
}

/// `Ok(ret)` for `ret >= 0`, else the error `-ret` (ethdev's convention).
pub(super) fn check(ret: i32, call: impl FnOnce() -> String) -> Result<i32, DpdkError> {
    if ret < 0 {
        Err(DpdkError::call(call(), -ret))
    } else {
        Ok(ret)
    }
}

/// The calling thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; valid on any thread.
    unsafe { sys::vipd_rte_errno() }
}

/// DPDK's text for an error number (`rte_strerror`).
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string
    // that stays valid until the next call on this thread; it is copied at once.
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            format!("error {errno}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

pub(super) fn cstring(call: &'static str, s: &str) -> Result<CString, DpdkError> {
    CString::new(s).map_err(|_| DpdkError::InvalidArgument {
        call,
        what: format!("{s:?} contains a NUL byte"),
    })
}
