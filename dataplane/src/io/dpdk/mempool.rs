//! Packet mbuf pools (`rte_pktmbuf_pool_create`) and allocation from them.

use std::ptr::NonNull;

use dpdk_sys as sys;

use super::eal::Eal;
use super::error::{cstring, DpdkError};
use super::mbuf::{Mbuf, MbufBurst};
use crate::io::PacketBuf;

/// A pool of packet mbufs (`rte_pktmbuf_pool_create`). Never freed (see the module docs).
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
    data_room: u16,
}

// SAFETY: the pool is a DPDK object in shared memory; its default ops (ring_mp_mc) are safe
// for concurrent get/put from any thread, and the handle itself is immutable.
unsafe impl Send for Mempool {}
// SAFETY: as above: &Mempool only allows thread-safe alloc/count calls.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Create a pool of `n_mbufs` mbufs (best `2^q - 1`) with a per-lcore cache of
    /// `cache_size` and `data_room` bytes per mbuf including the [`HEADROOM`]
    /// ([`DEFAULT_DATA_ROOM`] for 1518-byte frames), on NUMA `socket` ([`SOCKET_ANY`]).
    /// `name` must be unique in the process.
    pub fn create(
        _eal: &Eal,
        name: &str,
        n_mbufs: u32,
        cache_size: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, DpdkError> {
        let c = cstring("rte_pktmbuf_pool_create", name)?;
        // SAFETY: the EAL is initialised; c is a valid C string (copied by DPDK).
        let ptr = unsafe {
            sys::rte_pktmbuf_pool_create(c.as_ptr(), n_mbufs, cache_size, 0, data_room, socket)
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            DpdkError::from_rte_errno(format!(
                "rte_pktmbuf_pool_create({name:?}, {n_mbufs} mbufs, cache {cache_size}, data \
                 room {data_room}, socket {socket})"
            ))
        })?;
        Ok(Mempool {
            ptr,
            name: name.to_string(),
            data_room,
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes per mbuf, headroom included.
    pub fn data_room(&self) -> u16 {
        self.data_room
    }

    /// The raw pool, for DPDK calls this module does not wrap.
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// Free mbufs (`rte_mempool_avail_count`; approximate while other threads use the pool).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs in use (`rte_mempool_in_use_count`).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// One empty mbuf (`rte_pktmbuf_alloc`).
    pub fn alloc(&self) -> Result<Mbuf, DpdkError> {
        // SAFETY: the pool is valid; the returned mbuf (if any) is ours.
        let m = unsafe { sys::vipd_rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        NonNull::new(m)
            .map(|ptr| Mbuf { ptr })
            .ok_or_else(|| DpdkError::PoolEmpty {
                pool: self.name.clone(),
            })
    }

    /// An mbuf holding a copy of `frame` (control-path transmissions: ARP, ICMP errors...).
    pub fn alloc_frame(&self, frame: &[u8]) -> Result<Mbuf, DpdkError> {
        let mut m = self.alloc()?;
        let room = m.tailroom();
        if frame.len() > room || !m.append(frame.len()) {
            return Err(DpdkError::FrameTooLarge {
                len: frame.len(),
                room,
            });
        }
        m.data_mut().copy_from_slice(frame);
        Ok(m)
    }

    /// Fill `burst` up to its capacity with empty mbufs (`rte_pktmbuf_alloc_bulk`): all or
    /// nothing. Returns how many were added.
    pub fn alloc_bulk(&self, burst: &mut MbufBurst) -> Result<usize, DpdkError> {
        let n = burst.spare();
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the spare slots [len, BURST_SIZE) are writable; on success DPDK writes n
        // valid mbuf pointers that we then own (len is raised only then).
        let ret = unsafe {
            sys::vipd_rte_pktmbuf_alloc_bulk(self.ptr.as_ptr(), burst.spare_ptr(), n as u32)
        };
        if ret != 0 {
            return Err(DpdkError::PoolEmpty {
                pool: self.name.clone(),
            });
        }
        burst.len += n;
        Ok(n)
    }
}
