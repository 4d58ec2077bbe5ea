//! The EAL (`rte_eal_init`, once per process), lcores, TSC and thread registration.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_sys as sys;

use super::error::{check, cstring, DpdkError};
use super::port::{dev_info, driver_name, LinkStatus, PortInfo, PortStats};

/// A port's link and counters, read without owning the port (made by [`Eal::watch`], so
/// the EAL is initialised).
#[derive(Debug, Clone, Copy)]
pub struct PortWatch {
    id: u16,
}

impl PortWatch {
    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Link state without waiting (`rte_eth_link_get_nowait`).
    pub fn link_status(&self) -> Result<LinkStatus, DpdkError> {
        super::port::link_status(self.id)
    }

    /// Counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        super::port::stats(self.id)
    }
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

    /// A read-only handle on a port vipd does not configure itself (a bond's member, which
    /// the bond configures): its link and counters.
    pub fn watch(&self, port_id: u16) -> Result<PortWatch, DpdkError> {
        // SAFETY: a bounds-checked lookup in the ethdev table.
        if unsafe { sys::rte_eth_dev_is_valid_port(port_id) } != 1 {
            return Err(DpdkError::PortNotFound(format!("port {port_id}")));
        }
        Ok(PortWatch { id: port_id })
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
