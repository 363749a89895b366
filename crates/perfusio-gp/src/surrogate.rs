//! Object-safe facade over a fitted model, so callers can hold `Box<dyn Surrogate>`.

use crate::error::Result;
use crate::kernel::Kernel;
use crate::model::{
    FitReport, JointPrediction, MultiTaskGp, Prediction, TaskPrediction, TaskPredictionGrad,
};
use serde::Serialize;
use std::fmt;

/// A fitted probabilistic regression model over rows in indexed multi-task format
/// (`[base inputs..., task id]`, row-major, [`Surrogate::n_cols`] columns), and over base
/// inputs (`n_cols − 1` values, no task id) for the all-task predictions. All results are
/// in original units.
pub trait Surrogate: Send + Sync + fmt::Debug {
    /// Number of columns of a row (base inputs + task id).
    fn n_cols(&self) -> usize;
    /// Number of tasks.
    fn n_tasks(&self) -> usize;
    /// Posterior mean and latent variance per row.
    fn predict(&self, x: &[f64]) -> Result<Prediction>;
    /// Posterior mean and variance of a new noisy observation per row.
    fn predict_observed(&self, x: &[f64]) -> Result<Prediction>;
    /// Joint latent mean and covariance of the rows.
    fn predict_joint(&self, x: &[f64]) -> Result<JointPrediction>;
    /// `n_samples` seeded joint latent draws at the rows (one inner vector per draw).
    fn sample(&self, x: &[f64], n_samples: usize, seed: u64) -> Result<Vec<Vec<f64>>>;
    /// Joint distribution of all tasks at each base input (`m × (n_cols − 1)`), batched;
    /// `with_noise` adds the observation noise on the diagonal.
    fn predict_tasks(&self, base: &[f64], with_noise: bool) -> Result<Vec<TaskPrediction>>;
    /// Mean of all tasks at each base input, `m × n_tasks` row-major.
    fn predict_tasks_mean(&self, base: &[f64]) -> Result<Vec<f64>>;
    /// Latent joint prediction at one base input with mean and variance gradients.
    fn predict_tasks_grad(&self, base: &[f64]) -> Result<TaskPredictionGrad>;
    /// Latent joint prediction at one base input with the mean gradient only (no variance
    /// gradients: `variance_grad` may be empty). Default: [`Surrogate::predict_tasks_grad`].
    fn predict_tasks_mean_grad(&self, base: &[f64]) -> Result<TaskPredictionGrad> {
        self.predict_tasks_grad(base)
    }
    /// Report of the last fit (converged or not, and why).
    fn report(&self) -> &FitReport;
    /// SHA-256 hex of everything that determines the predictions (not the wall time).
    fn fingerprint(&self) -> String;
}

/// Extension of [`Surrogate`] for models that learn online.
pub trait OnlineSurrogate: Surrogate {
    /// Condition on new rows with frozen hyperparameters and input map.
    fn condition_on(&mut self, x: &[f64], y: &[f64]) -> Result<()>;
    /// Append rows and refit warm-started (input map kept); returns the fit report.
    fn append_and_refit(&mut self, x: &[f64], y: &[f64]) -> Result<FitReport>;
}

/// Former name of [`OnlineSurrogate`].
#[deprecated(since = "0.1.0", note = "renamed to `OnlineSurrogate`")]
pub trait SurrogateExt: OnlineSurrogate {}

#[allow(deprecated)]
impl<T: OnlineSurrogate + ?Sized> SurrogateExt for T {}

impl<K: Kernel + Clone + Serialize> Surrogate for MultiTaskGp<K> {
    fn n_cols(&self) -> usize {
        MultiTaskGp::n_cols(self)
    }
    fn n_tasks(&self) -> usize {
        MultiTaskGp::n_tasks(self)
    }
    fn predict(&self, x: &[f64]) -> Result<Prediction> {
        MultiTaskGp::predict(self, x)
    }
    fn predict_observed(&self, x: &[f64]) -> Result<Prediction> {
        MultiTaskGp::predict_observed(self, x)
    }
    fn predict_joint(&self, x: &[f64]) -> Result<JointPrediction> {
        MultiTaskGp::predict_joint(self, x)
    }
    fn sample(&self, x: &[f64], n_samples: usize, seed: u64) -> Result<Vec<Vec<f64>>> {
        MultiTaskGp::sample(self, x, n_samples, seed)
    }
    fn predict_tasks(&self, base: &[f64], with_noise: bool) -> Result<Vec<TaskPrediction>> {
        MultiTaskGp::predict_tasks(self, base, with_noise)
    }
    fn predict_tasks_mean(&self, base: &[f64]) -> Result<Vec<f64>> {
        MultiTaskGp::predict_tasks_mean(self, base)
    }
    fn predict_tasks_grad(&self, base: &[f64]) -> Result<TaskPredictionGrad> {
        MultiTaskGp::predict_tasks_grad(self, base)
    }
    fn predict_tasks_mean_grad(&self, base: &[f64]) -> Result<TaskPredictionGrad> {
        MultiTaskGp::predict_tasks_mean_grad(self, base)
    }
    fn report(&self) -> &FitReport {
        MultiTaskGp::report(self)
    }
    fn fingerprint(&self) -> String {
        MultiTaskGp::fingerprint(self)
    }
}

impl<K: Kernel + Clone + Serialize> OnlineSurrogate for MultiTaskGp<K> {
    fn condition_on(&mut self, x: &[f64], y: &[f64]) -> Result<()> {
        MultiTaskGp::condition_on(self, x, y)
    }
    fn append_and_refit(&mut self, x: &[f64], y: &[f64]) -> Result<FitReport> {
        MultiTaskGp::append_and_refit(self, x, y).cloned()
    }
}
