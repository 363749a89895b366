//! Prior mean functions.

use std::fmt;

/// Prior mean `m(x, task)` of the Gaussian process, evaluated on a base-input row in
/// ORIGINAL units (the task-id column removed).
///
/// The model fits the residuals `y − m(x, task)` (standardised per task), so a good prior
/// mean (e.g. a mechanistic one-day prediction) leaves the GP only what the mean gets wrong.
/// The mean is used identically in fitting, prediction and sampling.
///
/// Prior means are not serialised: a model read back with serde carries only a label of the
/// mean it was fitted with. A [`ConstantMean`] is restored automatically; any other mean
/// must be handed back with `MultiTaskGp::set_prior_mean` before predicting, otherwise
/// prediction returns `GpError::PriorMeanMissing`.
pub trait PriorMean: Send + Sync + fmt::Debug {
    /// Mean of `task` at base input `x` (original units, length = number of base columns).
    fn mean(&self, x: &[f64], task: usize) -> f64;
    /// `Some(c)` if this mean is the constant `c` for every task (allows restoring it after
    /// deserialisation). Default: `None`.
    fn as_constant(&self) -> Option<f64> {
        None
    }
    /// Short label recorded with a persisted model so that a reader knows which mean to
    /// hand back. Default: `"external"`.
    fn label(&self) -> String {
        "external".to_owned()
    }
}

/// The same constant for every input and task (default: 0, since outputs are standardised
/// per task inside the model, a zero mean is the usual choice).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConstantMean(pub f64);

impl PriorMean for ConstantMean {
    fn mean(&self, _x: &[f64], _task: usize) -> f64 {
        self.0
    }
    fn as_constant(&self) -> Option<f64> {
        Some(self.0)
    }
    fn label(&self) -> String {
        format!("constant({})", self.0)
    }
}

impl<F> PriorMean for FnMean<F>
where
    F: Fn(&[f64], usize) -> f64 + Send + Sync,
{
    fn mean(&self, x: &[f64], task: usize) -> f64 {
        (self.f)(x, task)
    }
    fn label(&self) -> String {
        self.label.clone()
    }
}

/// A prior mean from a closure, with a label kept for persistence.
pub struct FnMean<F> {
    f: F,
    label: String,
}

impl<F> FnMean<F> {
    /// Wrap closure `f(x, task)` with a label.
    pub fn new(label: impl Into<String>, f: F) -> Self {
        Self {
            f,
            label: label.into(),
        }
    }
}

impl<F> fmt::Debug for FnMean<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnMean")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}
