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
}
