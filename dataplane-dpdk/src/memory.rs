//! Memory for large tables on the packet path.
//!
//! A flow table of tens of MiB read at random misses the TLB as well as the
//! cache on 4 KiB pages (a million flows span 8,192 of them; a core's TLB
//! holds about 2,000). [`HugeSlice`] allocates such a table 2 MiB-aligned
//! and asks the kernel for transparent huge pages on it (`madvise`), before
//! its first touch. Without EAL and without reserved hugepages: where the
//! kernel does not give huge pages, it is plain memory.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use synshare_dataplane::flow::{Group, GroupStore};

/// A huge page.
const HUGE_PAGE: usize = 2 << 20;

/// A fixed-length slice allocated on huge-page boundaries, advised to
/// transparent huge pages when it spans at least one.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// The allocation's layout (None: nothing allocated).
    layout: Option<Layout>,
}

// SAFETY: HugeSlice owns its elements like a Box<[T]> does.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: as above; shared access only reads.
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

#[cfg(target_os = "linux")]
extern "C" {
    fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: core::ffi::c_int) -> core::ffi::c_int;
}

/// `MADV_HUGEPAGE` on Linux.
#[cfg(target_os = "linux")]
const MADV_HUGEPAGE: core::ffi::c_int = 14;

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `value`.
    ///
    /// # Panics
    /// When the size overflows or the allocation fails, as `vec!` does.
    pub fn new(len: usize, value: T) -> Self {
        let size = core::mem::size_of::<T>()
            .checked_mul(len)
            .expect("HugeSlice size overflows");
        if size == 0 {
            return HugeSlice {
                ptr: NonNull::dangling(),
                len,
                layout: None,
            };
        }
        let align = if size >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            core::mem::align_of::<T>()
        };
        let layout = Layout::from_size_align(size, align.max(core::mem::align_of::<T>())).expect("HugeSlice layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            alloc::handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if size >= HUGE_PAGE {
            // SAFETY: the range is our own fresh allocation, 2 MiB-aligned;
            // madvise only changes how the kernel backs it (a failure, e.g.
            // THP disabled, leaves it as it was and is ignored).
            unsafe {
                madvise(raw.cast(), size, MADV_HUGEPAGE);
            }
        }
        for i in 0..len {
            // SAFETY: i < len elements fit the allocation; writing
            // initialises each exactly once before any read.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        HugeSlice {
            ptr,
            len,
            layout: Some(layout),
        }
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements at `ptr` (dangling and len of
        // zero-sized elements only when nothing was allocated), owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `new` with exactly this layout; T is Copy,
            // so there is nothing to drop element by element.
            unsafe { alloc::dealloc(self.ptr.as_ptr().cast(), layout) }
        }
    }
}

/// The node's flow tables live here: a random lookup then misses the
/// cache but not also the TLB, and the look at a burst prefetches each
/// flow's group.
impl GroupStore for HugeSlice<Group> {
    fn with_len(len: usize) -> Self {
        HugeSlice::new(len, Group::default())
    }

    #[inline(always)]
    fn prefetch(&self, group: usize) {
        crate::prefetch(&self[group]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_its_values_and_is_aligned_when_large() {
        let mut small = HugeSlice::new(10, 7u64);
        assert_eq!(&small[..], &[7; 10]);
        small[3] = 4;
        assert_eq!(small.iter().sum::<u64>(), 67);
        let big = HugeSlice::new(HUGE_PAGE / 8 * 3, 1u64);
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(big.len(), HUGE_PAGE / 8 * 3);
        assert!(big.iter().all(|&v| v == 1));
        let empty = HugeSlice::new(0, 0u8);
        assert!(empty.is_empty());
        let unit = HugeSlice::new(5, ());
        assert_eq!(unit.len(), 5);
    }
}
