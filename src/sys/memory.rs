//! Keeping the resident set small under glibc's allocator.
//!
//! glibc gives each thread that allocates while others do its own arena (up to 8 per core), and
//! keeps freed memory in each. netshim's cycles start short-lived threads (the setns thread,
//! the refresh workers) that each build large lists, so without limits the freed memory of a
//! dozen arenas stays resident and RSS creeps up under churn. Two arenas are plenty for an agent
//! that does one thing at a time, and after each cycle the free memory is handed back.
//!
//! On other C libraries (musl in the container image) both are no-ops: musl's allocator returns
//! memory by itself.

/// Limits glibc to two malloc arenas. Call once, early, before threads are started.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; M_ARENA_MAX with a positive value is a
    // documented setting. Called before any other thread exists (start of main).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap memory to the kernel (glibc's `malloc_trim`) when more than `over` bytes
/// of it are held: trimming a few pages every cycle would only cost page faults to take them
/// back. Returns whether it trimmed.
pub fn release_free_memory(over: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics (taking each arena's lock).
        let free = unsafe { libc::mallinfo2() }.fordblks;
        if free > over {
            // SAFETY: malloc_trim only walks the allocator's own free lists and madvises free
            // pages; it is thread-safe (it takes each arena's lock).
            unsafe {
                libc::malloc_trim(0);
            }
            return true;
        }
    }
    let _ = over;
    false
}
