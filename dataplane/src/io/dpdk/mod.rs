//! DPDK ports and mbufs: the only module of vipd that touches DPDK memory.
//!
//! Ownership, stated once:
//! - [`Eal`] proves the EAL is initialised (once per process). It is not cleaned up on drop:
//!   [`Eal::cleanup`] is `unsafe` because it unmaps the memory every mbuf lives in.
//! - [`Mempool`]s are never freed: a NIC queue may hold their mbufs until the process ends.
//! - [`Mbuf`] owns one mbuf and frees it on drop. [`MbufBurst`] owns up to [`BURST_SIZE`]
//!   of them in a fixed array (no allocation per packet).
//! - [`PortQueue::tx_burst`] takes the frames it is given: the driver owns what it sent,
//!   what it could not send is freed here and counted.
//! - A [`Port`] is configured, started and stopped by one (control) thread; each worker owns
//!   one [`PortQueue`] (an rx and a tx queue with the same number). The port cannot be
//!   started, stopped or closed while a queue handle is alive.
//!
//! Frames are single-segment: ports are configured without scatter, so an mbuf's data is one
//! slice (make the pool's data room hold the largest frame, e.g. [`DEFAULT_DATA_ROOM`]).

mod bond;
mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;
mod queue;

use dpdk_sys as sys;

pub use bond::{LacpMember, LacpSelection, LacpState};
pub use eal::{
    lcore_id, pause, register_thread, socket_id, tsc_cycles, tsc_hz, unregister_thread, Eal,
    PortWatch,
};
pub use error::{rte_errno, strerror, DpdkError};
pub use mbuf::{Drain, Mbuf, MbufBurst};
pub use mempool::Mempool;
pub use port::{rss_ip_tcp_udp, LinkStatus, Port, PortConfig, PortInfo, PortStats};
pub use queue::{PortQueue, QueueStats, TxOutcome};

/// Frames moved per `rx_burst`/`tx_burst` call.
pub const BURST_SIZE: usize = 32;

/// Any NUMA socket (DPDK's `SOCKET_ID_ANY`), for [`Mempool::create`].
pub const SOCKET_ANY: i32 = sys::SOCKET_ID_ANY;

/// DPDK's default mbuf data room: 2048 bytes of data after a [`HEADROOM`] of 128.
pub const DEFAULT_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

/// Headroom DPDK leaves in front of a received or freshly allocated frame.
pub const HEADROOM: u16 = sys::RTE_PKTMBUF_HEADROOM as u16;
