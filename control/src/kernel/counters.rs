//! Counters of the exception path, per kernel interface, both ways. The exception thread
//! writes them (the control thread adds the neighbour answers it could not queue); the API and
//! `/metrics` read them live.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter of one kernel interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelCounter {
    /// Frames handed to the kernel (written to the tap).
    ToKernelPackets,
    /// Their bytes.
    ToKernelBytes,
    /// Frames the kernel sent, queued for a worker to transmit on the port.
    FromKernelPackets,
    /// Their bytes.
    FromKernelBytes,
    /// To the kernel, dropped: the tap did not take it (the kernel's backlog was full).
    DropTapFull,
    /// To the kernel, dropped: longer than the kernel interface's MTU.
    DropTooBigForKernel,
    /// To the kernel, dropped by the control thread: the ring to the exception thread was full
    /// (neighbour answers; the workers count their own as `drop_kernel_ring_full`).
    DropRingFull,
    /// From the kernel, dropped: every worker's inbox was full.
    DropInboxFull,
    /// From the kernel, dropped: longer than the port's MTU, or shorter than an Ethernet
    /// header.
    DropBadLength,
    /// From the kernel, dropped: its source MAC is not the port's (the interface's MAC was
    /// changed, or it was bridged): vipd never puts another station's MAC on the wire.
    DropForeignSource,
    /// From a VLAN's kernel interface, dropped: the frame already carries a VLAN tag (it
    /// would leave with stacked tags).
    DropTagged,
    /// From a VLAN's kernel interface, dropped: no headroom in the buffer for the VLAN's tag.
    DropNoHeadroom,
    /// To a VLAN's kernel interface, dropped: the frame is not tagged with the VLAN's id.
    DropWrongVlan,
}

impl KernelCounter {
    /// Every counter, in exposition order.
    pub const ALL: &'static [KernelCounter] = &[
        KernelCounter::ToKernelPackets,
        KernelCounter::ToKernelBytes,
        KernelCounter::FromKernelPackets,
        KernelCounter::FromKernelBytes,
        KernelCounter::DropTapFull,
        KernelCounter::DropTooBigForKernel,
        KernelCounter::DropRingFull,
        KernelCounter::DropInboxFull,
        KernelCounter::DropBadLength,
        KernelCounter::DropForeignSource,
        KernelCounter::DropTagged,
        KernelCounter::DropNoHeadroom,
        KernelCounter::DropWrongVlan,
    ];

    /// Name in the API (and, as `vipd_kernel_<name>_total`, in `/metrics`).
    pub fn name(self) -> &'static str {
        match self {
            KernelCounter::ToKernelPackets => "to_kernel_packets",
            KernelCounter::ToKernelBytes => "to_kernel_bytes",
            KernelCounter::FromKernelPackets => "from_kernel_packets",
            KernelCounter::FromKernelBytes => "from_kernel_bytes",
            KernelCounter::DropTapFull => "drop_tap_full",
            KernelCounter::DropTooBigForKernel => "drop_too_big_for_kernel",
            KernelCounter::DropRingFull => "drop_ring_full",
            KernelCounter::DropInboxFull => "drop_inbox_full",
            KernelCounter::DropBadLength => "drop_bad_length",
            KernelCounter::DropForeignSource => "drop_foreign_source",
            KernelCounter::DropTagged => "drop_tagged",
            KernelCounter::DropNoHeadroom => "drop_no_headroom",
            KernelCounter::DropWrongVlan => "drop_wrong_vlan",
        }
    }

    /// What it counts, for `/metrics`.
    pub fn help(self) -> &'static str {
        match self {
            KernelCounter::ToKernelPackets => {
                "Frames for the port address handed to the box's kernel (exception path)."
            }
            KernelCounter::ToKernelBytes => "Bytes handed to the box's kernel.",
            KernelCounter::FromKernelPackets => {
                "Frames the box's kernel sent, transmitted on the port by a worker."
            }
            KernelCounter::FromKernelBytes => "Bytes the box's kernel sent.",
            _ => "Exception-path frames dropped, by interface and reason.",
        }
    }

    /// Whether it counts drops.
    pub fn is_drop(self) -> bool {
        self.name().starts_with("drop_")
    }
}

/// The counters of one kernel interface.
#[derive(Debug)]
pub struct InterfaceCounters {
    /// The kernel interface's name.
    pub interface: String,
    /// The port's name.
    pub port: String,
    /// The port's index in the configuration (for a VLAN's interface, the port carrying it).
    pub port_index: u16,
    /// The VLAN's id, for a VLAN's kernel interface.
    pub vlan: Option<u16>,
    values: [AtomicU64; KernelCounter::ALL.len()],
}

impl InterfaceCounters {
    /// Zeroed counters for `interface` of port `port` (configuration index `port_index`).
    pub fn new(interface: &str, port: &str, port_index: u16) -> Self {
        InterfaceCounters {
            interface: interface.to_string(),
            port: port.to_string(),
            port_index,
            vlan: None,
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The same for the kernel interface of VLAN `id` on the port.
    pub fn in_vlan(mut self, id: Option<u16>) -> Self {
        self.vlan = id;
        self
    }

    /// Add `n` to `c`.
    pub fn add(&self, c: KernelCounter, n: u64) {
        self.values[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The value of `c`.
    pub fn get(&self, c: KernelCounter) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }
}

/// The counters of every kernel interface, in port order of the interfaces.
#[derive(Debug, Default)]
pub struct KernelCounters {
    /// One entry per kernel interface.
    pub interfaces: Vec<InterfaceCounters>,
}

impl KernelCounters {
    /// The counters of the kernel interface of configuration port `port` (`vlan`: of that
    /// VLAN on the port), if it has one.
    pub fn of(&self, port: u16, vlan: Option<u16>) -> Option<&InterfaceCounters> {
        self.interfaces
            .iter()
            .find(|i| i.port_index == port && i.vlan == vlan)
    }

    /// The API's view: one object per interface, every counter by name.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.interfaces
                .iter()
                .map(|i| {
                    let mut m = serde_json::Map::new();
                    m.insert("interface".into(), i.interface.clone().into());
                    m.insert("port".into(), i.port.clone().into());
                    m.insert("vlan".into(), i.vlan.into());
                    for &c in KernelCounter::ALL {
                        m.insert(c.name().into(), i.get(c).into());
                    }
                    serde_json::Value::Object(m)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_slot_and_name() {
        for (i, &c) in KernelCounter::ALL.iter().enumerate() {
            assert_eq!(c as usize, i, "{c:?} out of order");
        }
        let mut names: Vec<_> = KernelCounter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KernelCounter::ALL.len());
    }

    #[test]
    fn json_lists_each_interface_with_its_counts() {
        let k = KernelCounters {
            interfaces: vec![
                InterfaceCounters::new("vipd0", "lan", 0),
                InterfaceCounters::new("vipd0.100", "lan", 0).in_vlan(Some(100)),
            ],
        };
        k.interfaces[0].add(KernelCounter::ToKernelPackets, 3);
        k.interfaces[0].add(KernelCounter::DropInboxFull, 1);
        let j = k.to_json();
        assert_eq!(j[0]["interface"], "vipd0");
        assert_eq!(j[0]["to_kernel_packets"], 3);
        assert_eq!(j[0]["drop_inbox_full"], 1);
        assert_eq!(j[0]["from_kernel_packets"], 0);
        assert_eq!(j[0]["vlan"], serde_json::Value::Null);
        assert_eq!(j[1]["vlan"], 100);
        assert_eq!(
            k.of(0, Some(100)).map(|i| i.interface.as_str()),
            Some("vipd0.100")
        );
        assert_eq!(k.of(0, None).map(|i| i.interface.as_str()), Some("vipd0"));
        assert!(k.of(0, Some(200)).is_none());
        assert!(KernelCounter::DropTapFull.is_drop());
        assert!(!KernelCounter::FromKernelBytes.is_drop());
    }
}
