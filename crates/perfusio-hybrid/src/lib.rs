//! # perfusio-hybrid
//!
//! The twin's "cognitive" part: a hybrid state-space model of a CHO perfusion culture. The
//! mechanistic one-day step of `perfusio-mechanistic` is the prior mean of a multi-task
//! Gaussian process (`perfusio-gp`) that learns what the mechanism gets wrong; a Kalman
//! filter estimates today's state from noisy, incomplete samples; and forecasts from the
//! real current day carry honest uncertainty into the design policy.
//!
//! | piece | where |
//! |---|---|
//! | training data: runs, applied controls, deduplicated (run, day), indexed multi-task rows | [`Dataset`] |
//! | the prior mean: mechanism in log coordinates, batched, fallible, with a Jacobian | [`MechanisticMean`] |
//! | the model: offline fit on many runs, online warm retraining, save/load | [`HybridModel`] |
//! | state estimation (extended Kalman filter in log coordinates) | [`StateEstimate`], [`HybridModel::filter_update`] |
//! | one-day prediction with quantiles | [`HybridModel::predict_next_state`] |
//! | Monte-Carlo and moment-matching forecasts | [`HybridModel::forecast`] |
//! | rRMSE, coverage, sharpness, CRPS | [`metrics`] |
//! | calibrating the mechanism's kinetic parameters (weighted least squares, bounded Levenberg–Marquardt on argmin) | [`calibrate`], [`Calibrator`] |
//! | the accuracy pipeline of `perfusio evaluate` | [`evaluate`] |
//!
//! ## Why log coordinates
//! Every species is modelled as `z = ln(s + c)` ([`LogTransform`]). The assays' noise is
//! multiplicative and so are the mechanism's errors (a growth rate 10 % off gives errors
//! proportional to the cell density), so in `z` both are close to homoscedastic: the GP's
//! per-species noise and prior variance describe every day of a run instead of being set by
//! its largest values, and forecast bands are as wide as the errors they describe.
//!
//! ## Example
//! ```no_run
//! use perfusio_core::Control;
//! use perfusio_hybrid::{ForecastOptions, HybridConfig, HybridModel};
//! use perfusio_mechanistic::{doe, VirtualReactorConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // offline training on the 27-run design
//! let runs = doe::simulate_design(&doe::training_design(), &VirtualReactorConfig::default(), 28)?;
//! let labelled: Vec<_> = runs.into_iter().map(|t| (t, None)).collect();
//! let (model, report) = HybridModel::fit_runs(HybridConfig::default(), &labelled)?;
//! assert!(report.converged);
//! // filter a new run's first days, then forecast 7 days at default controls
//! let run = &labelled[0].0;
//! let measured: Vec<_> = run.rows()[..6].iter().map(|r| r.species).collect();
//! let controls: Vec<_> = run.rows()[..6].iter().map(|r| r.controls).collect();
//! let est = model.filter_sequence(0, &measured, &controls)?;
//! let f = model.forecast(est.last().unwrap(), &vec![Control::defaults(); 7], &ForecastOptions::default())?;
//! println!("titer on day {}: {:.0} mg/L", f.state[6].day, f.state[6].mean[8]);
//! # Ok(()) }
//! ```
//!
//! This crate depends on `perfusio-core`, `perfusio-mechanistic` and `perfusio-gp` only: no
//! connectors, no audit, no polars, no async-opcua.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]
#![deny(clippy::float_cmp)]
#![allow(clippy::needless_range_loop)]

pub mod calibrate;
mod config;
mod dataset;
mod error;
pub mod evaluate;
mod filter;
mod forecast;
mod mean;
pub mod metrics;
mod model;
mod stats;
mod transform;

pub use calibrate::{
    CalibratedParameter, Calibration, CalibrationConfig, CalibrationData, CalibrationReport,
    Calibrator, DEFAULT_PARAMETERS, PathwayTest, SimexReport, VANISHING_FACTOR,
};
pub use config::{GpSettings, HybridConfig, MeanKind};
pub use dataset::{
    DAY_COL, Dataset, DayRecord, InputSource, N_BASE, N_COLS, RunRecord, TrainingRows,
    Transition as DataTransition, base_row,
};
pub use error::{HybridError, Result};
pub use filter::{
    FIRST_DAY_UNMEASURED_SD, GAP_VAR_PER_DAY, INNOVATION_GATE_SD, MATCH_ROUNDS, MATCH_TOL,
    MATCHED_SD_BOUNDS, MatchedSd, StateEstimate,
};
pub use forecast::{DayBand, Forecast, ForecastJob, ForecastMethod, ForecastOptions, Scenarios};
pub use mean::{
    FD_STEP_CONTROL, FD_STEP_Z, MechanismInputMean, MechanisticMean, PRIOR_H_INIT, PRIOR_H_MAX,
    PRIOR_RTOL, PersistenceMean, PriorIntegrator,
};
pub use model::{
    HybridFitReport, HybridModel, LineChoice, LinearisedTransition, MODEL_FORMAT, NextState,
    SpeciesPrediction, Transition, UNLABELLED_LINE,
};
/// The retraining hook of [`HybridModel::retrain_pausable`] (from `perfusio-gp`).
pub use perfusio_gp::Pause;
pub use stats::{Mat9, Q_LEVELS, Z_QUANTILES};
pub use transform::{DEFAULT_OFFSETS, LogTransform, default_upper};

#[cfg(test)]
mod auto_traits {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<HybridModel>();
        send_sync::<Forecast>();
        send_sync::<StateEstimate>();
        send_sync::<Dataset>();
        send_sync::<HybridError>();
    }
}
