//! Clearing the AVX upper state after faer's matrix kernels.
//!
//! On x86-64, faer multiplies matrices with hand-written AVX assembly that returns with the
//! upper halves of the YMM registers still in use (no `vzeroupper`). Until something clears
//! them, every switch between SSE-encoded code (everything built for baseline x86-64, and
//! glibc's `exp`/`log`/`pow` entry points) and VEX-encoded code (glibc's FMA variants behind
//! those entry points) costs a state transition on processors that implement one. On the
//! machines this crate is benchmarked on, `f64::exp` took 5.4 ns per call before the first
//! matrix product of a thread and 126 ns after it, which made the exponentials of a kernel
//! block cost as much as the linear algebra around them.
//!
//! [`clear_upper_state`] executes `vzeroupper` (through faer's own SIMD layer, `pulp`, whose
//! feature-checked token makes the instruction safe to call). The crate calls it after its
//! matrix products and when its public prediction, conditioning and fitting functions return
//! (a drop guard), so code that calls the GP never runs in the dirty state.

/// Clears the upper halves of the AVX registers (`vzeroupper`) when the processor has AVX;
/// does nothing otherwise. Cheap (one instruction after a cached feature check) and harmless:
/// no value lives in a vector register across a function call.
///
/// ```
/// // after calling into code that may leave the upper state dirty (faer's kernels):
/// perfusio_gp::simd::clear_upper_state();
/// ```
#[inline]
pub fn clear_upper_state() {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx) = pulp::core_arch::x86::Avx::try_new() {
        avx._mm256_zeroupper();
    }
}

/// Calls [`clear_upper_state`] when dropped: held by the crate's public entry points so that
/// every return path, errors included, leaves the AVX upper state clean.
#[derive(Debug)]
pub(crate) struct UpperStateGuard;

impl Drop for UpperStateGuard {
    fn drop(&mut self) {
        clear_upper_state();
    }
}
