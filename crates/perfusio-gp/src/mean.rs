//! Prior mean functions: batched over tasks, fallible, optionally differentiable, and
//! identified by a fingerprint.

use std::fmt;

/// Error of a prior mean, e.g. a mechanistic model that could not integrate from this
/// state. Surfaced by the model as [`GpError::PriorMean`](crate::GpError::PriorMean).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MeanError(pub String);

/// Prior mean `m(x)` of the Gaussian process: the mean of **every** task at one base input
/// `x`, in ORIGINAL units (the task-id column removed).
///
/// The model fits the residuals `y − m(x)[task]` (standardised per task), so a good prior
/// mean (e.g. a mechanistic one-day prediction) leaves the GP only what the mean gets wrong.
/// The mean is used identically in fitting, prediction and sampling, and is called once per
/// distinct base input of a call, never once per (row, task): a mean that integrates an ODE
/// needs no cache.
///
/// A mean is code and is not serialised. A fitted model stores the mean's
/// [`PriorMean::fingerprint`]; after loading, a constant mean is restored automatically and
/// any other mean must be handed back with `MultiTaskGp::set_prior_mean`, which refuses a
/// mean whose fingerprint differs from the one the model was fitted with.
pub trait PriorMean: Send + Sync + fmt::Debug {
    /// Number of tasks the mean returns per base input. A mean that serves any number of
    /// tasks (a constant) returns 0 and fills whatever `out` it is given.
    fn n_tasks(&self) -> usize;

    /// Mean of every task at one base input `x` (original units, task column removed);
    /// `out.len()` is the model's number of tasks.
    fn eval(&self, x: &[f64], out: &mut [f64]) -> Result<(), MeanError>;

    /// Value and Jacobian `jac[t * x.len() + j] = ∂out[t]/∂x[j]` (row-major,
    /// `n_tasks × d`). Return `Ok(false)` when the mean is not differentiable: the model
    /// then uses central finite differences of [`PriorMean::eval`] wherever it needs the
    /// Jacobian (see [`finite_difference_jacobian`]).
    fn eval_with_jacobian(
        &self,
        x: &[f64],
        out: &mut [f64],
        jac: &mut [f64],
    ) -> Result<bool, MeanError> {
        self.eval(x, out)?;
        let _ = jac;
        Ok(false)
    }

    /// Stable identity of the mean (mechanism and parameters), e.g. a SHA-256 hex string.
    /// Persisted with the model; `set_prior_mean` refuses a mean with another fingerprint.
    fn fingerprint(&self) -> String;

    /// `Some(c)` if the mean is the constant `c` for every task (restored automatically
    /// after loading). Default: `None`.
    fn as_constant(&self) -> Option<f64> {
        None
    }
}

/// Relative step of the central finite differences used for the Jacobian of a prior mean
/// that does not provide one: column `j` is perturbed by `MEAN_FD_STEP · wⱼ`, with `wⱼ` the
/// width of column `j`'s unit-cube map (the input bounds, or the data range), so every step
/// is the same fraction of its input's range. With a mean accurate to ~1e-8 relative (an
/// ODE integrated to that tolerance), the truncation error O(h²) and the noise O(1e-8/h) of
/// this step are both ≈ 1e-4 relative or better.
pub const MEAN_FD_STEP: f64 = 1e-4;

/// Central finite-difference Jacobian of `mean` at `x` with per-column steps `steps`:
/// `jac[t * d + j] ≈ (m(x + hⱼeⱼ)[t] − m(x − hⱼeⱼ)[t]) / 2hⱼ`, `jac.len() = n_tasks·d`
/// with `n_tasks = jac.len() / d`. Costs `2d` evaluations.
pub fn finite_difference_jacobian(
    mean: &dyn PriorMean,
    x: &[f64],
    steps: &[f64],
    jac: &mut [f64],
) -> Result<(), MeanError> {
    let d = x.len();
    if d == 0 || steps.len() != d || !jac.len().is_multiple_of(d) {
        return Err(MeanError(format!(
            "finite differences need one step per input ({d}) and a Jacobian of n_tasks × {d}, got {} steps and {} entries",
            steps.len(),
            jac.len()
        )));
    }
    let t = jac.len() / d;
    let mut xp = x.to_vec();
    let mut up = vec![0.0; t];
    let mut dn = vec![0.0; t];
    for j in 0..d {
        let h = steps[j];
        if !(h.is_finite() && h > 0.0) {
            return Err(MeanError(format!(
                "finite-difference step {j} is {h}; it must be finite and > 0"
            )));
        }
        xp[j] = x[j] + h;
        mean.eval(&xp, &mut up)?;
        xp[j] = x[j] - h;
        mean.eval(&xp, &mut dn)?;
        xp[j] = x[j];
        let h2 = (x[j] + h) - (x[j] - h);
        for k in 0..t {
            jac[k * d + j] = (up[k] - dn[k]) / h2;
        }
    }
    Ok(())
}

/// The same constant for every input and task (default 0: outputs are standardised per
/// task inside the model, so a zero mean is the usual choice). Serves any number of tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConstantMean(pub f64);

impl PriorMean for ConstantMean {
    fn n_tasks(&self) -> usize {
        0
    }
    fn eval(&self, _x: &[f64], out: &mut [f64]) -> Result<(), MeanError> {
        out.fill(self.0);
        Ok(())
    }
    fn eval_with_jacobian(
        &self,
        _x: &[f64],
        out: &mut [f64],
        jac: &mut [f64],
    ) -> Result<bool, MeanError> {
        out.fill(self.0);
        jac.fill(0.0);
        Ok(true)
    }
    fn fingerprint(&self) -> String {
        // `{:?}` prints the shortest representation that round-trips: exact and stable
        format!("constant({:?})", self.0)
    }
    fn as_constant(&self) -> Option<f64> {
        Some(self.0)
    }
}

/// A prior mean from a closure `f(x, out) -> Result<(), MeanError>` that fills the mean of
/// every task, with its task count and fingerprint (no Jacobian: finite differences are used).
pub struct FnMean<F> {
    f: F,
    n_tasks: usize,
    fingerprint: String,
}

impl<F> FnMean<F>
where
    F: Fn(&[f64], &mut [f64]) -> Result<(), MeanError> + Send + Sync,
{
    /// Wrap closure `f` returning `n_tasks` values per base input, identified by
    /// `fingerprint` (it must change whenever the closure's behaviour does).
    pub fn new(n_tasks: usize, fingerprint: impl Into<String>, f: F) -> Self {
        Self {
            f,
            n_tasks,
            fingerprint: fingerprint.into(),
        }
    }
}

impl<F> PriorMean for FnMean<F>
where
    F: Fn(&[f64], &mut [f64]) -> Result<(), MeanError> + Send + Sync,
{
    fn n_tasks(&self) -> usize {
        self.n_tasks
    }
    fn eval(&self, x: &[f64], out: &mut [f64]) -> Result<(), MeanError> {
        (self.f)(x, out)
    }
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

impl<F> fmt::Debug for FnMean<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnMean")
            .field("n_tasks", &self.n_tasks)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Quad;
    impl PriorMean for Quad {
        fn n_tasks(&self) -> usize {
            2
        }
        fn eval(&self, x: &[f64], out: &mut [f64]) -> Result<(), MeanError> {
            out[0] = x[0] * x[0] + 3.0 * x[1];
            out[1] = (x[0] * x[1]).sin();
            Ok(())
        }
        fn fingerprint(&self) -> String {
            "quad".into()
        }
    }

    #[test]
    fn finite_differences_match_the_analytic_jacobian() {
        let x = [0.7, -1.3];
        let mut jac = [0.0; 4];
        finite_difference_jacobian(&Quad, &x, &[1e-4, 1e-4], &mut jac).unwrap();
        let want = [
            2.0 * x[0],
            3.0,
            x[1] * (x[0] * x[1]).cos(),
            x[0] * (x[0] * x[1]).cos(),
        ];
        for (a, b) in jac.iter().zip(&want) {
            // central differences: error h²·f'''/6 ≈ 1e-8
            assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        }
        assert!(finite_difference_jacobian(&Quad, &x, &[1e-4], &mut jac).is_err());
        assert!(finite_difference_jacobian(&Quad, &x, &[0.0, 1e-4], &mut jac).is_err());
    }

    #[test]
    fn constant_mean_fills_and_has_a_stable_fingerprint() {
        let c = ConstantMean(2.5);
        let mut out = [0.0; 3];
        let mut jac = [1.0; 6];
        assert!(
            c.eval_with_jacobian(&[1.0, 2.0], &mut out, &mut jac)
                .unwrap()
        );
        assert!(out.iter().all(|v| v.to_bits() == 2.5f64.to_bits()));
        assert!(jac.iter().all(|v| v.to_bits() == 0.0f64.to_bits()));
        assert_eq!(c.fingerprint(), "constant(2.5)");
        assert_eq!(
            ConstantMean(0.1 + 0.2).fingerprint(),
            "constant(0.30000000000000004)"
        );
        let f = FnMean::new(1, "f", |x: &[f64], o: &mut [f64]| {
            o[0] = x[0];
            Ok(())
        });
        assert_eq!(f.n_tasks(), 1);
        assert!(
            !f.eval_with_jacobian(&[3.0], &mut out[..1], &mut jac[..1])
                .unwrap()
        );
        assert_eq!(out[0].to_bits(), 3.0f64.to_bits());
    }
}
