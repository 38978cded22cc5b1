//! Candle's backward pass recurses once per graph node, and an unrolled recurrent network has
//! about a dozen nodes per layer and time step: sequences of thousands of steps overflow the
//! default 8 MiB main-thread stack. Training and evaluation run on a thread with a deep stack;
//! the memory is reserved, not committed, until used.

/// Stack size for training threads: 1 GiB, enough for about half a million graph nodes.
pub const TRAIN_STACK_BYTES: usize = 1 << 30;

/// Runs `f` on a new thread with a [`TRAIN_STACK_BYTES`] stack and returns its result.
pub fn with_deep_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name("remanence-train".into())
        .stack_size(TRAIN_STACK_BYTES)
        .spawn(f)
        .expect("cannot spawn the training thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
