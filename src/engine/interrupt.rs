//! Stopping at a step boundary: a signal asks the run to stop; no new step starts, the
//! running one finishes and is recorded, and the credential reports `interrupted`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// A shared "please stop" flag. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// The process-wide flag that the binary's signal handler sets.
    pub fn global() -> Interrupt {
        static GLOBAL: OnceLock<Interrupt> = OnceLock::new();
        GLOBAL.get_or_init(Interrupt::default).clone()
    }

    /// Asks every run holding this flag to stop at its next step boundary.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
