//! Object-safe facade over a fitted model, so callers can hold `Box<dyn Surrogate>`.

use crate::error::Result;
use crate::kernel::Kernel;
use crate::model::{JointPrediction, MultiTaskGp, Prediction};
use std::fmt;

/// A fitted probabilistic regression model over rows in indexed multi-task format
/// (`[base inputs..., task id]`, row-major, [`Surrogate::n_cols`] columns). All results
/// are in original units.
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
}

/// Extension of [`Surrogate`] for models that learn online.
pub trait SurrogateExt: Surrogate {
    /// Condition on new rows with frozen hyperparameters.
    fn condition_on(&mut self, x: &[f64], y: &[f64]) -> Result<()>;
    /// Append rows and refit warm-started.
    fn append_and_refit(&mut self, x: &[f64], y: &[f64]) -> Result<()>;
}

impl<K: Kernel + Clone> Surrogate for MultiTaskGp<K> {
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
}

impl<K: Kernel + Clone> SurrogateExt for MultiTaskGp<K> {
    fn condition_on(&mut self, x: &[f64], y: &[f64]) -> Result<()> {
        MultiTaskGp::condition_on(self, x, y)
    }
    fn append_and_refit(&mut self, x: &[f64], y: &[f64]) -> Result<()> {
        MultiTaskGp::append_and_refit(self, x, y).map(|_| ())
    }
}
