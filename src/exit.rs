//! The process exit codes, a stable contract for scripts.

/// Everything succeeded.
pub const SUCCESS: i32 = 0;
/// At least one credential failed: a rotation failed, verification found a problem,
/// a revoked secret still works.
pub const CREDENTIAL_FAILED: i32 = 1;
/// Usage or configuration error; nothing changed.
pub const USAGE: i32 = 2;
/// Another run holds a lock; nothing changed.
pub const LOCKED: i32 = 3;
/// Interrupted by a signal (SIGINT/SIGTERM).
pub const INTERRUPTED: i32 = 130;
