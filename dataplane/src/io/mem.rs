//! In-memory frames for tests and benchmarks of the pure packet core.

use super::{PacketBuf, RxChecksum};

/// Headroom kept in front of a [`VecBuf`], the same as DPDK's default `RTE_PKTMBUF_HEADROOM`.
pub const HEADROOM: usize = 128;

/// A frame in a `Vec` with headroom and tailroom, mirroring an mbuf's layout.
///
/// `start <= end <= storage.len()` always (every method keeps it), so the frame is read
/// as an mbuf's is, a pointer and a length without bounds checks: the pipeline benchmark
/// then counts the pipeline's instructions, not the stand-in's.
#[derive(Clone, Debug)]
pub struct VecBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
    rx_ipv4_checksum: RxChecksum,
}

impl VecBuf {
    /// A buffer holding `frame` with [`HEADROOM`] in front and room for a full-size frame after.
    pub fn new(frame: &[u8]) -> Self {
        let mut storage = vec![0u8; HEADROOM + frame.len().max(2048)];
        storage[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        VecBuf {
            storage,
            start: HEADROOM,
            end: HEADROOM + frame.len(),
            rx_ipv4_checksum: RxChecksum::Unknown,
        }
    }

    /// Pretend a NIC checked the IPv4 header checksum on receive (tests and benchmarks of the
    /// offload path).
    pub fn set_rx_ipv4_checksum(&mut self, verdict: RxChecksum) {
        self.rx_ipv4_checksum = verdict;
    }
}

/// A boxed buffer is a buffer: moving it moves a pointer, as moving an mbuf handle does (the
/// in-memory benchmark's frames travel so through dispatch and transmit).
impl<T: PacketBuf> PacketBuf for Box<T> {
    #[inline]
    fn data(&self) -> &[u8] {
        (**self).data()
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        (**self).data_mut()
    }
    #[inline]
    fn prepend(&mut self, len: usize) -> bool {
        (**self).prepend(len)
    }
    #[inline]
    fn adj(&mut self, len: usize) -> bool {
        (**self).adj(len)
    }
    #[inline]
    fn trim_to(&mut self, len: usize) -> bool {
        (**self).trim_to(len)
    }
    #[inline]
    fn append(&mut self, len: usize) -> bool {
        (**self).append(len)
    }
    #[inline]
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        (**self).rx_ipv4_checksum()
    }
}

impl PacketBuf for VecBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: `start <= end <= storage.len()` (the type's invariant) bounds the range.
        unsafe { self.storage.get_unchecked(self.start..self.end) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`.
        unsafe { self.storage.get_unchecked_mut(self.start..self.end) }
    }

    #[inline]
    fn prepend(&mut self, len: usize) -> bool {
        if len > self.start {
            return false;
        }
        self.start -= len;
        true
    }

    #[inline]
    fn adj(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.start += len;
        true
    }

    #[inline]
    fn trim_to(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.end = self.start + len;
        true
    }

    #[inline]
    fn append(&mut self, len: usize) -> bool {
        match self.end.checked_add(len) {
            Some(end) if end <= self.storage.len() => {
                self.end = end;
                true
            }
            _ => false,
        }
    }

    #[inline]
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        self.rx_ipv4_checksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_adj_trim_append() {
        let mut b = VecBuf::new(&[1, 2, 3, 4]);
        assert!(b.prepend(2));
        assert_eq!(b.data().len(), 6);
        assert!(b.adj(2));
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        assert!(b.trim_to(2));
        assert_eq!(b.data(), &[1, 2]);
        assert!(!b.adj(3));
        assert!(!b.prepend(HEADROOM + 1));
        assert!(b.append(2));
        assert_eq!(b.data().len(), 4);
        assert!(!b.append(usize::MAX));
        assert!(!b.append(4096));
        assert_eq!(b.data().len(), 4);
    }
}
