//! Memory of the flow table: each array is its own anonymous mapping, asked for on huge
//! pages, and left untouched until used.
//!
//! Why: a table of a million connections is ~124 MB visited in random order. On 4 KiB pages
//! that is ~30,000 pages, far more than a core's second-level TLB holds (1,500-2,000
//! entries), so nearly every lookup adds a page walk to its cache misses; on 2 MiB pages it
//! is ~60 pages, which the TLB holds whole. And a mapping nobody has written is backed by no
//! memory yet: its pages come from the NUMA node of the core that first writes them. The
//! daemon builds tables on the control thread and hands them to the workers; each worker
//! [`prefault`](ZeroedSlice::prefault)s its own table on its own core before it polls, so
//! the memory is local to that core (first-touch placement).
//!
//! Two kinds of huge pages:
//! - [`Pages::HugeTlb`]: `MAP_HUGETLB` from the reserved pool (`vm.nr_hugepages`), the same
//!   pool DPDK uses: reserved at `mmap` (it fails rather than faulting later), and it may take
//!   pages DPDK wanted, so only on request; it falls back to transparent huge pages.
//! - [`Pages::Transparent`] (the default): an ordinary mapping, 2 MiB aligned, with
//!   `madvise(MADV_HUGEPAGE)`, which the kernel honours in both `always` and `madvise` THP
//!   modes; with THP `never` it is ordinary pages.
//!
//! Arrays under 2 MiB (tests, tiny tables) are ordinary mappings.
//!
//! Written by hand: no crate here maps zeroed, typed, huge-page memory with a NUMA-aware
//! first touch; it is `mmap`, `madvise` and `munmap`.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A huge page (x86-64 and arm64 with 4 KiB base pages).
pub const HUGE_PAGE: usize = 2 << 20;
const SMALL_PAGE: usize = 4096;

/// Types for which all-zero bytes are a valid value: what a fresh anonymous mapping holds.
///
/// # Safety
/// Every field (recursively) must accept the all-zero bit pattern: integers, arrays of them,
/// `#[repr(u8)]` enums with a zero discriminant. No references, no `NonNull`, no `bool` with
/// another meaning than `false`.
pub unsafe trait Zeroable: Copy {}

// SAFETY: integers are valid for every bit pattern.
unsafe impl Zeroable for u32 {}
// SAFETY: as above.
unsafe impl Zeroable for u64 {}

/// Which pages an array asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pages {
    /// Ordinary pages.
    Small,
    /// Transparent huge pages (`madvise(MADV_HUGEPAGE)`).
    #[default]
    Transparent,
    /// Reserved huge pages (`MAP_HUGETLB`), else transparent ones.
    HugeTlb,
}

/// What an array got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Ordinary 4 KiB pages.
    Small,
    /// An ordinary mapping the kernel was asked to back with 2 MiB pages.
    Transparent,
    /// Reserved 2 MiB pages (`MAP_HUGETLB`).
    HugeTlb,
}

/// A fixed-length array of `T` in its own zero-filled anonymous mapping. Cannot grow.
pub struct ZeroedSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    map_len: usize,
    backing: Backing,
    _owns: PhantomData<T>,
}

// SAFETY: the mapping is owned by this value alone, like a Box<[T]>.
unsafe impl<T: Send> Send for ZeroedSlice<T> {}
// SAFETY: shared access only reads, like &[T].
unsafe impl<T: Sync> Sync for ZeroedSlice<T> {}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// An anonymous private mapping of `len` bytes with extra `flags`, or None.
fn map(len: usize, flags: libc::c_int) -> Option<NonNull<u8>> {
    // SAFETY: an anonymous mapping at an address of the kernel's choice touches no existing
    // memory; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast::<u8>())
    }
}

impl<T: Zeroable> ZeroedSlice<T> {
    /// `len` zeroed elements on the pages `pages` asks for (see the module docs). Aborts like
    /// `Vec` when the system has no memory at all.
    pub fn new(len: usize, pages: Pages) -> Self {
        let bytes = len.saturating_mul(size_of::<T>());
        let huge = bytes >= HUGE_PAGE && pages != Pages::Small;
        if huge && pages == Pages::HugeTlb {
            let map_len = round_up(bytes, HUGE_PAGE);
            if let Some(p) = map(map_len, libc::MAP_HUGETLB) {
                return Self::from_map(p, len, map_len, Backing::HugeTlb);
            }
        }
        if huge {
            // Over-map by one huge page and trim, so the array starts on a 2 MiB boundary
            // (the kernel only backs aligned 2 MiB ranges with huge pages).
            let map_len = round_up(bytes, HUGE_PAGE);
            if let Some(p) = map(map_len + HUGE_PAGE, 0) {
                let addr = p.as_ptr() as usize;
                let start = round_up(addr, HUGE_PAGE);
                let head = start - addr;
                let tail = HUGE_PAGE - head;
                // SAFETY: both ranges lie inside the mapping just made and are not used;
                // unmapping them leaves [start, start + map_len) mapped.
                unsafe {
                    if head > 0 {
                        libc::munmap(addr as *mut libc::c_void, head);
                    }
                    if tail > 0 {
                        libc::munmap((start + map_len) as *mut libc::c_void, tail);
                    }
                }
                // SAFETY: [start, start + map_len) is our mapping. Advice only: failure (THP
                // compiled out) leaves ordinary pages.
                let advised = unsafe {
                    libc::madvise(start as *mut libc::c_void, map_len, libc::MADV_HUGEPAGE)
                } == 0;
                let backing = if advised {
                    Backing::Transparent
                } else {
                    Backing::Small
                };
                // SAFETY: start is non-null (inside a successful mapping).
                let p = unsafe { NonNull::new_unchecked(start as *mut u8) };
                return Self::from_map(p, len, map_len, backing);
            }
        }
        let map_len = round_up(bytes.max(1), SMALL_PAGE);
        match map(map_len, 0) {
            Some(p) => Self::from_map(p, len, map_len, Backing::Small),
            None => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(map_len, SMALL_PAGE)
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            ),
        }
    }

    fn from_map(p: NonNull<u8>, len: usize, map_len: usize, backing: Backing) -> Self {
        ZeroedSlice {
            ptr: p.cast::<T>(),
            len,
            map_len,
            backing,
            _owns: PhantomData,
        }
    }
}

impl<T> ZeroedSlice<T> {
    /// What the array got.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Write every page once from the calling thread, so the memory is allocated now (not on
    /// the packet path) and on the calling core's NUMA node. Pages already present are left
    /// as they are (a write of the zero they hold would allocate nothing new either).
    pub fn prefault(&mut self) {
        let page = if self.backing == Backing::Small {
            SMALL_PAGE
        } else {
            HUGE_PAGE
        };
        let base = self.ptr.as_ptr().cast::<u8>();
        let mut off = 0;
        while off < self.map_len {
            // SAFETY: off < map_len: inside our mapping. Reading then writing back the same
            // byte keeps the contents and makes the kernel allocate the page for writing.
            unsafe {
                let p = base.add(off);
                p.write_volatile(p.read_volatile());
            }
            off += page;
        }
    }
}

impl<T> Deref for ZeroedSlice<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping holds len initialised (zeroed or written) Ts.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for ZeroedSlice<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref; &mut self is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for ZeroedSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers to it after this (T is Copy: no
        // destructors to run).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast::<libc::c_void>(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_aligned_when_huge() {
        let mut small = ZeroedSlice::<u64>::new(1000, Pages::Transparent);
        assert_eq!(small.backing(), Backing::Small);
        assert!(small.iter().all(|&x| x == 0));
        small[999] = 7;
        assert_eq!(small.iter().sum::<u64>(), 7);

        let n = (HUGE_PAGE / 4) * 2 + 3; // a little over two huge pages of u32
        let mut big = ZeroedSlice::<u32>::new(n, Pages::Transparent);
        assert_ne!(big.backing(), Backing::HugeTlb);
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0, "2 MiB aligned");
        big.prefault();
        assert!(big.iter().all(|&x| x == 0), "prefault keeps the zeros");
        big[n - 1] = u32::MAX;
        assert_eq!(big[n - 1], u32::MAX);
        assert_eq!(big.len(), n);

        let empty = ZeroedSlice::<u32>::new(0, Pages::Small);
        assert!(empty.is_empty());
    }
}
