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

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::os::raw::c_char;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dpdk_sys as sys;
use thiserror::Error;

use super::PacketBuf;

/// Frames moved per `rx_burst`/`tx_burst` call.
pub const BURST_SIZE: usize = 32;

/// Any NUMA socket (DPDK's `SOCKET_ID_ANY`), for [`Mempool::create`].
pub const SOCKET_ANY: i32 = sys::SOCKET_ID_ANY;

/// DPDK's default mbuf data room: 2048 bytes of data after a [`HEADROOM`] of 128.
pub const DEFAULT_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

/// Headroom DPDK leaves in front of a received or freshly allocated frame.
pub const HEADROOM: u16 = sys::RTE_PKTMBUF_HEADROOM as u16;

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
    fn call(call: impl Into<String>, errno: i32) -> Self {
        DpdkError::Call {
            call: call.into(),
            errno,
            reason: strerror(errno),
        }
    }

    /// A failed call that reported through `rte_errno`.
    fn from_rte_errno(call: impl Into<String>) -> Self {
        Self::call(call, rte_errno())
    }
}

/// `Ok(ret)` for `ret >= 0`, else the error `-ret` (ethdev's convention).
fn check(ret: i32, call: impl FnOnce() -> String) -> Result<i32, DpdkError> {
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

fn cstring(call: &'static str, s: &str) -> Result<CString, DpdkError> {
    CString::new(s).map_err(|_| DpdkError::InvalidArgument {
        call,
        what: format!("{s:?} contains a NUL byte"),
    })
}

/// TSC frequency in Hz (`rte_get_tsc_hz`).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value set by rte_eal_init (0 before); no preconditions.
    unsafe { sys::rte_get_tsc_hz() }
}

/// The TSC now (`rte_get_tsc_cycles`, i.e. rdtsc).
#[inline]
pub fn tsc_cycles() -> u64 {
    // SAFETY: executes rdtsc; no memory access.
    unsafe { sys::vipd_rte_get_tsc_cycles() }
}

/// The calling thread's lcore id; `None` for a thread unknown to the EAL (see
/// [`register_thread`]).
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads a thread-local integer; valid on any thread.
    let id = unsafe { sys::vipd_rte_lcore_id() };
    (id != sys::LCORE_ID_ANY).then_some(id)
}

/// The calling thread's NUMA socket (`rte_socket_id`).
pub fn socket_id() -> u32 {
    // SAFETY: reads a thread-local integer; valid on any thread.
    unsafe { sys::rte_socket_id() }
}

/// A spin-loop hint (`rte_pause`).
#[inline]
pub fn pause() {
    // SAFETY: executes the pause instruction; no memory access.
    unsafe { sys::vipd_rte_pause() }
}

/// Give the calling (non-EAL, e.g. `std::thread`) thread an lcore id (`rte_thread_register`).
/// Worth doing for workers: mempools keep a per-lcore cache only for threads with an lcore id;
/// others go to the shared ring for every mbuf. Does not change the thread's CPU affinity.
pub fn register_thread(_eal: &Eal) -> Result<u32, DpdkError> {
    if let Some(id) = lcore_id() {
        return Ok(id);
    }
    // SAFETY: the EAL is initialised (we hold an `Eal`); the call only touches EAL state.
    let ret = unsafe { sys::rte_thread_register() };
    if ret < 0 {
        return Err(DpdkError::from_rte_errno("rte_thread_register"));
    }
    lcore_id().ok_or_else(|| DpdkError::Call {
        call: "rte_thread_register".into(),
        errno: 0,
        reason: "the thread has no lcore id after it".into(),
    })
}

/// Release the lcore id taken by [`register_thread`] (`rte_thread_unregister`).
pub fn unregister_thread(_eal: &Eal) {
    // SAFETY: the EAL is initialised; a no-op for threads that were not registered.
    unsafe { sys::rte_thread_unregister() }
}

static EAL_INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL (`rte_eal_init`): proof for the calls that need it.
#[derive(Debug)]
pub struct Eal {
    main_lcore: u32,
}

impl Eal {
    /// Initialise the EAL with `args`, the EAL's own arguments (e.g. `["-l", "0",
    /// "--no-huge", "--no-shconf", "--vdev", "net_ring0"]`); a program name is put in front.
    /// Once per process: a second call returns [`DpdkError::AlreadyInitialized`], even after
    /// a failed first one (DPDK cannot retry).
    ///
    /// The calling thread is pinned to the main lcore, and threads it spawns later inherit
    /// that affinity.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(cstring("rte_eal_init", "vipd")?);
        for a in args {
            owned.push(cstring("rte_eal_init", a)?);
        }
        if EAL_INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::AlreadyInitialized);
        }
        // EAL may keep pointers into argv and permutes the array: leak both (once per process).
        let argv: &mut [*mut c_char] = Box::leak(
            owned
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = i32::try_from(argv.len()).map_err(|_| DpdkError::InvalidArgument {
            call: "rte_eal_init",
            what: "too many arguments".into(),
        })?;
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed; this is
        // the only rte_eal_init call of the process (guarded by EAL_INITIALISED).
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_rte_errno(format!(
                "rte_eal_init({})",
                args.join(" ")
            )));
        }
        // SAFETY: the EAL is initialised.
        let main_lcore = unsafe { sys::rte_get_main_lcore() };
        Ok(Eal { main_lcore })
    }

    /// The main lcore (the one `init` ran on).
    pub fn main_lcore(&self) -> u32 {
        self.main_lcore
    }

    /// The EAL's runtime directory (`rte_eal_get_runtime_dir`), e.g.
    /// `/var/run/dpdk/<file-prefix>`. DPDK leaves it behind, even empty, at exit.
    pub fn runtime_dir(&self) -> std::path::PathBuf {
        // SAFETY: returns a pointer to a NUL-terminated string inside EAL's static config.
        let dir = unsafe { CStr::from_ptr(sys::rte_eal_get_runtime_dir()) };
        std::path::PathBuf::from(dir.to_string_lossy().into_owned())
    }

    /// Number of lcores the EAL was given (`rte_lcore_count`).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: the EAL is initialised.
        unsafe { sys::rte_lcore_count() }
    }

    /// Ids of the usable ethdev ports.
    pub fn port_ids(&self) -> Vec<u16> {
        (0..sys::RTE_MAX_ETHPORTS as u16)
            // SAFETY: a bounds-checked lookup in the ethdev table.
            .filter(|&p| unsafe { sys::rte_eth_dev_is_valid_port(p) } == 1)
            .collect()
    }

    /// The port id of device `name` (`rte_eth_dev_get_port_by_name`), e.g. `net_ring0`,
    /// `net_af_packet0` or a PCI address `0000:01:00.0`.
    pub fn port_by_name(&self, name: &str) -> Result<u16, DpdkError> {
        let c = cstring("rte_eth_dev_get_port_by_name", name)?;
        let mut id = 0u16;
        // SAFETY: c is a valid C string, id a valid out pointer.
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if ret < 0 {
            return Err(DpdkError::PortNotFound(name.to_string()));
        }
        Ok(id)
    }

    /// The device name of a port (`rte_eth_dev_get_name_by_port`).
    pub fn port_name(&self, port_id: u16) -> Result<String, DpdkError> {
        let mut buf = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes, as the call requires.
        let ret = unsafe { sys::rte_eth_dev_get_name_by_port(port_id, buf.as_mut_ptr()) };
        check(ret, || {
            format!("rte_eth_dev_get_name_by_port(port {port_id})")
        })?;
        // SAFETY: on success buf holds a NUL-terminated name.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    /// What a port's device can do (`rte_eth_dev_info_get`), before configuring it.
    pub fn port_info(&self, port_id: u16) -> Result<PortInfo, DpdkError> {
        let info = dev_info(port_id)?;
        Ok(PortInfo {
            driver: driver_name(&info),
            max_queues: info.max_rx_queues.min(info.max_tx_queues),
            rss_offloads: info.flow_type_rss_offloads,
            reta_size: info.reta_size,
        })
    }

    /// Create a virtual device after init (`rte_dev_probe`) and return its port id.
    /// `devargs` is what `--vdev` takes: `net_ring1` or `net_af_packet0,iface=veth0`.
    pub fn attach_vdev(&self, devargs: &str) -> Result<u16, DpdkError> {
        let name = devargs.split(',').next().unwrap_or(devargs);
        let c = cstring("rte_dev_probe", devargs)?;
        // SAFETY: c is a valid C string, copied by DPDK.
        let ret = unsafe { sys::rte_dev_probe(c.as_ptr()) };
        check(ret, || format!("rte_dev_probe({devargs})"))?;
        self.port_by_name(name)
    }

    /// `rte_eal_cleanup`: releases EAL resources and unmaps DPDK memory.
    ///
    /// # Safety
    /// No [`Mbuf`], [`MbufBurst`] holding frames, [`Mempool`], [`Port`] or [`PortQueue`] may be
    /// used (or dropped) afterwards, and no other thread may be inside DPDK: all of them point
    /// into the memory this unmaps. Dropping an `Eal` without calling this is safe (the process
    /// exit releases everything).
    pub unsafe fn cleanup(self) -> Result<(), DpdkError> {
        // SAFETY: the caller guarantees nothing uses DPDK memory any more.
        let ret = unsafe { sys::rte_eal_cleanup() };
        check(ret, || "rte_eal_cleanup".to_string()).map(|_| ())
    }
}

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

/// One owned packet mbuf; freed (returned to its pool) on drop. Same layout as
/// `*mut rte_mbuf`.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf {
    ptr: NonNull<sys::rte_mbuf>,
}

// SAFETY: an mbuf is plain memory owned by exactly one Mbuf; freeing it from any thread is
// allowed (the mempool ops are multi-producer safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of a raw mbuf; `None` for NULL.
    ///
    /// # Safety
    /// `m` must be a valid packet mbuf that nobody else owns or frees.
    pub unsafe fn from_raw(m: *mut sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(m).map(|ptr| Mbuf { ptr })
    }

    /// Give up ownership: the caller must free the mbuf (or hand it to DPDK).
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.ptr.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw mbuf, still owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.ptr.as_ptr()
    }

    /// Frame length (all segments).
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: self owns a valid mbuf.
        unsafe { sys::vipd_rte_pktmbuf_pkt_len(self.ptr.as_ptr()) }
    }

    /// Number of segments (1 for every frame vipd's ports receive).
    pub fn nb_segs(&self) -> u16 {
        // SAFETY: self owns a valid mbuf.
        unsafe { sys::vipd_rte_pktmbuf_nb_segs(self.ptr.as_ptr()) }
    }

    /// Bytes free in front of the frame.
    pub fn headroom(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        usize::from(unsafe { sys::vipd_rte_pktmbuf_headroom(self.ptr.as_ptr()) })
    }

    /// Bytes free after the frame (in its last segment).
    pub fn tailroom(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        usize::from(unsafe { sys::vipd_rte_pktmbuf_tailroom(self.ptr.as_ptr()) })
    }

    /// The NIC's RSS hash, if it computed one.
    pub fn rss_hash(&self) -> Option<u32> {
        let mut valid = 0;
        // SAFETY: self owns a valid mbuf; valid is a valid out pointer.
        let h = unsafe { sys::vipd_rte_pktmbuf_rss_hash(self.ptr.as_ptr(), &mut valid) };
        (valid != 0).then_some(h)
    }

    /// Copy a segmented frame into its first segment (`rte_pktmbuf_linearize`); false if it
    /// does not fit.
    pub fn linearize(&mut self) -> bool {
        // SAFETY: self owns a valid mbuf (and its segments).
        unsafe { sys::vipd_rte_pktmbuf_linearize(self.ptr.as_ptr()) == 0 }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf and nobody uses it after this.
        unsafe { sys::vipd_rte_pktmbuf_free(self.ptr.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let mut len = 0u16;
        // SAFETY: self owns a valid mbuf; mtod points at data_len initialised bytes of its
        // first segment (vipd frames have one), borrowed as long as &self.
        unsafe {
            let p = sys::vipd_rte_pktmbuf_data(self.ptr.as_ptr(), &mut len);
            std::slice::from_raw_parts(p.cast::<u8>(), usize::from(len))
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let mut len = 0u16;
        // SAFETY: as in data(); &mut self guarantees exclusive access to the bytes.
        unsafe {
            let p = sys::vipd_rte_pktmbuf_data(self.ptr.as_ptr(), &mut len);
            std::slice::from_raw_parts_mut(p.cast::<u8>(), usize::from(len))
        }
    }

    fn prepend(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else {
            return false;
        };
        // SAFETY: self owns a valid mbuf; DPDK checks the headroom and returns NULL if short.
        !unsafe { sys::vipd_rte_pktmbuf_prepend(self.ptr.as_ptr(), len) }.is_null()
    }

    fn adj(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else {
            return false;
        };
        // SAFETY: self owns a valid mbuf; DPDK checks the length and returns NULL if short.
        !unsafe { sys::vipd_rte_pktmbuf_adj(self.ptr.as_ptr(), len) }.is_null()
    }

    fn trim_to(&mut self, len: usize) -> bool {
        let cur = self.pkt_len() as usize;
        if len > cur {
            return false;
        }
        let Ok(cut) = u16::try_from(cur - len) else {
            return false;
        };
        // SAFETY: self owns a valid mbuf; DPDK checks the length and returns -1 if short.
        unsafe { sys::vipd_rte_pktmbuf_trim(self.ptr.as_ptr(), cut) == 0 }
    }

    fn append(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else {
            return false;
        };
        // SAFETY: self owns a valid mbuf; DPDK checks the tailroom and returns NULL if short.
        !unsafe { sys::vipd_rte_pktmbuf_append(self.ptr.as_ptr(), len) }.is_null()
    }
}

/// Up to [`BURST_SIZE`] owned mbufs in a fixed array: what `rx_burst` fills and `tx_burst`
/// drains, with no allocation. Derefs to `[Mbuf]`; dropping it frees what it holds.
pub struct MbufBurst {
    mbufs: [MaybeUninit<Mbuf>; BURST_SIZE],
    /// `mbufs[..len]` are initialised and owned.
    len: usize,
}

impl Default for MbufBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MbufBurst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbufBurst").field("len", &self.len).finish()
    }
}

impl MbufBurst {
    /// An empty burst.
    pub const fn new() -> Self {
        MbufBurst {
            mbufs: [const { MaybeUninit::uninit() }; BURST_SIZE],
            len: 0,
        }
    }

    /// Free slots.
    pub fn spare(&self) -> usize {
        BURST_SIZE - self.len
    }

    /// True when no slot is free.
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// Add a frame at the end; gives it back if the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST_SIZE {
            return Err(m);
        }
        self.mbufs[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    /// Take the last frame.
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot len was initialised and is now outside the owned prefix.
        Some(unsafe { self.mbufs[self.len].assume_init_read() })
    }

    /// Move every frame out, in order (the burst is empty afterwards; frames the iterator
    /// does not yield are freed when it is dropped).
    pub fn drain(&mut self) -> Drain<'_> {
        let end = self.len;
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end,
        }
    }

    /// Keep the frames for which `keep` returns true (in order); free the others. Returns how
    /// many were freed.
    pub fn retain_mut(&mut self, mut keep: impl FnMut(&mut Mbuf) -> bool) -> usize {
        let len = self.len;
        // Panic safety: while we shuffle, the burst owns nothing; a panic in `keep` leaks.
        self.len = 0;
        let mut kept = 0;
        for i in 0..len {
            // SAFETY: slot i < len is initialised; we move it out exactly once.
            let mut m = unsafe { self.mbufs[i].assume_init_read() };
            if keep(&mut m) {
                self.mbufs[kept].write(m);
                kept += 1;
            }
        }
        self.len = kept;
        len - kept
    }

    /// Free every frame (one `rte_pktmbuf_free_bulk` call).
    pub fn clear(&mut self) {
        let n = self.len;
        if n == 0 {
            return;
        }
        self.len = 0;
        // SAFETY: the first n slots hold owned mbufs (Mbuf is a transparent *mut rte_mbuf);
        // ownership ends here since len is 0.
        unsafe { sys::rte_pktmbuf_free_bulk(self.raw_ptr(), n as u32) }
    }

    fn raw_ptr(&mut self) -> *mut *mut sys::rte_mbuf {
        self.mbufs.as_mut_ptr().cast::<*mut sys::rte_mbuf>()
    }

    fn spare_ptr(&mut self) -> *mut *mut sys::rte_mbuf {
        // SAFETY: len <= BURST_SIZE, so the offset stays within (or one past) the array.
        unsafe { self.raw_ptr().add(self.len) }
    }
}

impl Deref for MbufBurst {
    type Target = [Mbuf];
    fn deref(&self) -> &[Mbuf] {
        // SAFETY: mbufs[..len] are initialised Mbufs; MaybeUninit<Mbuf> has Mbuf's layout.
        unsafe { std::slice::from_raw_parts(self.mbufs.as_ptr().cast::<Mbuf>(), self.len) }
    }
}

impl DerefMut for MbufBurst {
    fn deref_mut(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in deref; &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.mbufs.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }
}

impl Drop for MbufBurst {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Iterator of [`MbufBurst::drain`].
pub struct Drain<'a> {
    burst: &'a mut MbufBurst,
    next: usize,
    end: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        // SAFETY: slots next..end are initialised and owned by the Drain; each is read once.
        let m = unsafe { self.burst.mbufs[self.next].assume_init_read() };
        self.next += 1;
        Some(m)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let n = self.end - self.next;
        if n > 0 {
            // SAFETY: slots next..end are owned mbufs not yet yielded; freed once here.
            unsafe {
                sys::rte_pktmbuf_free_bulk(self.burst.raw_ptr().add(self.next), n as u32);
            }
        }
    }
}

/// How a port is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Rx queues = tx queues = workers.
    pub queues: u16,
    /// Rx descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    /// Tx descriptors per queue (adjusted to the device's limits).
    pub tx_desc: u16,
    /// Ask for RSS (IP, TCP, UDP) when `queues > 1`; used only if the PMD supports it.
    pub rss: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: true,
        }
    }
}

/// A device's capabilities, from [`Eal::port_info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// The PMD's name, e.g. `net_ring`.
    pub driver: String,
    /// Most queue pairs (min of its rx and tx maxima).
    pub max_queues: u16,
    /// RSS hash functions it supports (`flow_type_rss_offloads`; 0: no RSS).
    pub rss_offloads: u64,
    /// Size of its RSS redirection table (0 without RSS).
    pub reta_size: u16,
}

/// Link state (`rte_eth_link_get_nowait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Port counters (`rte_eth_stats_get`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped by the NIC because no rx descriptor was free.
    pub rx_missed: u64,
    /// Erroneous received frames.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

struct PortShared {
    id: u16,
    taken: Box<[AtomicBool]>,
}

/// A configured ethdev port. Control operations (`&self`/`&mut self`) belong to one thread
/// (`Port` is `Send`, not `Sync`); the fast path goes through [`PortQueue`]s.
///
/// Dropping a port stops and closes it, unless queue handles are still alive (then it is
/// left running for them).
pub struct Port {
    shared: Arc<PortShared>,
    queues: u16,
    rx_desc: u16,
    tx_desc: u16,
    rss_hf: u64,
    driver: String,
    started: bool,
    closed: bool,
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.shared.id)
            .field("driver", &self.driver)
            .field("queues", &self.queues)
            .field("rss_hf", &self.rss_hf)
            .field("started", &self.started)
            .finish()
    }
}

impl Port {
    /// Configure port `port_id` with `cfg.queues` rx and tx queues whose rx side allocates
    /// from `pool` (`rte_eth_dev_configure`, `rte_eth_dev_adjust_nb_rx_tx_desc`,
    /// `rte_eth_{rx,tx}_queue_setup`). RSS over IP/TCP/UDP, masked by the device's
    /// `flow_type_rss_offloads`, is enabled only when `queues > 1`, `cfg.rss` and the mask is
    /// not empty: see [`Port::rss_enabled`]. The port is not started.
    ///
    /// Size `pool` for `queues * rx_desc` mbufs on top of those in flight: some PMDs (net_tap)
    /// fill every rx descriptor at start and fail with an empty pool otherwise.
    pub fn configure(
        _eal: &Eal,
        port_id: u16,
        cfg: &PortConfig,
        pool: &Mempool,
    ) -> Result<Port, DpdkError> {
        // SAFETY: a bounds-checked lookup in the ethdev table.
        if unsafe { sys::rte_eth_dev_is_valid_port(port_id) } != 1 {
            return Err(DpdkError::InvalidArgument {
                call: "rte_eth_dev_configure",
                what: format!("port {port_id} does not exist"),
            });
        }
        let info = dev_info(port_id)?;
        let driver = driver_name(&info);
        let max = info.max_rx_queues.min(info.max_tx_queues);
        if cfg.queues == 0 || cfg.queues > max {
            return Err(DpdkError::InvalidArgument {
                call: "rte_eth_dev_configure",
                what: format!(
                    "port {port_id} ({driver}) supports 1..={max} queue pairs, {} asked",
                    cfg.queues
                ),
            });
        }
        let rss_hf = if cfg.queues > 1 && cfg.rss {
            rss_ip_tcp_udp() & info.flow_type_rss_offloads
        } else {
            0
        };
        let mut conf = sys::rte_eth_conf::default();
        if rss_hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        } else {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_NONE;
        }
        let q = cfg.queues;
        // SAFETY: valid port; conf is a fully initialised rte_eth_conf that DPDK copies.
        let ret = unsafe { sys::rte_eth_dev_configure(port_id, q, q, &conf) };
        check(ret, || {
            format!(
                "rte_eth_dev_configure(port {port_id} ({driver}), {q} queues, rss_hf {rss_hf:#x})"
            )
        })?;
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid, configured port; both out pointers are valid.
        let ret =
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut rx_desc, &mut tx_desc) };
        check(ret, || {
            format!("rte_eth_dev_adjust_nb_rx_tx_desc(port {port_id}, {rx_desc}, {tx_desc})")
        })?;
        // SAFETY: valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(port_id) };
        for queue in 0..q {
            // SAFETY: configured port, queue < q; NULL rxconf = the PMD's defaults; the pool
            // outlives the port (pools are never freed).
            let ret = unsafe {
                sys::rte_eth_rx_queue_setup(
                    port_id,
                    queue,
                    rx_desc,
                    socket as u32,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            check(ret, || {
                format!("rte_eth_rx_queue_setup(port {port_id}, queue {queue}, {rx_desc} descriptors, pool {:?})", pool.name)
            })?;
            // SAFETY: configured port, queue < q; NULL txconf = the PMD's defaults.
            let ret = unsafe {
                sys::rte_eth_tx_queue_setup(
                    port_id,
                    queue,
                    tx_desc,
                    socket as u32,
                    std::ptr::null(),
                )
            };
            check(ret, || {
                format!(
                    "rte_eth_tx_queue_setup(port {port_id}, queue {queue}, {tx_desc} descriptors)"
                )
            })?;
        }
        Ok(Port {
            shared: Arc::new(PortShared {
                id: port_id,
                taken: (0..q).map(|_| AtomicBool::new(false)).collect(),
            }),
            queues: q,
            rx_desc,
            tx_desc,
            rss_hf,
            driver,
            started: false,
            closed: false,
            _not_sync: PhantomData,
        })
    }

    /// Port id.
    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// The PMD's name, e.g. `net_ring`.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Rx and tx descriptors per queue, after adjustment to the device.
    pub fn descriptors(&self) -> (u16, u16) {
        (self.rx_desc, self.tx_desc)
    }

    /// Whether RSS spreads flows over the queues.
    pub fn rss_enabled(&self) -> bool {
        self.rss_hf != 0
    }

    /// The RSS hash functions in use (`RTE_ETH_RSS_*` bits; 0 without RSS).
    pub fn rss_hf(&self) -> u64 {
        self.rss_hf
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    fn no_queue_handles(&self) -> Result<(), DpdkError> {
        let count = Arc::strong_count(&self.shared) - 1;
        if count > 0 {
            return Err(DpdkError::QueuesInUse {
                port: self.id(),
                count,
            });
        }
        Ok(())
    }

    /// Start the port (`rte_eth_dev_start`). No queue handle may be alive.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        self.no_queue_handles()?;
        let id = self.id();
        // SAFETY: configured port; no other thread uses its queues (no handle is alive).
        let ret = unsafe { sys::rte_eth_dev_start(id) };
        check(ret, || format!("rte_eth_dev_start(port {id})"))?;
        self.started = true;
        Ok(())
    }

    /// Stop the port (`rte_eth_dev_stop`). No queue handle may be alive.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        self.no_queue_handles()?;
        if !self.started {
            return Ok(());
        }
        let id = self.id();
        // SAFETY: started port; no other thread uses its queues.
        let ret = unsafe { sys::rte_eth_dev_stop(id) };
        check(ret, || format!("rte_eth_dev_stop(port {id})"))?;
        self.started = false;
        Ok(())
    }

    /// Stop and close the port (`rte_eth_dev_close`). No queue handle may be alive.
    pub fn close(mut self) -> Result<(), DpdkError> {
        self.stop()?;
        self.closed = true;
        let id = self.id();
        // SAFETY: stopped port, no queue handles; the port id is not used after this.
        let ret = unsafe { sys::rte_eth_dev_close(id) };
        check(ret, || format!("rte_eth_dev_close(port {id})")).map(|_| ())
    }

    /// The owner handle of queue pair `queue` (rx and tx queue of that number). One handle
    /// per queue at a time; give each worker its own.
    pub fn queue(&self, queue: u16) -> Result<PortQueue, DpdkError> {
        let port = self.id();
        let slot = self.shared.taken.get(usize::from(queue)).ok_or_else(|| {
            DpdkError::InvalidArgument {
                call: "Port::queue",
                what: format!("port {port} has {} queues, not {}", self.queues, queue + 1),
            }
        })?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::QueueTaken { port, queue });
        }
        Ok(PortQueue {
            shared: Arc::clone(&self.shared),
            port,
            queue,
            stats: QueueStats::default(),
        })
    }

    /// The port's MAC address (`rte_eth_macaddr_get`).
    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = sys::rte_ether_addr::default();
        let id = self.id();
        // SAFETY: valid port; addr is a valid out pointer.
        let ret = unsafe { sys::rte_eth_macaddr_get(id, &mut addr) };
        check(ret, || format!("rte_eth_macaddr_get(port {id})"))?;
        Ok(addr.addr_bytes)
    }

    /// Link state without waiting (`rte_eth_link_get_nowait`).
    pub fn link_status(&self) -> Result<LinkStatus, DpdkError> {
        let mut link = sys::rte_eth_link::default();
        let id = self.id();
        // SAFETY: valid port; link is a valid out pointer.
        let ret = unsafe { sys::rte_eth_link_get_nowait(id, &mut link) };
        check(ret, || format!("rte_eth_link_get_nowait(port {id})"))?;
        Ok(LinkStatus {
            up: link.link_status() == sys::RTE_ETH_LINK_UP as u16,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() == sys::RTE_ETH_LINK_FULL_DUPLEX as u16,
        })
    }

    /// Promiscuous mode on or off (`rte_eth_promiscuous_enable/disable`).
    pub fn set_promiscuous(&self, on: bool) -> Result<(), DpdkError> {
        let id = self.id();
        // SAFETY: valid port.
        let ret = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(id)
            } else {
                sys::rte_eth_promiscuous_disable(id)
            }
        };
        check(ret, || {
            format!(
                "rte_eth_promiscuous_{}(port {id})",
                if on { "enable" } else { "disable" }
            )
        })
        .map(|_| ())
    }

    /// Whether promiscuous mode is on (`rte_eth_promiscuous_get`).
    pub fn promiscuous(&self) -> Result<bool, DpdkError> {
        let id = self.id();
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_promiscuous_get(id) };
        check(ret, || format!("rte_eth_promiscuous_get(port {id})")).map(|r| r == 1)
    }

    /// Set the MTU (`rte_eth_dev_set_mtu`).
    pub fn set_mtu(&self, mtu: u16) -> Result<(), DpdkError> {
        let id = self.id();
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_dev_set_mtu(id, mtu) };
        check(ret, || format!("rte_eth_dev_set_mtu(port {id}, {mtu})")).map(|_| ())
    }

    /// Port counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        let id = self.id();
        // SAFETY: valid port; s is a valid out pointer.
        let ret = unsafe { sys::rte_eth_stats_get(id, &mut s) };
        check(ret, || format!("rte_eth_stats_get(port {id})"))?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.closed || Arc::strong_count(&self.shared) > 1 {
            return;
        }
        let id = self.id();
        // SAFETY: no queue handle is alive, so no other thread uses the port; it is not used
        // after this. Errors cannot be reported from drop and are ignored.
        unsafe {
            if self.started {
                sys::rte_eth_dev_stop(id);
            }
            sys::rte_eth_dev_close(id);
        }
    }
}

fn driver_name(info: &sys::rte_eth_dev_info) -> String {
    if info.driver_name.is_null() {
        return String::new();
    }
    // SAFETY: driver_name is a static NUL-terminated string of the PMD.
    unsafe { CStr::from_ptr(info.driver_name) }
        .to_string_lossy()
        .into_owned()
}

fn dev_info(port_id: u16) -> Result<sys::rte_eth_dev_info, DpdkError> {
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: valid port; info is a valid out pointer.
    let ret = unsafe { sys::rte_eth_dev_info_get(port_id, &mut info) };
    check(ret, || format!("rte_eth_dev_info_get(port {port_id})"))?;
    Ok(info)
}

/// `RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP`.
pub fn rss_ip_tcp_udp() -> u64 {
    // SAFETY: the shim functions return constants.
    unsafe {
        sys::vipd_rte_eth_rss_ip() | sys::vipd_rte_eth_rss_tcp() | sys::vipd_rte_eth_rss_udp()
    }
}

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
