//! Owned mbufs ([`Mbuf`]) and fixed bursts of them ([`MbufBurst`]): the fast path's frames.

use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::BURST_SIZE;
use crate::io::{PacketBuf, RxChecksum};

/// One owned packet mbuf; freed (returned to its pool) on drop. Same layout as
/// `*mut rte_mbuf`.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf {
    pub(super) ptr: NonNull<sys::rte_mbuf>,
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

    /// The mbuf header, read in place. The fast-path accessors below read its fields from
    /// Rust (bindgen gives `struct rte_mbuf`'s layout from the same headers the C shim is
    /// compiled with) so that they inline: `rte_pktmbuf_mtod` and `rte_pktmbuf_data_len` are
    /// a field addition and a field read, and an out-of-line shim call per access cost 6-8
    /// calls per packet. What writes an mbuf (prepend, adj, append, trim) stays in DPDK's C.
    #[inline(always)]
    fn header(&self) -> &sys::rte_mbuf {
        // SAFETY: self owns a valid mbuf; nothing writes its header while &self is held
        // (every writer takes &mut self).
        unsafe { self.ptr.as_ref() }
    }

    /// Frame length (all segments).
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.header().pkt_len
    }

    /// Number of segments (1 for every frame vipd's ports receive).
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.header().nb_segs
    }

    /// Bytes free in front of the frame (`rte_pktmbuf_headroom`).
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.header().data_off)
    }

    /// Bytes free after the frame in its (only) segment (`rte_pktmbuf_tailroom` of a
    /// single-segment mbuf: `buf_len - data_off - data_len`).
    #[inline]
    pub fn tailroom(&self) -> usize {
        let h = self.header();
        usize::from(h.buf_len).saturating_sub(usize::from(h.data_off) + usize::from(h.data_len))
    }

    /// The offload flags the PMD set on receive (`ol_flags`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.header().ol_flags
    }

    /// The NIC's RSS hash, if it computed one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let h = self.header();
        // SAFETY: `hash` is a union of plain integers: any bit pattern is a valid `rss`.
        let rss = unsafe { h.__bindgen_anon_2.hash.rss };
        (h.ol_flags & u64::from(sys::RTE_MBUF_F_RX_RSS_HASH) != 0).then_some(rss)
    }

    /// Pointer to the first byte of the frame and its length in the first segment
    /// (`rte_pktmbuf_mtod`, `rte_pktmbuf_data_len`).
    #[inline(always)]
    fn frame_ptr_len(&self) -> (*mut u8, usize) {
        let h = self.header();
        // SAFETY: buf_addr + data_off is inside the mbuf's buffer (DPDK keeps data_off <=
        // buf_len), so the offset stays within one allocation.
        let p = unsafe { h.buf_addr.cast::<u8>().add(usize::from(h.data_off)) };
        (p, usize::from(h.data_len))
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
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        match self.ol_flags() & u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_MASK) {
            f if f == u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD) => RxChecksum::Good,
            f if f == u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_BAD) => RxChecksum::Bad,
            // UNKNOWN (not checked) and NONE (header valid, checksum not verified).
            _ => RxChecksum::Unknown,
        }
    }

    #[inline]
    fn data(&self) -> &[u8] {
        let (p, len) = self.frame_ptr_len();
        // SAFETY: self owns a valid mbuf; mtod points at data_len initialised bytes of its
        // first segment (vipd frames have one), borrowed as long as &self.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let (p, len) = self.frame_ptr_len();
        // SAFETY: as in data(); &mut self guarantees exclusive access to the bytes.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
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
    pub(super) mbufs: [MaybeUninit<Mbuf>; BURST_SIZE],
    /// `mbufs[..len]` are initialised and owned.
    pub(super) len: usize,
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

    pub(super) fn raw_ptr(&mut self) -> *mut *mut sys::rte_mbuf {
        self.mbufs.as_mut_ptr().cast::<*mut sys::rte_mbuf>()
    }

    pub(super) fn spare_ptr(&mut self) -> *mut *mut sys::rte_mbuf {
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
