//! The process's allocator, tuned for the engine. Every candle op allocates its output fresh,
//! and glibc's malloc serves blocks over 32 MB (a UNet activation at 512², a weight tensor)
//! with a fresh `mmap` and returns them with `munmap` when freed: every such block costs a
//! page fault and a zeroed page per 4 KB each time (a profile of a 512² UNet step showed a
//! sixth of it in page faults), and a model load pays it for every tensor.
//! [`keep_freed_memory`] makes malloc serve them from its heap and keep what is freed for the
//! next allocation; [`release_freed_memory`] gives the free part back to the system (an
//! `engine::Pipeline` calls it when it is dropped, once its weights are freed).
//!
//! Measured (SD 1.5 architecture, f32, 2 threads; `easel bench diffusion --model`): load
//! 5.4 → 1.6 s, UNet step at 512² 9.73 → 9.50 s, system time of the run halved, peak memory
//! +1%.
//!
//! **Weights as file mappings.** A process whose global allocator is [`Allocator`] (the
//! `easel` binary's) loads weights without copying them: [`map_file`] maps a whole
//! safetensors file (private, read-only in practice) into a reserved stretch of address
//! space, and each tensor whose type is stored as-is becomes a `Vec` over its bytes in the
//! mapping ([`Mapped::vec`]). Loading a model is then reading its headers; the weights come
//! from the page cache as they are first used, count once in memory (as the page cache's
//! pages, which the kernel may drop and read again under pressure), and are released as
//! their tensors drop: [`Allocator`] recognises the region's addresses, gives the dropped
//! tensor's pages back and unmaps a file when its last tensor is gone. (A layer that lays
//! a weight out anew at load, as CLIP's linear layers do through
//! `kernels::Linear::input_major`, holds a heap copy instead.) Without the
//! allocator (library users, test binaries that do not install it), with
//! `EASEL_MAP_WEIGHTS=0`, or once the system has refused a mapping (an address-space limit,
//! a filesystem that cannot map), [`map_file`] answers `None` and the loader reads into
//! buffers. Giving pages back relies on Linux's `MADV_DONTNEED` for private file mappings.
//! A file changed in place while mapped would change (or, truncated, fault) the weights:
//! Easel's own pulls replace files by renaming new ones over them, which leaves a mapping
//! on the old file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Serve large blocks from the heap and keep freed memory (glibc; elsewhere nothing). Call
/// once, early. Returns whether the allocator took the settings.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters.
    unsafe {
        // No mmap for large blocks; trim the heap's top only when 2 GB or more of it is
        // free (`release_freed_memory` trims when a model unloads).
        libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Give the allocator's free memory back to the system (glibc; elsewhere nothing).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The global allocator of a process that maps weights: the system allocator, except for
/// blocks inside the weights region ([`map_file`]), which are released by unmapping. Install
/// it in the binary: `#[global_allocator] static A: Allocator = Allocator;`.
pub struct Allocator;

thread_local! {
    /// Set while [`allocator_is_global`] allocates a probe on this thread.
    static PROBING: Cell<bool> = const { Cell::new(false) };
    /// Set by [`Allocator`] when it serves that probe.
    static PROBED: Cell<bool> = const { Cell::new(false) };
}
/// The start of the reserved address range mappings go into (0 until the first mapping);
/// the range is `REGION_BYTES` long.
static REGION_START: AtomicUsize = AtomicUsize::new(0);
/// Set after a mapping failed: from then on the process reads weights.
static MAPPING_FAILED: AtomicBool = AtomicBool::new(false);
/// Address space reserved for mappings (reserved only: no memory is committed).
const REGION_BYTES: usize = 1 << 40;

/// One mapped file: where it lies and how many references (tensors, plus the loader's
/// handle) still use it.
struct Map {
    /// Unique per mapping (a later mapping may reuse the address range).
    id: u64,
    start: usize,
    len: usize,
    live: usize,
}

/// The live mappings. Locked only to map a file and to release a block of the region (never
/// for ordinary allocations); while it is held, only heap blocks are allocated or freed (the
/// vector's own buffer, an error's text), never blocks of the region.
static MAPS: Mutex<Vec<Map>> = Mutex::new(Vec::new());

fn in_region(p: *mut u8) -> bool {
    let start = REGION_START.load(Ordering::Acquire);
    start != 0 && (p as usize).wrapping_sub(start) < REGION_BYTES
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf only reads a system value.
            let p = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize;
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

// SAFETY: every block not inside the region is the system allocator's, passed straight to
// it; blocks inside the region are only ever handed out by `Mapped::vec` and are released
// (never passed to the system allocator).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if PROBING.get() {
            PROBED.set(true);
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_region(ptr) {
            release(ptr as usize, layout.size());
        } else {
            // SAFETY: a block of the system allocator (see the impl's safety note).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_region(ptr) {
            // SAFETY: a block of the system allocator.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // A mapped block that grows or shrinks moves to the heap.
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller's contract).
        let new =
            unsafe { System.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !new.is_null() {
            // SAFETY: both blocks hold at least the copied length and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            release(ptr as usize, layout.size());
        }
        new
    }
}

/// A block of the region is freed: its whole pages leave this process, and the file is
/// unmapped when nothing uses it any more. `size` 0 drops a handle's reference.
fn release(addr: usize, size: usize) {
    let mut maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = maps
        .iter()
        .position(|m| addr >= m.start && addr < m.start + m.len)
    else {
        return;
    };
    let page = page_size();
    let (lo, hi) = (addr.next_multiple_of(page), (addr + size) / page * page);
    if hi > lo {
        // SAFETY: whole pages of this block alone (blocks never overlap: the loader refuses
        // overlapping tensors), which nothing uses once it is freed.
        unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) };
    }
    maps[i].live -= 1;
    if maps[i].live == 0 {
        if unreserve(maps[i].start, maps[i].len) {
            maps.swap_remove(i);
        } else {
            // The range could not be given back: it stays out of use for good (never handed
            // out again, never released again).
            maps[i].live = usize::MAX;
        }
    }
}

/// Turn `len` bytes at `start` of the region back into reserved, inaccessible space; false
/// when the system refused.
fn unreserve(start: usize, len: usize) -> bool {
    // SAFETY: the range lies inside the region this module reserved and nothing uses it.
    let p = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p != libc::MAP_FAILED
}

/// Whether [`Allocator`] is this process's global allocator: a probe allocated on this
/// thread reaches it (checked once).
fn allocator_is_global() -> bool {
    static GLOBAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GLOBAL.get_or_init(|| {
        PROBED.set(false);
        PROBING.set(true);
        let probe = std::hint::black_box(Box::new(0u64));
        PROBING.set(false);
        drop(probe);
        PROBED.get()
    })
}

/// Whether weights are mapped in this process: [`Allocator`] is the global allocator,
/// `EASEL_MAP_WEIGHTS` is not `0`, and no mapping has failed (after one does, for instance
/// under an address-space limit, the process reads weights instead).
pub fn mapping_available() -> bool {
    allocator_is_global()
        && !MAPPING_FAILED.load(Ordering::Relaxed)
        && std::env::var("EASEL_MAP_WEIGHTS").map_or(true, |v| v != "0")
}

/// A whole file mapped into the region; tensors are taken from it with [`Mapped::vec`]. The
/// mapping lasts while this handle or any of those vectors lives.
pub struct Mapped {
    id: u64,
    start: usize,
    len: usize,
}

/// Map all of `file` (`len` bytes), or `None` when weights are not mapped in this process
/// ([`mapping_available`]), the file is empty, or the system refuses the mapping (then no
/// later file is mapped either: the caller reads).
pub fn map_file(file: &std::fs::File, len: u64) -> Option<Mapped> {
    if !mapping_available() || len == 0 {
        return None;
    }
    let mapped = try_map(file, len);
    if mapped.is_err() {
        MAPPING_FAILED.store(true, Ordering::Relaxed);
    }
    mapped.ok()
}

fn try_map(file: &std::fs::File, len: u64) -> std::io::Result<Mapped> {
    use std::os::fd::AsRawFd;
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let page = page_size();
    let span = len.next_multiple_of(page);
    let mut maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    if REGION_START.load(Ordering::Acquire) == 0 {
        // SAFETY: a fresh anonymous reservation; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION_BYTES,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        REGION_START.store(p as usize, Ordering::Release);
    }
    let lo = REGION_START.load(Ordering::Acquire);
    let hi = lo + REGION_BYTES;
    // First fit: the region's start, else just after one of the live mappings.
    let free = |at: usize| {
        at + span <= hi
            && maps
                .iter()
                .all(|m| at + span <= m.start || at >= m.start + m.len)
    };
    let at = std::iter::once(lo)
        .chain(maps.iter().map(|m| m.start + m.len))
        .find(|&at| free(at))
        .ok_or_else(|| std::io::Error::other("the weights region is full"))?;
    // SAFETY: `at..at + span` is reserved, unused space of the region; the private mapping
    // replaces it.
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        if !unreserve(at, span) {
            // Keep the range out of use (see `release`).
            maps.push(Map {
                id: u64::MAX,
                start: at,
                len: span,
                live: usize::MAX,
            });
        }
        return Err(e);
    }
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    maps.push(Map {
        id,
        start: at,
        len: span,
        live: 1,
    });
    Ok(Mapped { id, start: at, len })
}

impl Mapped {
    /// The file's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file is empty (never: empty files are not mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the file's first byte is mapped.
    pub fn as_ptr(&self) -> *const u8 {
        self.start as *const u8
    }

    /// A vector over the `n` elements of `T` at byte `offset` of the file, with no copy, or
    /// `None` when they do not lie inside the file or are not aligned for `T`.
    ///
    /// # Safety
    /// The vector owns its bytes: no other vector taken from this file may overlap them (the
    /// loader refuses files whose tensors share bytes), since freeing one gives its pages back.
    pub unsafe fn vec<T: candle_core::WithDType>(&self, offset: usize, n: usize) -> Option<Vec<T>> {
        let bytes = n.checked_mul(std::mem::size_of::<T>())?;
        if n == 0 || offset.checked_add(bytes)? > self.len {
            return None;
        }
        let addr = self.start + offset;
        if !addr.is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        let mut maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
        maps.iter_mut().find(|m| m.id == self.id)?.live += 1;
        drop(maps);
        // SAFETY: `T` is a plain numeric type (every bit pattern is a value); the elements lie
        // inside the live mapping, aligned; the global allocator is `Allocator`
        // (`map_file` checked), which releases the block instead of freeing it as heap.
        Some(unsafe { Vec::from_raw_parts(addr as *mut T, n, n) })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        release(self.start, 0);
    }
}

/// Whether `ptr` lies in the region weights are mapped into (a tensor's storage that is a
/// mapped file's view).
pub fn is_mapped(ptr: *const u8) -> bool {
    in_region(ptr as *mut u8)
}

/// Let the whole pages of `len` bytes at `ptr` leave this process's memory when they are a
/// mapped file's view (else nothing): the tensor over them stays valid, and a later read
/// faults them in from the page cache again. For a weight that has been copied into another
/// form at load (a layer's bf16 copy), so that the file's pages and the copy are not
/// resident together. Weights are never written in place, so the file holds their values.
pub fn drop_pages(ptr: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        let (start, end) = (ptr as usize, ptr as usize + len);
        if len == 0 || !is_mapped(ptr) || !is_mapped((end - 1) as *const u8) {
            return;
        }
        let page = page_size();
        let (lo, hi) = (start.next_multiple_of(page), end / page * page);
        if hi > lo {
            // SAFETY: whole pages inside the weight region, private mappings of files that
            // are never written: dropping them only makes the next read fault them back in.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) };
        }
    }
}

/// The references still held on mapping `id`, if it is mapped.
#[cfg(test)]
fn live_refs(id: u64) -> Option<usize> {
    let maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    maps.iter().find(|m| m.id == id).map(|m| m.live)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allocator_takes_the_settings() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(super::keep_freed_memory());
        // Large blocks still allocate, and release runs.
        let v = vec![1u8; 64 << 20];
        assert_eq!(v[(64 << 20) - 1], 1);
        drop(v);
        super::release_freed_memory();
    }

    /// A file of 4096 + 100 f32 values 0, 1, 2, … (more than one page, so a released vector
    /// has whole pages to give back).
    fn numbers_file() -> (tempfile::NamedTempFile, Vec<f32>) {
        let values: Vec<f32> = (0..4196).map(|i| i as f32).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &bytes).unwrap();
        (f, values)
    }

    #[test]
    fn mapped_vectors_read_the_file_and_release_it_when_the_last_one_drops() {
        // This crate's test binary installs the allocator (lib.rs).
        assert!(super::mapping_available());
        let (f, values) = numbers_file();
        let file = std::fs::File::open(f.path()).unwrap();
        let len = file.metadata().unwrap().len();
        let map = super::map_file(&file, len).expect("mapped");
        let id = map.id;
        assert_eq!(map.len(), len as usize);
        // Two disjoint vectors: the first 4000 values (over three whole pages), the rest.
        // SAFETY (both): disjoint ranges of the file.
        let head: Vec<f32> = unsafe { map.vec(0, 4000) }.unwrap();
        let tail: Vec<f32> = unsafe { map.vec(4 * 4000, 196) }.unwrap();
        assert!(super::is_mapped(head.as_ptr() as *const u8));
        assert_eq!(head, values[..4000]);
        assert_eq!(tail, values[4000..]);
        // Out of the file, or misaligned for f32: no vector.
        assert!(unsafe { map.vec::<f32>(4 * 4100, 97) }.is_none());
        assert!(unsafe { map.vec::<f32>(2, 4) }.is_none());
        assert!(unsafe { map.vec::<f32>(usize::MAX - 2, 4) }.is_none());
        assert_eq!(super::live_refs(id), Some(3));
        drop(map);
        assert_eq!(super::live_refs(id), Some(2));
        // Freeing the first gives its whole pages back; the other still reads.
        drop(head);
        assert_eq!(tail[195], 4195.0);
        assert_eq!(super::live_refs(id), Some(1));
        drop(tail);
        assert_eq!(super::live_refs(id), None, "unmapped with its last vector");
        // The file maps again (the freed range is free for it or any other mapping).
        let again = super::map_file(&file, len).unwrap();
        assert!(super::is_mapped(again.as_ptr()));
    }

    #[test]
    fn a_mapped_vector_that_grows_moves_to_the_heap() {
        let (f, values) = numbers_file();
        let file = std::fs::File::open(f.path()).unwrap();
        let map = super::map_file(&file, file.metadata().unwrap().len()).unwrap();
        let id = map.id;
        // SAFETY: the only vector taken from this file.
        let mut v: Vec<f32> = unsafe { map.vec(0, 10) }.unwrap();
        drop(map);
        v.push(-1.0);
        assert!(!super::is_mapped(v.as_ptr() as *const u8));
        assert_eq!(v[..10], values[..10]);
        assert_eq!(v[10], -1.0);
        assert_eq!(super::live_refs(id), None);
    }
}
