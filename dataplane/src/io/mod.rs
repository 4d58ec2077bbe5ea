//! Packet I/O. The pipeline works on anything that implements [`PacketBuf`]: DPDK mbufs
//! ([`dpdk`]) in the daemon, [`mem::VecBuf`] in tests.

#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(feature = "dpdk")]
pub mod lcore;
pub mod mem;
#[cfg(feature = "dpdk")]
pub mod pdump;

/// A frame buffer with headroom, as an mbuf is. The pipeline rewrites frames in place and may
/// grow them at the front (tunnel encapsulation) or shrink them.
pub trait PacketBuf {
    /// The frame bytes.
    fn data(&self) -> &[u8];
    /// The frame bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grow the frame by `len` bytes at the front; false if the headroom is too small.
    fn prepend(&mut self, len: usize) -> bool;
    /// Remove `len` bytes from the front; false if the frame is shorter.
    fn adj(&mut self, len: usize) -> bool;
    /// Cut the frame to `len` bytes; false if it is shorter.
    fn trim_to(&mut self, len: usize) -> bool;
    /// Grow the frame by `len` bytes at the end; false if the tailroom is too small.
    fn append(&mut self, len: usize) -> bool;
    /// What the NIC found checking the frame's IPv4 header checksum on receive; `Unknown`
    /// (verify in software) unless the port offloads it.
    #[inline]
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        RxChecksum::Unknown
    }
}

/// The NIC's verdict on a received IPv4 header checksum (DPDK's `RTE_MBUF_F_RX_IP_CKSUM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RxChecksum {
    /// Not checked by the NIC: verify it in software.
    #[default]
    Unknown,
    /// Checked and correct.
    Good,
    /// Checked and wrong.
    Bad,
}
