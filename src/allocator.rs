//! How the process's C allocator is set up (glibc only; elsewhere nothing is done).
//!
//! glibc's malloc gives each thread that allocates while another holds the lock of the
//! main heap an arena of its own, up to eight per core. An arena keeps what is freed in
//! it for its own later use, so a run whose async workers and blocking threads (store
//! commits, DNS) take turns allocating holds many partly used arenas: measured on
//! `status` over 10,000 credentials, 83 MB resident with the default against 72 MB with
//! one arena. rekey waits on networks and disks, not on malloc: with two arenas the
//! 10,000-credential bench was no slower (bench/README.md, scale section).

/// The most arenas glibc may create.
pub const ARENAS: i32 = 2;

/// Limits glibc's malloc to [`ARENAS`] arenas. Call it first thing in `main`, before
/// other threads start. `MALLOC_ARENA_MAX` in the environment still wins (glibc reads it
/// at the first allocation, and this call is skipped when it is set).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one libc call; SAFETY comment at the block
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX affects arenas
    // created from now on and is safe to set while allocations exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Other C libraries: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}
