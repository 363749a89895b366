//! [`HybridModel`]: the mechanistic one-day step as the prior mean of a multi-task GP that
//! learns what the mechanism gets wrong, trained offline on many runs or online, day by day.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfusio_core::{
    ControlArray, N_CONTROLS, N_SPECIES, Species, SpeciesArray, Trajectory, Variable,
};
use perfusio_gp::kernel::{Kernel, KernelSpec, LevelEmbedding, Matern, Nu};
use perfusio_gp::special::{log_norm_cdf, log1mexp, norm_sf};
use perfusio_gp::{ConstantMean, GpParams, MultiTaskGp, PriorMean, TaskPrediction};
use perfusio_mechanistic::KineticParams;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calibrate::{
    Calibration, CalibrationConfig, CalibrationData, CalibrationReport, Calibrator,
};
use crate::config::{HybridConfig, MeanKind};
use crate::dataset::{DAY_COL, Dataset, InputSource, N_BASE, N_COLS, TrainingRows, base_row};
use crate::error::{HybridError, Result};
use crate::mean::{MechanismInputMean, MechanisticMean, PersistenceMean};
use crate::stats::Z_QUANTILES;

/// What a (re)training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridFitReport {
    /// Training rows (species × transitions with a measured target).
    pub rows: usize,
    /// One-day transitions.
    pub transitions: usize,
    /// Runs contributing.
    pub runs: usize,
    /// Negative log marginal likelihood of the GP (standardised units).
    pub nlml: f64,
    /// Optimiser iterations.
    pub iterations: u64,
    /// Likelihood-and-gradient evaluations.
    pub evaluations: u64,
    /// Whether the optimiser stopped on a tolerance (not on its iteration cap).
    pub converged: bool,
    /// Why the optimiser stopped.
    pub termination: String,
    /// Whether the fit started from the previous hyperparameters.
    pub warm_start: bool,
    /// Wall time of the fit (data preparation and calibration included).
    pub wall_time: Duration,
    /// The calibrated kinetic parameters in force after this (re)training, by name (empty
    /// when the mechanism was never calibrated): what a `model_retrained` record names.
    #[serde(default)]
    pub calibrated: BTreeMap<String, f64>,
    /// The pathway switches the calibration in force tested, with their values in the
    /// mechanism ([`crate::CalibrationConfig::pathways`]; empty when none was tested).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pathways: BTreeMap<String, bool>,
    /// The per-line calibrations this offline fit ran, by cell line
    /// ([`crate::CalibrationConfig::per_line`]; empty otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub line_calibrations: BTreeMap<String, CalibrationReport>,
    /// The calibration run by this (re)training, if one ran.
    #[serde(default)]
    pub calibration: Option<CalibrationReport>,
    /// Why a calibration that was due did not run or was not used (too few transitions, a
    /// failure online), if so.
    #[serde(default)]
    pub calibration_skipped: Option<String>,
    /// The mechanism's one-day sd matched to the runs before the GP was fitted
    /// ([`HybridConfig::match_mechanism_sd`]; offline fits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism_sd: Option<crate::filter::MatchedSd>,
    /// The fraction of the mechanism's one-day change the GP's prior mean took, per species
    /// ([`crate::GpSettings::mechanism_weights`]; `None` when off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism_weights: Option<SpeciesArray<f64>>,
}

/// Prediction of one species' next measured value (original units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeciesPrediction {
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Quantiles at [`crate::Q_LEVELS`] (5, 10, 50, 90, 95 %).
    pub quantiles: [f64; 5],
}

/// One-day-ahead prediction of every species.
#[derive(Debug, Clone, PartialEq)]
pub struct NextState {
    /// Culture day predicted.
    pub day: u32,
    /// Per species, canonical order.
    pub species: SpeciesArray<SpeciesPrediction>,
}

/// Latent one-day transition in the model's coordinates (`z`): mean and covariance of
/// `z_{t+1}` given a base input.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Mean of `z_{t+1}`.
    pub mean: SpeciesArray<f64>,
    /// Covariance (latent: the model's uncertainty, no measurement noise), row-major 9×9.
    pub cov: [[f64; N_SPECIES]; N_SPECIES],
}

/// [`Transition`] with the Jacobian of the mean with respect to the state `z_t`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearisedTransition {
    /// The transition.
    pub transition: Transition,
    /// `∂ mean_k / ∂ z_t,j`, row-major 9×9.
    pub jacobian: [[f64; N_SPECIES]; N_SPECIES],
}

/// The hybrid state-space model.
///
/// The prior mean of the GP is the mechanism's one-day step ([`MechanisticMean`]) in log
/// coordinates ([`crate::LogTransform`]); the GP (Matérn-5/2 over the 9 species and 6
/// controls, multi-task over the 9 species) learns the mechanism's error from the data and
/// stays a real prior mean at prediction time: where the GP has no data, predictions are
/// the mechanism's. Before any fit the model *is* the mechanism, with a per-species
/// transition uncertainty ([`HybridConfig::mechanism_sd`]).
///
/// A model is one JSON file ([`HybridModel::save`]): configuration (the prior's kinetic
/// parameters included), dataset and GP (hyperparameters, normalisation, factorisation). A
/// loaded model rebuilds its prior mean from the stored parameters, checks its fingerprint
/// against the GP's and predicts bit-identically.
#[derive(Debug, Clone)]
pub struct HybridModel {
    config: HybridConfig,
    dataset: Dataset,
    pub(crate) gp: Option<MultiTaskGp>,
    last_fit: Option<HybridFitReport>,
    /// The mechanism (always available, whatever the prior mean).
    mechanism: Arc<MechanisticMean>,
    /// The GP's prior mean (per [`HybridConfig::mean`]).
    gp_mean: Arc<dyn PriorMean>,
    /// The one-day step before the GP has data.
    untrained: Arc<dyn PriorMean>,
    /// Process variance per species (`z`): the part of the GP's fitted noise that the
    /// measurement noise does not explain (see [`HybridModel::process_variance`]).
    process_var: SpeciesArray<f64>,
    /// The calibrated kinetic parameters of the mechanism (`None`: the prior as configured).
    calibrated_params: Option<KineticParams>,
    /// Report of the last calibration that was used.
    calibration: Option<CalibrationReport>,
    /// Warm retrains since the last calibration (online schedule).
    retrains_since_calibration: u32,
    /// Cell lines of the GP's line embedding, in level order (empty: no embedding).
    lines: Vec<String>,
    /// The line predictions are made for (`None`: an unseen line).
    prediction_line: Option<String>,
    /// Controls left out of the GP's kernel at the last fit (see
    /// [`crate::GpSettings::ignore_unvaried_controls`]), canonical order.
    ignored_controls: [bool; N_CONTROLS],
    /// The mechanism's one-day sd matched to the training runs' innovations
    /// ([`HybridConfig::match_mechanism_sd`]); `None`: [`HybridConfig::mechanism_sd`].
    pub(crate) matched_sd: Option<SpeciesArray<f64>>,
    /// The fraction of the mechanism's one-day change in the GP's prior mean, per species
    /// ([`crate::GpSettings::mechanism_weights`]); `None`: all of it.
    mechanism_weights: Option<SpeciesArray<f64>>,
    /// Per cell line, the kinetic parameters of its own mechanism, calibrated on its runs
    /// ([`crate::CalibrationConfig::per_line`]); a line without one (and an unseen line)
    /// uses the shared mechanism.
    line_params: BTreeMap<String, KineticParams>,
    /// The mechanisms of `line_params`.
    line_mechanisms: BTreeMap<String, Arc<MechanisticMean>>,
    /// The per-line calibrations behind `line_params`.
    line_calibrations: BTreeMap<String, CalibrationReport>,
}

/// Line label of runs recorded without one, when the model learns across lines.
pub const UNLABELLED_LINE: &str = "(unlabelled)";

pub(crate) fn r_line(label: Option<&str>) -> &str {
    label.unwrap_or(UNLABELLED_LINE)
}

/// Which line a model's predictions are for ([`HybridModel::select_line`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineChoice {
    /// The model has no line embedding (fewer than two lines in its data): every run is
    /// predicted alike.
    NoEmbedding,
    /// A line of the training data, at this level of the embedding.
    Known(usize),
    /// A line without data: predictions keep the part of what was learned that all lines
    /// share and carry the rest as extra uncertainty (see [`perfusio_gp::LevelEmbedding`]).
    Unseen,
}

/// The three prior means of a model whose mechanism has `params`.
type Means = (Arc<MechanisticMean>, Arc<dyn PriorMean>, Arc<dyn PriorMean>);

/// The mechanism with `params` in the coordinates and integrator of `config`.
fn mechanism_of(config: &HybridConfig, params: KineticParams) -> Arc<MechanisticMean> {
    Arc::new(MechanisticMean::new(
        params,
        config.transform,
        &config.design_space,
        config.integrator,
    ))
}

fn build_means(
    config: &HybridConfig,
    params: KineticParams,
    weights: Option<&SpeciesArray<f64>>,
) -> Means {
    let mechanism = mechanism_of(config, params);
    let (gp_mean, untrained): (Arc<dyn PriorMean>, Arc<dyn PriorMean>) = match config.mean {
        MeanKind::Mechanistic if config.gp.mechanism_inputs => (
            match weights {
                Some(w) => Arc::new(MechanismInputMean::with_weights(&mechanism, *w)),
                None => Arc::new(MechanismInputMean::new(&mechanism)),
            },
            mechanism.clone(),
        ),
        MeanKind::Mechanistic => (mechanism.clone(), mechanism.clone()),
        MeanKind::Constant => (Arc::new(ConstantMean(0.0)), Arc::new(PersistenceMean)),
        MeanKind::Persistence => (Arc::new(PersistenceMean), Arc::new(PersistenceMean)),
    };
    (mechanism, gp_mean, untrained)
}

/// What the calibration step of a (re)training produced.
#[derive(Default)]
struct CalibrationStep {
    run: Option<Calibration>,
    skipped: Option<String>,
}

/// File format tag of saved models.
pub const MODEL_FORMAT: &str = "perfusio-hybrid/1";

#[derive(Serialize, Deserialize)]
struct ModelFile {
    format: String,
    config: HybridConfig,
    dataset: Dataset,
    gp: Option<MultiTaskGp>,
    last_fit: Option<HybridFitReport>,
    #[serde(default)]
    process_var: SpeciesArray<f64>,
    #[serde(default)]
    calibrated_params: Option<KineticParams>,
    #[serde(default)]
    calibration: Option<CalibrationReport>,
    #[serde(default)]
    retrains_since_calibration: u32,
    #[serde(default)]
    lines: Vec<String>,
    #[serde(default)]
    prediction_line: Option<String>,
    #[serde(default, skip_serializing_if = "none_ignored")]
    ignored_controls: [bool; N_CONTROLS],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    matched_sd: Option<SpeciesArray<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mechanism_weights: Option<SpeciesArray<f64>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    line_params: BTreeMap<String, KineticParams>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    line_calibrations: BTreeMap<String, CalibrationReport>,
}

fn none_ignored(v: &[bool; N_CONTROLS]) -> bool {
    v.iter().all(|i| !i)
}

impl HybridModel {
    /// An untrained model: the mechanism alone, with no data.
    pub fn new(config: HybridConfig) -> Result<Self> {
        config.check()?;
        let (mechanism, gp_mean, untrained) = build_means(&config, config.prior, None);
        Ok(Self {
            config,
            dataset: Dataset::default(),
            gp: None,
            last_fit: None,
            mechanism,
            gp_mean,
            process_var: [0.0; N_SPECIES],
            untrained,
            calibrated_params: None,
            calibration: None,
            retrains_since_calibration: 0,
            lines: Vec::new(),
            prediction_line: None,
            ignored_controls: [false; N_CONTROLS],
            matched_sd: None,
            mechanism_weights: None,
            line_params: BTreeMap::new(),
            line_mechanisms: BTreeMap::new(),
            line_calibrations: BTreeMap::new(),
        })
    }

    /// Trains a model offline on many runs (for example the 27-run design): records every
    /// run, estimates every day's state with the mechanism-only filter, and fits the GP from
    /// scratch. `runs` pairs each trajectory with an optional cell-line label.
    pub fn fit_runs(
        config: HybridConfig,
        runs: &[(Trajectory, Option<String>)],
    ) -> Result<(Self, HybridFitReport)> {
        let mut model = Self::new(config)?;
        for (t, line) in runs {
            model.dataset.add_trajectory(t, line.as_deref())?;
        }
        let report = model.fit_offline()?;
        Ok((model, report))
    }

    /// The offline fit of the recorded data: with [`HybridConfig::calibrate`] on, the
    /// offline calibration ([`HybridModel::calibrate_offline`]); otherwise, with
    /// [`HybridConfig::match_mechanism_sd`] on, the mechanism's one-day sd matched to the
    /// runs ([`HybridModel::match_mechanism_sd`]); then the states are estimated with the
    /// (calibrated) mechanism and the GP is fitted from scratch. With fewer transitions
    /// than the calibration needs, it is skipped and the report says so. On an error the
    /// model is left as it was.
    pub fn fit_offline(&mut self) -> Result<HybridFitReport> {
        let start = Instant::now();
        let backup = (
            self.dataset.clone(),
            self.means(),
            self.calibrated_params,
            self.matched_sd,
            self.mechanism_weights,
            (self.line_params.clone(), self.line_calibrations.clone()),
        );
        let result = (|| {
            // an offline fit starts from the configured sd: a match belongs to its data
            self.matched_sd = None;
            let step = self.offline_calibration()?;
            let matched = if self.config.match_mechanism_sd && step.run.is_none() {
                let m = self.match_mechanism_sd()?;
                self.dataset.clear_estimates();
                Some(m)
            } else {
                None
            };
            self.estimate_states()?;
            let mut report = self.fit_gp(false, start, step, &|| {})?;
            report.mechanism_sd = matched;
            if self.config.calibrate.as_ref().is_some_and(|c| c.per_line) {
                report.line_calibrations = self.line_calibrations.clone();
            }
            if let Some(last) = &mut self.last_fit {
                last.mechanism_sd.clone_from(&report.mechanism_sd);
                last.line_calibrations.clone_from(&report.line_calibrations);
            }
            Ok(report)
        })();
        if result.is_err() {
            let (dataset, means, params, sd, weights, (line_params, line_cals)) = backup;
            self.dataset = dataset;
            self.set_means(means);
            self.calibrated_params = params;
            self.matched_sd = sd;
            self.mechanism_weights = weights;
            self.set_line_params(line_params);
            self.line_calibrations = line_cals;
        }
        result
    }

    /// Calibrates the mechanism on the recorded data in rounds, without fitting the GP
    /// (what [`HybridModel::fit_offline`] does first). Each round calibrates from the
    /// previous round's estimate, with the input-noise weights and corrections refreshed
    /// there; with filtered inputs ([`crate::CalibrationConfig::input_source`]) each round
    /// first re-estimates every day's state with the mechanism-only filter of the current
    /// parameters (estimates are derived data offline). Afterwards every state is
    /// re-estimated with the calibrated mechanism. The rounds stop when no parameter moved by more than
    /// [`crate::CalibrationConfig::round_tol`] standard errors, or after
    /// [`crate::CalibrationConfig::rounds`]. Returns the last round's report (`rounds`
    /// and `wall_time` cover them all), or `None` when calibration is off or the data are
    /// too few. The GP, if any, is left as it was: retrain it.
    pub fn calibrate_offline(&mut self) -> Result<Option<CalibrationReport>> {
        let step = self.offline_calibration()?;
        Ok(step.run.map(|c| {
            self.calibrated_params = Some(c.params);
            self.calibration = Some(c.report.clone());
            self.retrains_since_calibration = 0;
            c.report
        }))
    }

    /// Calibrates a mechanism for each cell line of the data on that line's runs alone
    /// ([`crate::CalibrationConfig::per_line`]), from the prior with the pathway test; with
    /// fewer than two lines, or too few transitions for a line, that line keeps the shared
    /// mechanism.
    fn calibrate_lines(&mut self, calibrator: &Calibrator, cfg: &CalibrationConfig) -> Result<()> {
        let mut labels: Vec<Option<String>> = Vec::new();
        for r in self.dataset.runs() {
            if !labels.contains(&r.line) {
                labels.push(r.line.clone());
            }
        }
        let mut params = BTreeMap::new();
        let mut reports = BTreeMap::new();
        if labels.len() >= 2 {
            for label in &labels {
                let data = CalibrationData::from_dataset(
                    &self.dataset.of_line(label.as_deref()),
                    &self.config.transform,
                    &self.config.observation_cv,
                    cfg.input_source,
                );
                match calibrator.run_checked(&data, &self.config.prior, false) {
                    Ok(c) => {
                        let key = r_line(label.as_deref()).to_string();
                        params.insert(key.clone(), c.params);
                        reports.insert(key, c.report);
                    }
                    Err(HybridError::TooFewTransitions { got, need }) => {
                        tracing::info!(
                            line = r_line(label.as_deref()),
                            got,
                            need,
                            "too few transitions for a mechanism of the line's own"
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.set_line_params(params);
        self.line_calibrations = reports;
        Ok(())
    }

    /// The rounds of [`HybridModel::calibrate_offline`]; the model's means follow the
    /// estimates, the calibration is committed by the caller. The stored estimates are those
    /// of the last mechanism.
    fn offline_calibration(&mut self) -> Result<CalibrationStep> {
        let Some(cfg) = self.config.calibrate.clone() else {
            return Ok(CalibrationStep::default());
        };
        if self.config.mean != MeanKind::Mechanistic {
            return Ok(CalibrationStep::default());
        }
        let t0 = Instant::now();
        let calibrator = Calibrator::new(&self.config, &cfg)?;
        // a calibration from scratch replaces the per-line mechanisms (or drops them)
        self.set_line_params(BTreeMap::new());
        self.line_calibrations.clear();
        let mut last: Option<Calibration> = None;
        let mut rounds = 0;
        // the pathway tests of the first round (later rounds start from its switches)
        let mut pathways = Vec::new();
        let refilter = cfg.input_source == InputSource::Filtered;
        for round in 0..cfg.rounds {
            // with measured inputs the estimates only fill missing species
            self.estimate_states()?;
            let data = self.calibration_data();
            let start = *self.mechanism.params();
            let warm = round > 0 || self.calibrated_params.is_some();
            let c = match calibrator.run_checked(&data, &start, warm) {
                Ok(c) => c,
                Err(e @ HybridError::TooFewTransitions { .. }) => {
                    return Ok(CalibrationStep {
                        run: None,
                        skipped: Some(format!("calibration skipped: {e}")),
                    });
                }
                Err(e) => return Err(e),
            };
            rounds += 1;
            if !c.report.pathways.is_empty() {
                pathways.clone_from(&c.report.pathways);
            }
            let moved = c
                .report
                .parameters
                .iter()
                .map(|p| match p.std_error {
                    Some(se) if se > 0.0 => (p.estimate / p.start).ln().abs() / (se / p.estimate),
                    _ => 0.0,
                })
                .fold(0.0, f64::max);
            self.set_means(build_means(
                &self.config,
                c.params,
                self.mechanism_weights.as_ref(),
            ));
            if refilter {
                self.dataset.clear_estimates();
            }
            last = Some(c);
            if moved <= cfg.round_tol {
                break;
            }
        }
        if cfg.simex_replicates > 0
            && let Some(naive) = last.take()
        {
            // the data of the last round (its estimates are kept with measured inputs, and
            // re-estimated with the calibrated mechanism with filtered ones)
            self.estimate_states()?;
            let data = self.calibration_data();
            let c = calibrator.simex(&data, &naive, self.config.gp.seed)?;
            self.set_means(build_means(
                &self.config,
                c.params,
                self.mechanism_weights.as_ref(),
            ));
            if refilter {
                self.dataset.clear_estimates();
            }
            last = Some(c);
        }
        if cfg.per_line {
            self.calibrate_lines(&calibrator, &cfg)?;
        }
        if !refilter && last.is_some() {
            // the GP trains on estimates of the calibrated mechanism
            self.dataset.clear_estimates();
        }
        self.estimate_states()?;
        Ok(CalibrationStep {
            run: last.map(|mut c| {
                c.report.rounds = rounds;
                c.report.pathways = pathways;
                c.report.wall_time = t0.elapsed();
                if !c.report.converged {
                    tracing::warn!(
                        iterations = c.report.iterations,
                        termination = %c.report.termination,
                        "calibration of the mechanism stopped before converging"
                    );
                }
                c
            }),
            skipped: None,
        })
    }

    fn means(&self) -> Means {
        (
            self.mechanism.clone(),
            self.gp_mean.clone(),
            self.untrained.clone(),
        )
    }

    fn set_means(&mut self, (mechanism, gp_mean, untrained): Means) {
        self.mechanism = mechanism;
        self.gp_mean = gp_mean;
        self.untrained = untrained;
    }

    /// The fraction of the mechanism's one-day change the GP's prior mean takes, per species
    /// ([`crate::GpSettings::mechanism_weights`]); `None`: all of it.
    pub fn mechanism_weights(&self) -> Option<&SpeciesArray<f64>> {
        self.mechanism_weights.as_ref()
    }

    /// The kinetic parameters of the mechanism in force: the calibrated ones, or the prior.
    pub fn mechanism_params(&self) -> &KineticParams {
        self.mechanism.params()
    }

    /// The kinetic parameters of the mechanism of cell line `line` (its own, calibrated on
    /// its runs, or the shared mechanism's: [`HybridModel::mechanism_params`]). `None` is an
    /// unseen line, which uses the shared mechanism.
    pub fn mechanism_params_for(&self, line: Option<&str>) -> &KineticParams {
        self.mechanism_for(line).params()
    }

    /// The cell lines with a mechanism of their own, with its parameters.
    pub fn line_params(&self) -> &BTreeMap<String, KineticParams> {
        &self.line_params
    }

    /// The calibrations behind [`HybridModel::line_params`], by line.
    pub fn line_calibrations(&self) -> &BTreeMap<String, CalibrationReport> {
        &self.line_calibrations
    }

    /// The mechanism of cell line `line`: its own, or the shared one.
    fn mechanism_for(&self, line: Option<&str>) -> &Arc<MechanisticMean> {
        line.and_then(|l| self.line_mechanisms.get(l))
            .unwrap_or(&self.mechanism)
    }

    /// The one-day step before the GP has data, for cell line `line`.
    fn untrained_for(&self, line: Option<&str>) -> Arc<dyn PriorMean> {
        match line.and_then(|l| self.line_mechanisms.get(l)) {
            Some(m) if self.config.mean == MeanKind::Mechanistic => m.clone(),
            _ => self.untrained.clone(),
        }
    }

    /// Replaces the per-line mechanisms.
    fn set_line_params(&mut self, params: BTreeMap<String, KineticParams>) {
        self.line_mechanisms = params
            .iter()
            .map(|(l, p)| (l.clone(), mechanism_of(&self.config, *p)))
            .collect();
        self.line_params = params;
    }

    /// Whether the mechanism has been calibrated.
    pub fn is_calibrated(&self) -> bool {
        self.calibrated_params.is_some()
    }

    /// Report of the last calibration in use (estimates, standard errors, correlations).
    pub fn calibration(&self) -> Option<&CalibrationReport> {
        self.calibration.as_ref()
    }

    /// The calibrated parameters by name (empty when not calibrated).
    pub fn calibrated_values(&self) -> BTreeMap<String, f64> {
        match (&self.calibration, self.calibrated_params) {
            (Some(r), Some(p)) => r
                .parameters
                .iter()
                .filter_map(|c| p.get(&c.name).map(|v| (c.name.clone(), v)))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// The pathway switches the calibration in force tested, with their values in the
    /// mechanism (empty when not calibrated or none was tested).
    pub fn calibrated_switches(&self) -> BTreeMap<String, bool> {
        match (&self.calibration, self.calibrated_params) {
            (Some(r), Some(p)) => r
                .pathways
                .iter()
                .filter_map(|t| p.switch(&t.name).map(|v| (t.name.clone(), v)))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// The residual data of a calibration on the recorded dataset (see
    /// [`CalibrationData::from_dataset`]).
    pub fn calibration_data(&self) -> CalibrationData {
        CalibrationData::from_dataset(
            &self.dataset,
            &self.config.transform,
            &self.config.observation_cv,
            self.config
                .calibrate
                .as_ref()
                .map_or(InputSource::Filtered, |c| c.input_source),
        )
    }

    /// Runs the calibration when one is due: always from scratch (`warm == false`); online
    /// (`warm`), every [`crate::CalibrationConfig::every_retrains`] warm retrains of a model
    /// whose mechanism was calibrated before (offline, or loaded calibrated). A cold-start
    /// online model keeps its prior mechanism unless
    /// [`crate::CalibrationConfig::online_from_prior`] asks for it: then its first warm
    /// retrain with enough transitions calibrates from the prior. Too few transitions skip
    /// it; online a failure is logged and skipped too, offline it is an error.
    fn calibration_step(&mut self, warm: bool) -> Result<CalibrationStep> {
        let Some(cfg) = self.config.calibrate.clone() else {
            return Ok(CalibrationStep::default());
        };
        if self.config.mean != MeanKind::Mechanistic {
            return Ok(CalibrationStep::default());
        }
        if warm {
            if self.calibrated_params.is_none() {
                if !cfg.online_from_prior {
                    return Ok(CalibrationStep::default());
                }
            } else {
                self.retrains_since_calibration = self.retrains_since_calibration.saturating_add(1);
                if self.retrains_since_calibration < cfg.every_retrains {
                    return Ok(CalibrationStep::default());
                }
            }
        }
        let calibrator = Calibrator::new(&self.config, &cfg)?;
        let data = self.calibration_data();
        let start = *self.mechanism.params();
        match calibrator.run_checked(&data, &start, self.calibrated_params.is_some()) {
            Ok(c) => {
                if !c.report.converged {
                    tracing::warn!(
                        iterations = c.report.iterations,
                        termination = %c.report.termination,
                        "calibration of the mechanism stopped before converging"
                    );
                }
                Ok(CalibrationStep {
                    run: Some(c),
                    skipped: None,
                })
            }
            Err(e @ HybridError::TooFewTransitions { .. }) => Ok(CalibrationStep {
                run: None,
                skipped: Some(format!("calibration skipped: {e}")),
            }),
            Err(e) if warm => {
                tracing::warn!(error = %e, "calibration failed; keeping the mechanism");
                self.retrains_since_calibration = 0;
                Ok(CalibrationStep {
                    run: None,
                    skipped: Some(format!("calibration failed, mechanism kept: {e}")),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Records more runs (each with an optional cell-line label; a trajectory's own clone
    /// label is used when none is given) for the next [`HybridModel::retrain`]: for example
    /// a saved model of lines A and B extended with line C's runs and retrained warm.
    /// Returns how many new days were recorded (days already recorded are no-ops).
    pub fn add_runs(&mut self, runs: &[(Trajectory, Option<String>)]) -> Result<usize> {
        let mut added = 0;
        for (t, line) in runs {
            added += self.dataset.add_trajectory(t, line.as_deref())?;
        }
        Ok(added)
    }

    /// An untrained model over an existing dataset (its state estimates included), e.g. to
    /// train another configuration on exactly the same rows. Call [`HybridModel::retrain`].
    pub fn with_dataset(config: HybridConfig, dataset: Dataset) -> Result<Self> {
        let mut m = Self::new(config)?;
        m.dataset = dataset;
        Ok(m)
    }

    /// The configuration.
    pub fn config(&self) -> &HybridConfig {
        &self.config
    }

    /// The training data.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The fitted GP, if any.
    pub fn gp(&self) -> Option<&MultiTaskGp> {
        self.gp.as_ref()
    }

    /// The mechanism of the model (the prior mean of the hybrid).
    pub fn mechanism(&self) -> &MechanisticMean {
        &self.mechanism
    }

    /// Report of the last (re)training.
    pub fn last_fit(&self) -> Option<&HybridFitReport> {
        self.last_fit.as_ref()
    }

    /// Records a day's accepted measurements (see [`Dataset::record_day`]).
    pub fn record_day(
        &mut self,
        run: &str,
        line: Option<&str>,
        day: u32,
        measured: SpeciesArray<Option<f64>>,
    ) -> Result<bool> {
        self.dataset.record_day(run, line, day, measured)
    }

    /// Records the controls **applied** over `day → day + 1` (see [`Dataset::record_applied`]).
    pub fn record_applied(
        &mut self,
        run: &str,
        day: u32,
        applied: ControlArray<f64>,
    ) -> Result<bool> {
        self.dataset.record_applied(run, day, applied)
    }

    /// Records an addition to the culture after a day's sample (see
    /// [`Dataset::record_addition`]): that day's transition starts from the sample plus it.
    pub fn record_addition(&mut self, run: &str, day: u32, delta: SpeciesArray<f64>) -> Result<()> {
        self.dataset.record_addition(run, day, delta)
    }

    /// Stores a day's state estimate (the filter's posterior mean, original units).
    pub fn record_estimate(
        &mut self,
        run: &str,
        day: u32,
        estimate: SpeciesArray<f64>,
    ) -> Result<()> {
        self.dataset.set_estimate(run, day, estimate)
    }

    /// Runs the state filter over every recorded run with the current model and stores the
    /// estimate of each day that has none (an estimate, once stored, is kept: it is what the
    /// model knew that day).
    pub fn estimate_states(&mut self) -> Result<()> {
        let mut updates = Vec::new();
        let tr = self.config.transform;
        for run in self.dataset.runs() {
            if run.days.values().all(|d| d.estimate.is_some()) {
                continue;
            }
            self.filter_run(run, |day, rec, _, posterior| {
                if rec.estimate.is_none() {
                    updates.push((run.id.clone(), day, posterior.mean_species(&tr)));
                }
            })?;
        }
        for (run, day, e) in updates {
            self.dataset.set_estimate(&run, day, e)?;
        }
        Ok(())
    }

    /// Whether the GP's inputs carry the mechanism's prediction.
    fn augmented(&self) -> bool {
        self.config.mean == MeanKind::Mechanistic && self.config.gp.mechanism_inputs
    }

    /// Number of base columns of the GP's inputs (16, or 25 with the mechanism's
    /// prediction).
    pub fn gp_base_cols(&self) -> usize {
        let mut d = if self.augmented() {
            N_BASE + N_SPECIES
        } else {
            N_BASE
        };
        if self.embedding_on() {
            d += 1;
        }
        d
    }

    /// Whether the GP's inputs end with the cell line's level.
    fn embedding_on(&self) -> bool {
        self.config.gp.line_embedding_dims > 0 && self.lines.len() >= 2
    }

    /// Rank of the task covariance the GP is fitted with: [`crate::GpSettings::rank`] with a
    /// line embedding, [`crate::GpSettings::rank_one_line`] (if set) without.
    pub fn task_rank(&self) -> usize {
        let g = &self.config.gp;
        match g.rank_one_line {
            Some(r) if !self.embedding_on() => r,
            _ => g.rank,
        }
    }

    /// The cell lines the model has learned (level order; empty without an embedding).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The line predictions are made for (`None`: an unseen line).
    pub fn prediction_line(&self) -> Option<&str> {
        self.prediction_line.as_deref()
    }

    /// Chooses the cell line that predictions, filters and forecasts are for, and says
    /// what the model knows of it. A label the model was not trained on is allowed: it is
    /// predicted as an unseen line (shared knowledge only, with the extra uncertainty of
    /// the line-specific part); use [`HybridModel::require_line`] to refuse it instead.
    /// `None` selects an unseen line. The choice is saved with the model.
    pub fn select_line(&mut self, label: Option<&str>) -> LineChoice {
        self.prediction_line = label.map(str::to_string);
        self.line_choice()
    }

    /// What the model knows of its prediction line.
    pub fn line_choice(&self) -> LineChoice {
        if !self.embedding_on() {
            return LineChoice::NoEmbedding;
        }
        match self
            .prediction_line
            .as_deref()
            .and_then(|l| self.lines.iter().position(|k| k == l))
        {
            Some(i) => LineChoice::Known(i),
            None => LineChoice::Unseen,
        }
    }

    /// The embedding level of a line the model was trained on, or
    /// [`HybridError::UnknownLine`] naming the known lines.
    pub fn require_line(&self, label: &str) -> Result<usize> {
        self.lines
            .iter()
            .position(|k| k == label)
            .ok_or_else(|| HybridError::UnknownLine {
                label: label.to_string(),
                known: self.lines.clone(),
            })
    }

    /// The level code of a line in the GP's input: its index, −1 when unseen.
    fn line_code(&self, label: Option<&str>) -> f64 {
        let label = label.unwrap_or("");
        self.lines
            .iter()
            .position(|k| k == label)
            .map_or(-1.0, |i| i as f64)
    }

    /// The lines of the dataset in level order: the model's current lines first, then new
    /// labels in order of first appearance.
    fn dataset_lines(&self) -> Vec<String> {
        let mut lines = self.lines.clone();
        for r in self.dataset.runs() {
            let l = r_line(r.line.as_deref());
            if !lines.iter().any(|k| k == l) {
                lines.push(l.to_string());
            }
        }
        lines
    }

    /// The GP's input for a base row in `z` coordinates: the row itself, followed by the
    /// mechanism's one-day prediction when [`crate::GpSettings::mechanism_inputs`] is on.
    pub fn gp_input(&self, x: &[f64; N_BASE]) -> Result<Vec<f64>> {
        self.gp_input_for(x, self.prediction_line.as_deref())
    }

    /// [`HybridModel::gp_input`] for cell line `line` (its mechanism and embedding level).
    fn gp_input_for(&self, x: &[f64; N_BASE], line: Option<&str>) -> Result<Vec<f64>> {
        let mut v = self.gp_input_core(x, line)?;
        if self.embedding_on() {
            v.push(self.line_code(line));
        }
        Ok(v)
    }

    /// The GP's input without the line column, with the mechanism of `line`.
    fn gp_input_core(&self, x: &[f64; N_BASE], line: Option<&str>) -> Result<Vec<f64>> {
        let mut v = x.to_vec();
        if self.augmented() {
            let m = self
                .mechanism_for(line)
                .step_z(x)
                .map_err(perfusio_gp::GpError::from)?;
            v.extend_from_slice(&m);
        }
        self.blank_ignored(&mut v);
        Ok(v)
    }

    /// Sets the columns of the controls left out of the kernel to 0 in a GP input row
    /// (after the mechanism's prediction was computed from the real values).
    fn blank_ignored(&self, row: &mut [f64]) {
        for (v, ignored) in row.iter_mut().skip(N_SPECIES).zip(&self.ignored_controls) {
            if *ignored {
                *v = 0.0;
            }
        }
    }

    /// The controls left out of the GP's kernel at the last fit, canonical order (see
    /// [`crate::GpSettings::ignore_unvaried_controls`]; all `false` when it is off).
    pub fn ignored_controls(&self) -> [bool; N_CONTROLS] {
        self.ignored_controls
    }

    /// The controls that are constant over training rows `x` (`N_COLS` columns each).
    fn unvaried_controls(x: &[f64]) -> [bool; N_CONTROLS] {
        let mut rows = x.chunks_exact(N_COLS);
        let Some(first) = rows.next() else {
            return [false; N_CONTROLS];
        };
        let mut same = [true; N_CONTROLS];
        for r in rows {
            for (j, s) in same.iter_mut().enumerate() {
                *s &= r[N_SPECIES + j].to_bits() == first[N_SPECIES + j].to_bits();
            }
        }
        same
    }

    fn gp_inputs(&self, inputs: &[[f64; N_BASE]], line: Option<&str>) -> Result<Vec<f64>> {
        let mut flat = Vec::with_capacity(inputs.len() * self.gp_base_cols());
        for x in inputs {
            flat.extend(self.gp_input_for(x, line)?);
        }
        Ok(flat)
    }

    /// Training rows in the GP's coordinates (`z` for species, the mechanism's prediction
    /// appended when on, targets in `z`), with their number of columns.
    fn z_rows(&self, rows: &TrainingRows) -> Result<(Vec<f64>, Vec<f64>, usize)> {
        let tr = &self.config.transform;
        let cols = self.gp_base_cols() + 1;
        let mut x = Vec::with_capacity(rows.len() * cols);
        let mut last: Option<([f64; N_BASE], usize, Vec<f64>)> = None;
        for (r, origin) in rows.x.chunks_exact(N_COLS).zip(&rows.origin) {
            let mut base = [0.0; N_BASE];
            base.copy_from_slice(&r[..N_BASE]);
            for (k, v) in base.iter_mut().take(N_SPECIES).enumerate() {
                *v = tr.z(k, *v);
            }
            let line = Some(r_line(self.dataset.runs()[origin.0].line.as_deref()));
            // rows of one transition share their base: one mechanism step per transition
            let input = match &last {
                Some((b, run, inp))
                    if *run == origin.0
                        && b.iter().zip(&base).all(|(p, q)| p.to_bits() == q.to_bits()) =>
                {
                    inp.clone()
                }
                _ => {
                    let inp = self.gp_input_core(&base, line)?;
                    last = Some((base, origin.0, inp.clone()));
                    inp
                }
            };
            x.extend_from_slice(&input);
            if self.embedding_on() {
                x.push(self.line_code(line));
            }
            x.push(r[N_BASE]);
        }
        let y: Vec<f64> = rows
            .y
            .iter()
            .zip(&rows.origin)
            .map(|(v, &(_, _, task))| tr.z(task, *v))
            .collect();
        // a row that repeats an earlier one exactly (identical runs: the replicated centre
        // points of a noise-free design) tells the GP nothing new, and repeated inputs would
        // take its fit off the Kronecker path onto the dense one (6 804 rows: minutes per fit)
        let mut seen = std::collections::HashSet::with_capacity(y.len());
        let (mut xd, mut yd) = (Vec::with_capacity(x.len()), Vec::with_capacity(y.len()));
        for (xr, yv) in x.chunks_exact(cols).zip(&y) {
            let key: Vec<u64> = xr
                .iter()
                .chain(std::iter::once(yv))
                .map(|v| (v + 0.0).to_bits())
                .collect();
            if seen.insert(key) {
                xd.extend_from_slice(xr);
                yd.push(*yv);
            }
        }
        Ok((xd, yd, cols))
    }

    /// Unit-cube bounds of the GP's base columns: species by their plausible measurement
    /// range (in `z`), controls by the design space (the limits for a fixed control), day by
    /// `[0, max_day]`.
    fn input_bounds(&self) -> Vec<(f64, f64)> {
        let ds = &self.config.design_space;
        let tr = &self.config.transform;
        let mut b = Vec::with_capacity(N_BASE);
        for s in Species::ALL {
            let r = ds.bounds(Variable::Species(s));
            b.push(tr.z_bounds(s.index(), r.lower, r.upper));
        }
        for spec in ds.controls() {
            if spec.upper > spec.lower {
                b.push((spec.lower, spec.upper));
            } else {
                b.push((
                    spec.limits.lower,
                    spec.limits.upper.max(spec.limits.lower + 1.0),
                ));
            }
        }
        b.push((0.0, f64::from(self.config.max_day)));
        if self.augmented() {
            for s in Species::ALL {
                let r = ds.bounds(Variable::Species(s));
                b.push(tr.z_bounds(s.index(), r.lower, r.upper));
            }
        }
        if self.embedding_on() {
            // the level index, left as it is by the unit-cube map
            b.push((0.0, 1.0));
        }
        b
    }

    fn gp_params(&self) -> GpParams {
        let mut active: Vec<usize> = (0..N_SPECIES + N_CONTROLS).collect();
        if self.config.gp.use_day {
            active.push(DAY_COL);
        }
        if self.augmented() {
            active.extend(N_BASE..N_BASE + N_SPECIES);
        }
        let ls0 = perfusio_gp::params::default_lengthscale(active.len());
        let matern = KernelSpec::Matern(Matern::on_dims(Nu::FiveHalves, active, ls0));
        let kernel = if self.embedding_on() {
            KernelSpec::product(vec![
                matern,
                KernelSpec::LevelEmbedding(LevelEmbedding::new(
                    self.gp_base_cols() - 1,
                    self.lines.len(),
                    self.config.gp.line_embedding_dims,
                )),
            ])
        } else {
            matern
        };
        self.gp_params_with(kernel)
    }

    fn gp_params_with(&self, kernel: KernelSpec) -> GpParams {
        let g = &self.config.gp;
        let mean = self.gp_mean.clone();
        GpParams::with_kernel(kernel, N_SPECIES)
            .rank(self.task_rank())
            .prior_mean(mean)
            .input_bounds(self.input_bounds())
            .n_starts(g.n_starts)
            .max_iters(g.max_iters)
            .warm_iters(g.warm_iters)
            .seed(g.seed)
            .centre_targets(g.centre_residuals)
    }

    /// Refits the GP on the whole deduplicated dataset: warm-started from the current
    /// hyperparameters when `warm` and a GP exists, from scratch otherwise. Days without a
    /// state estimate are estimated first. With fewer than
    /// [`HybridConfig::min_transitions`] transitions nothing is fitted
    /// ([`HybridError::TooFewTransitions`]) and the model stays as it was.
    ///
    /// With [`HybridConfig::calibrate`] on, the mechanism is calibrated first when due (see
    /// [`HybridModel::fit_offline`] for the offline path): from scratch at every
    /// `retrain(false)`, every [`crate::CalibrationConfig::every_retrains`] warm retrains
    /// online, warm-started from the current parameters. The stored state estimates are
    /// kept (they are what the model knew on their day).
    pub fn retrain(&mut self, warm: bool) -> Result<HybridFitReport> {
        self.retrain_pausable(warm, &|| {})
    }

    /// [`retrain`](Self::retrain) that calls `pause` between its stages (state estimation,
    /// calibration, GP fit, process variance) and before every evaluation of the GP's
    /// objective ([`perfusio_gp::Pause`]), e.g. to let a retraining that runs in the
    /// background wait while a daily step uses the cores. The result is the same.
    pub fn retrain_pausable(
        &mut self,
        warm: bool,
        pause: perfusio_gp::Pause<'_>,
    ) -> Result<HybridFitReport> {
        let start = Instant::now();
        pause();
        self.estimate_states()?;
        let backup = (self.means(), self.calibrated_params, self.mechanism_weights);
        pause();
        let step = self.calibration_step(warm)?;
        if let Some(c) = &step.run {
            self.set_means(build_means(
                &self.config,
                c.params,
                self.mechanism_weights.as_ref(),
            ));
        }
        pause();
        let result = self.fit_gp(warm, start, step, pause);
        if result.is_err() {
            let (means, params, weights) = backup;
            self.set_means(means);
            self.calibrated_params = params;
            self.mechanism_weights = weights;
        }
        result
    }

    /// Takes the learned part of `fitted` (a copy of this model retrained on an earlier part
    /// of the same dataset, e.g. in the background while this model went on learning):
    /// its GP hyperparameters, input map and standardisation, its mechanism calibration and
    /// lines; then conditions the GP on this model's **whole** dataset with them, without
    /// optimising (one factorisation, [`MultiTaskGp::condition_from_scratch`]), and
    /// recomputes the process variance. The report is the fit's (iterations, convergence,
    /// likelihood of the data it was fitted on) with this dataset's rows and transitions and
    /// the adoption's wall time.
    ///
    /// Errors: `fitted` has no GP, or its lines or GP input columns differ from this
    /// model's (the model is then unchanged).
    pub fn adopt_fit(&mut self, fitted: &HybridModel) -> Result<HybridFitReport> {
        let start = Instant::now();
        let (Some(gp), Some(fit)) = (&fitted.gp, &fitted.last_fit) else {
            return Err(HybridError::Config(
                "the model to adopt has not been fitted".into(),
            ));
        };
        let mut lines = self.dataset_lines();
        if lines.len() < 2 || self.config.gp.line_embedding_dims == 0 {
            lines.clear();
        }
        if lines != fitted.lines {
            return Err(HybridError::Config(format!(
                "the fit to adopt knows the lines {:?}, the dataset has {lines:?}",
                fitted.lines
            )));
        }
        let backup = (
            self.means(),
            self.calibrated_params,
            self.calibration.clone(),
            self.retrains_since_calibration,
            std::mem::replace(&mut self.lines, lines),
            std::mem::replace(&mut self.ignored_controls, fitted.ignored_controls),
            std::mem::replace(&mut self.matched_sd, fitted.matched_sd),
            std::mem::replace(&mut self.mechanism_weights, fitted.mechanism_weights),
        );
        self.set_means(fitted.means());
        self.calibrated_params = fitted.calibrated_params;
        self.calibration = fitted.calibration.clone();
        self.retrains_since_calibration = fitted.retrains_since_calibration;
        let conditioned = (|| -> Result<_> {
            self.estimate_states()?;
            let rows = self.dataset.rows(self.config.input_source)?;
            let (x, y, cols) = self.z_rows(&rows)?;
            if cols != gp.n_cols() {
                return Err(HybridError::Config(format!(
                    "the fit to adopt has {} GP input columns, the model {cols}",
                    gp.n_cols()
                )));
            }
            let gp = gp.condition_from_scratch(&x, &y)?;
            Ok((rows, x, y, cols, gp))
        })();
        let (rows, x, y, cols, gp) = match conditioned {
            Ok(v) => v,
            Err(e) => {
                let (means, params, calibration, since, lines, ignored, sd, weights) = backup;
                self.set_means(means);
                self.calibrated_params = params;
                self.calibration = calibration;
                self.retrains_since_calibration = since;
                self.lines = lines;
                self.ignored_controls = ignored;
                self.matched_sd = sd;
                self.mechanism_weights = weights;
                return Err(e);
            }
        };
        self.process_var = if self.config.gp.process_noise {
            process_noise(&gp, &y, &x, cols, |k, z| {
                self.measurement_var_z(k, self.config.transform.s(k, z))
            })
        } else {
            [0.0; N_SPECIES]
        };
        self.gp = Some(gp);
        let mut report = fit.clone();
        report.rows = rows.len();
        report.transitions = rows.transitions;
        report.calibrated = self.calibrated_values();
        report.pathways = self.calibrated_switches();
        report.wall_time = start.elapsed();
        self.last_fit = Some(report.clone());
        Ok(report)
    }

    /// Fits the GP with the current means, and commits the calibration of `step` with it.
    fn fit_gp(
        &mut self,
        warm: bool,
        start: Instant,
        step: CalibrationStep,
        pause: perfusio_gp::Pause<'_>,
    ) -> Result<HybridFitReport> {
        let rows = self.dataset.rows(self.config.input_source)?;
        if rows.transitions < self.config.min_transitions {
            return Err(HybridError::TooFewTransitions {
                got: rows.transitions,
                need: self.config.min_transitions,
            });
        }
        let mut new_lines = self.dataset_lines();
        if new_lines.len() < 2 || self.config.gp.line_embedding_dims == 0 {
            // one line: no embedding, and nothing recorded (old fingerprints stay)
            new_lines.clear();
        }
        let old_lines = std::mem::replace(&mut self.lines, new_lines);
        // a mechanistic prior mean that reads the controls from the GP's input row needs them
        let mean_reads_controls = self.config.mean == MeanKind::Mechanistic && !self.augmented();
        let ignored = if self.config.gp.ignore_unvaried_controls && !mean_reads_controls {
            Self::unvaried_controls(&rows.x)
        } else {
            [false; N_CONTROLS]
        };
        let old_ignored = std::mem::replace(&mut self.ignored_controls, ignored);
        let old_mean = (self.gp_mean.clone(), self.mechanism_weights);
        let fitted = self.z_rows(&rows).and_then(|(x, y, cols)| {
            if self.config.gp.mechanism_weights && self.augmented() {
                let w = mechanism_weights(&x, &y, cols);
                self.mechanism_weights = Some(w);
                self.gp_mean = Arc::new(MechanismInputMean::with_weights(&self.mechanism, w));
            }
            self.fit_gp_rows(x, y, cols, warm, pause)
        });
        let (gp, y, x, cols, warm_start) = match fitted {
            Ok(v) => v,
            Err(e) => {
                self.lines = old_lines;
                self.ignored_controls = old_ignored;
                (self.gp_mean, self.mechanism_weights) = old_mean;
                return Err(e);
            }
        };
        let r = gp.report().clone();
        pause();
        let process_var = if self.config.gp.process_noise {
            process_noise(&gp, &y, &x, cols, |k, z| {
                self.measurement_var_z(k, self.config.transform.s(k, z))
            })
        } else {
            [0.0; N_SPECIES]
        };
        let runs = {
            let mut seen: Vec<usize> = rows.origin.iter().map(|o| o.0).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len()
        };
        let mut report = HybridFitReport {
            rows: rows.len(),
            transitions: rows.transitions,
            runs,
            nlml: r.nlml,
            iterations: r.iterations,
            evaluations: r.evaluations,
            converged: r.converged,
            termination: r.termination.name().to_string(),
            warm_start,
            wall_time: start.elapsed(),
            calibrated: BTreeMap::new(),
            pathways: BTreeMap::new(),
            line_calibrations: BTreeMap::new(),
            calibration: None,
            calibration_skipped: step.skipped,
            mechanism_sd: None,
            mechanism_weights: self.mechanism_weights,
        };
        if !report.converged {
            tracing::warn!(
                iterations = report.iterations,
                termination = %report.termination,
                "hybrid GP fit stopped before converging"
            );
        }
        self.gp = Some(gp);
        self.process_var = process_var;
        if let Some(c) = step.run {
            self.calibrated_params = Some(c.params);
            self.calibration = Some(c.report.clone());
            self.retrains_since_calibration = 0;
            report.calibration = Some(c.report);
        }
        report.calibrated = self.calibrated_values();
        report.pathways = self.calibrated_switches();
        report.wall_time = start.elapsed();
        self.last_fit = Some(report.clone());
        Ok(report)
    }

    /// The GP fitted to `rows` with the model's current lines: warm-started from the
    /// current GP when `warm`, also when the lines grew (the learned kernel keeps its
    /// values and each new line gets a position next to the others; one start, the full
    /// iteration budget). Returns the GP, the targets, the inputs, their column count and
    /// whether it was warm-started.
    #[allow(clippy::type_complexity)]
    fn fit_gp_rows(
        &self,
        x: Vec<f64>,
        y: Vec<f64>,
        cols: usize,
        warm: bool,
        pause: perfusio_gp::Pause<'_>,
    ) -> Result<(MultiTaskGp, Vec<f64>, Vec<f64>, usize, bool)> {
        let params = self.gp_params();
        let warm_start = warm && self.gp.is_some();
        let gp = match (&self.gp, warm_start) {
            (Some(prev), true) if prev.n_cols() == cols && self.same_lines(prev.kernel()) => params
                .check()?
                .fit_warm_pausable(&x, cols, &y, prev, pause)?,
            (Some(prev), true) => {
                let kernel = self.grown_kernel(prev.kernel())?;
                let nk = prev.kernel().n_params();
                let th = prev.hyperparameters();
                let (t, r) = (N_SPECIES, prev.rank());
                if r != self.task_rank() {
                    // a one-line model's rank differs: the grown kernel keeps its values,
                    // the task covariance starts from the data
                    let gp = self
                        .gp_params_with(kernel)
                        .n_starts(1)
                        .check()?
                        .fit_pausable(&x, cols, &y, pause)?;
                    return Ok((gp, y, x, cols, warm_start));
                }
                let w = th[nk..nk + t * r].to_vec();
                let kappa = th[nk + t * r..nk + t * r + t]
                    .iter()
                    .map(|v| v.exp())
                    .collect();
                let noise = th[nk + t * r + t..nk + t * r + 2 * t]
                    .iter()
                    .map(|v| v.exp())
                    .collect();
                self.gp_params_with(kernel)
                    .n_starts(1)
                    .task_init(w, kappa, noise)
                    .check()?
                    .fit_pausable(&x, cols, &y, pause)?
            }
            _ => params.check()?.fit_pausable(&x, cols, &y, pause)?,
        };
        Ok((gp, y, x, cols, warm_start))
    }

    /// Whether a fitted kernel has the model's current lines (none, or as many levels).
    fn same_lines(&self, k: &KernelSpec) -> bool {
        match k {
            KernelSpec::Product(parts) => match parts.as_slice() {
                [_, KernelSpec::LevelEmbedding(e)] => e.n_levels == self.lines.len(),
                _ => false,
            },
            _ => !self.embedding_on(),
        }
    }

    /// The previous GP's learned kernel for the model's current lines: its embedding grown
    /// by the new lines, or (when it had none) multiplied by a new embedding.
    fn grown_kernel(&self, prev: &KernelSpec) -> Result<KernelSpec> {
        let n = self.lines.len();
        let fresh = || {
            LevelEmbedding::new(
                self.gp_base_cols() - 1,
                n,
                self.config.gp.line_embedding_dims,
            )
        };
        match prev {
            KernelSpec::Product(parts) => match parts.as_slice() {
                [m, KernelSpec::LevelEmbedding(e)] if e.n_levels <= n => {
                    let mut e = e.clone();
                    while e.n_levels < n {
                        e = e.with_new_level();
                    }
                    Ok(KernelSpec::product(vec![
                        m.clone(),
                        KernelSpec::LevelEmbedding(e),
                    ]))
                }
                _ => Err(HybridError::Config(
                    "the model's GP kernel cannot be extended to new cell lines".into(),
                )),
            },
            m @ KernelSpec::Matern(_) if self.embedding_on() => Ok(KernelSpec::product(vec![
                m.clone(),
                KernelSpec::LevelEmbedding(fresh()),
            ])),
            _ => Err(HybridError::Config(
                "the model's GP kernel cannot be extended to new cell lines".into(),
            )),
        }
    }

    /// Base input in the model's coordinates from a state in `z`.
    pub fn z_input(z: &SpeciesArray<f64>, controls: &ControlArray<f64>, day: u32) -> [f64; N_BASE] {
        base_row(z, controls, day)
    }

    /// Latent one-day transitions at many base inputs (`z` coordinates), batched.
    pub fn transitions(&self, inputs: &[[f64; N_BASE]]) -> Result<Vec<Transition>> {
        match &self.gp {
            Some(gp) => {
                let flat = self.gp_inputs(inputs, self.prediction_line.as_deref())?;
                let preds = gp.predict_tasks(&flat, false)?;
                Ok(preds
                    .iter()
                    .map(|p| self.with_process(to_transition(p)))
                    .collect())
            }
            None => inputs
                .iter()
                .map(|x| {
                    let mut mean = [0.0; N_SPECIES];
                    self.untrained_for(self.prediction_line.as_deref())
                        .eval(x, &mut mean)
                        .map_err(perfusio_gp::GpError::from)?;
                    Ok(Transition {
                        mean,
                        cov: diag(&self.mechanism_sd().map(|s| s * s)),
                    })
                })
                .collect(),
        }
    }

    /// [`HybridModel::transitions`] and the GP inputs they were predicted at (each
    /// [`HybridModel::gp_input`]): a caller that needs both pays for the mechanism's steps
    /// once.
    pub fn transitions_and_inputs(
        &self,
        inputs: &[[f64; N_BASE]],
    ) -> Result<(Vec<Transition>, Vec<Vec<f64>>)> {
        match &self.gp {
            Some(gp) => {
                let flat = self.gp_inputs(inputs, self.prediction_line.as_deref())?;
                let preds = gp.predict_tasks(&flat, false)?;
                let cols = self.gp_base_cols();
                Ok((
                    preds
                        .iter()
                        .map(|p| self.with_process(to_transition(p)))
                        .collect(),
                    flat.chunks_exact(cols).map(<[f64]>::to_vec).collect(),
                ))
            }
            None => Ok((
                self.transitions(inputs)?,
                inputs
                    .iter()
                    .map(|x| self.gp_input(x))
                    .collect::<Result<_>>()?,
            )),
        }
    }

    /// Latent transition means only (cheapest), `z` coordinates.
    pub fn transition_means(&self, inputs: &[[f64; N_BASE]]) -> Result<Vec<SpeciesArray<f64>>> {
        match &self.gp {
            Some(gp) => {
                let flat = self.gp_inputs(inputs, self.prediction_line.as_deref())?;
                let m = gp.predict_tasks_mean(&flat)?;
                Ok(m.chunks_exact(N_SPECIES)
                    .map(|c| std::array::from_fn(|k| c[k]))
                    .collect())
            }
            None => inputs
                .iter()
                .map(|x| {
                    let mut mean = [0.0; N_SPECIES];
                    self.untrained_for(self.prediction_line.as_deref())
                        .eval(x, &mut mean)
                        .map_err(perfusio_gp::GpError::from)?;
                    Ok(mean)
                })
                .collect(),
        }
    }

    /// The transition at one base input and the Jacobian of its mean with respect to the
    /// state (mechanism and GP mean together).
    pub fn linearised_transition(&self, input: &[f64; N_BASE]) -> Result<LinearisedTransition> {
        self.linearised_transitions(std::slice::from_ref(input))?
            .pop()
            .ok_or_else(|| HybridError::Data("no linearised transition".into()))
    }

    /// [`HybridModel::linearised_transition`] at many base inputs: the mechanism's steps and
    /// Jacobians per input, the GP's predictions and mean gradients in one batch
    /// ([`perfusio_gp::MultiTaskGp::predict_tasks_mean_grad_many`]), so that a large
    /// posterior is read once for all inputs.
    pub fn linearised_transitions(
        &self,
        inputs: &[[f64; N_BASE]],
    ) -> Result<Vec<LinearisedTransition>> {
        self.linearised_transitions_for(inputs, self.prediction_line.as_deref())
    }

    /// [`HybridModel::linearised_transitions`] for cell line `line` (its mechanism and
    /// embedding level).
    pub(crate) fn linearised_transitions_for(
        &self,
        inputs: &[[f64; N_BASE]],
        line: Option<&str>,
    ) -> Result<Vec<LinearisedTransition>> {
        match &self.gp {
            Some(gp) if self.augmented() => {
                // chain rule through the mechanism's prediction carried in the input
                let mut xs = Vec::new();
                let mut jms = Vec::with_capacity(inputs.len());
                for input in inputs {
                    let (m, jm) = self
                        .mechanism_for(line)
                        .state_jacobian(input)
                        .map_err(perfusio_gp::GpError::from)?;
                    let at = xs.len();
                    xs.extend_from_slice(input);
                    xs.extend_from_slice(&m);
                    self.blank_ignored(&mut xs[at..]);
                    if self.embedding_on() {
                        xs.push(self.line_code(line));
                    }
                    jms.push(jm);
                }
                let d = self.gp_base_cols();
                let gs = gp.predict_tasks_mean_grad_many(&xs)?;
                Ok(gs
                    .iter()
                    .zip(jms)
                    .map(|(g, jm)| LinearisedTransition {
                        transition: self.with_process(to_transition(&g.prediction)),
                        jacobian: std::array::from_fn(|k| {
                            std::array::from_fn(|j| {
                                g.mean_grad[k * d + j]
                                    + (0..N_SPECIES)
                                        .map(|l| g.mean_grad[k * d + N_BASE + l] * jm[l][j])
                                        .sum::<f64>()
                            })
                        }),
                    })
                    .collect())
            }
            Some(gp) => {
                let xs = self.gp_inputs(inputs, line)?;
                let d = self.gp_base_cols();
                let gs = gp.predict_tasks_mean_grad_many(&xs)?;
                Ok(gs
                    .iter()
                    .map(|g| LinearisedTransition {
                        transition: self.with_process(to_transition(&g.prediction)),
                        jacobian: std::array::from_fn(|k| {
                            std::array::from_fn(|j| g.mean_grad[k * d + j])
                        }),
                    })
                    .collect())
            }
            None => inputs
                .iter()
                .map(|input| {
                    let mut out = [0.0; N_SPECIES];
                    let mut jac = vec![0.0; N_SPECIES * N_BASE];
                    self.untrained_for(line)
                        .eval_with_jacobian(input, &mut out, &mut jac)
                        .map_err(perfusio_gp::GpError::from)?;
                    Ok(LinearisedTransition {
                        transition: Transition {
                            mean: out,
                            cov: diag(&self.mechanism_sd().map(|s| s * s)),
                        },
                        jacobian: std::array::from_fn(|k| {
                            std::array::from_fn(|j| jac[k * N_BASE + j])
                        }),
                    })
                })
                .collect(),
        }
    }

    /// Correlation of the model's errors at two GP inputs ([`HybridModel::gp_input`]): the
    /// GP's input kernel on its unit-cube scaling (1 for equal inputs, decaying with their
    /// distance in length-scales). Before the GP has data, the default kernel over the state
    /// and control columns. Used by batch decisions to spread candidates.
    pub fn input_correlation(&self, a: &[f64], b: &[f64]) -> f64 {
        use perfusio_gp::Kernel;
        let scale = |x: &[f64], bounds: &[(f64, f64)]| -> Vec<f64> {
            x.iter()
                .zip(bounds)
                .map(|(v, (lo, hi))| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 })
                .collect()
        };
        match &self.gp {
            Some(gp) => {
                let bounds = gp.input_scaling();
                gp.kernel().eval(&scale(a, &bounds), &scale(b, &bounds))
            }
            None => {
                let bounds = self.input_bounds();
                let active: Vec<usize> = (0..N_SPECIES + N_CONTROLS).collect();
                let ls = perfusio_gp::params::default_lengthscale(active.len());
                Matern::on_dims(Nu::FiveHalves, active, ls)
                    .eval(&scale(a, &bounds), &scale(b, &bounds))
            }
        }
    }

    /// The one-day sd in `z` of the mechanism alone per species: the model's transition
    /// uncertainty before the GP has data and the process noise of its filter until then.
    /// Matched to the training runs when [`HybridConfig::match_mechanism_sd`] is on and the
    /// model was fitted offline ([`HybridModel::match_mechanism_sd`]), else
    /// [`HybridConfig::mechanism_sd`].
    pub fn mechanism_sd(&self) -> SpeciesArray<f64> {
        self.matched_sd.unwrap_or(self.config.mechanism_sd)
    }

    /// Process variance per species in `z`: how much the true one-day transition varies
    /// beyond what the GP's mean explains. The GP's fitted noise of a species holds both
    /// the measurement noise of its targets and this day-to-day variability of the process
    /// (for example feeding or a cell line the mechanism does not describe); the part above
    /// the measurement noise model is carried as transition uncertainty, so that bands do
    /// not shrink to the measurement noise when the process is noisier than that.
    pub fn process_variance(&self) -> &SpeciesArray<f64> {
        &self.process_var
    }

    fn with_process(&self, mut t: Transition) -> Transition {
        for k in 0..N_SPECIES {
            t.cov[k][k] += self.process_var[k];
        }
        t
    }

    /// Variance in `z` of one measurement of species `k` whose true value is `s`.
    pub fn measurement_var_z(&self, k: usize, s: f64) -> f64 {
        let sd = self
            .config
            .transform
            .measurement_sd_z(k, s, self.config.observation_cv[k]);
        sd * sd
    }

    /// The next day's measured value of every species from a known state (original units),
    /// under `controls` acting over `day → day + 1`: mean, sd and the 5/10/50/90/95 %
    /// quantiles, measurement noise included.
    ///
    /// To predict from a sample, filter it first ([`HybridModel::filter_update`]) and use
    /// [`HybridModel::forecast`] with a one-day schedule: that also carries the state's
    /// uncertainty.
    pub fn predict_next_state(
        &self,
        state: &SpeciesArray<f64>,
        controls: &ControlArray<f64>,
        day: u32,
    ) -> Result<NextState> {
        check_state(state)?;
        let tr = &self.config.transform;
        let z = tr.to_z(state);
        let t = self
            .transitions(&[Self::z_input(&z, controls, day)])?
            .pop()
            .ok_or_else(|| HybridError::Data("no prediction".into()))?;
        let species = std::array::from_fn(|k| {
            let mu = t.mean[k];
            let s_mid = tr.s(k, mu);
            let var = t.cov[k][k].max(0.0) + self.measurement_var_z(k, s_mid);
            lognormal_summary(tr, k, mu, var)
        });
        Ok(NextState {
            day: day + 1,
            species,
        })
    }

    /// SHA-256 (hex) of what determines the model's predictions: configuration, dataset and
    /// the GP's own fingerprint (which excludes wall times).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(MODEL_FORMAT.as_bytes());
        h.update(serde_json::to_vec(&self.config).unwrap_or_default());
        h.update(serde_json::to_vec(&self.dataset).unwrap_or_default());
        if let Some(gp) = &self.gp {
            h.update(gp.fingerprint().as_bytes());
        }
        // only calibrated models hash their parameters: uncalibrated fingerprints are
        // those of models written before calibration existed
        // only models that learn across lines hash them (as above, for old fingerprints)
        // and only models that left controls out of the kernel hash which
        if !none_ignored(&self.ignored_controls) {
            h.update(b"ignored controls\n");
            h.update(serde_json::to_vec(&self.ignored_controls).unwrap_or_default());
        }
        if !self.lines.is_empty() {
            h.update(b"cell lines\n");
            h.update(serde_json::to_vec(&(&self.lines, &self.prediction_line)).unwrap_or_default());
        }
        if let Some(sd) = &self.matched_sd {
            h.update(b"matched mechanism sd\n");
            h.update(serde_json::to_vec(sd).unwrap_or_default());
        }
        if let Some(w) = &self.mechanism_weights {
            h.update(b"mechanism weights\n");
            h.update(serde_json::to_vec(w).unwrap_or_default());
        }
        if let Some(p) = &self.calibrated_params {
            h.update(b"calibrated mechanism\n");
            h.update(serde_json::to_vec(p).unwrap_or_default());
        }
        if !self.line_params.is_empty() {
            h.update(b"line mechanisms\n");
            h.update(serde_json::to_vec(&self.line_params).unwrap_or_default());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The model as JSON text (see [`HybridModel::save`]).
    pub fn to_json(&self) -> Result<String> {
        let file = ModelFile {
            format: MODEL_FORMAT.to_string(),
            config: self.config.clone(),
            dataset: self.dataset.clone(),
            gp: self.gp.clone(),
            last_fit: self.last_fit.clone(),
            process_var: self.process_var,
            calibrated_params: self.calibrated_params,
            calibration: self.calibration.clone(),
            retrains_since_calibration: self.retrains_since_calibration,
            lines: self.lines.clone(),
            prediction_line: self.prediction_line.clone(),
            ignored_controls: self.ignored_controls,
            matched_sd: self.matched_sd,
            mechanism_weights: self.mechanism_weights,
            line_params: self.line_params.clone(),
            line_calibrations: self.line_calibrations.clone(),
        };
        serde_json::to_string(&file).map_err(|e| HybridError::ModelFile {
            path: "(memory)".into(),
            message: e.to_string(),
        })
    }

    /// A model from JSON text written by [`HybridModel::to_json`]. The prior mean is rebuilt
    /// from the stored kinetic parameters and checked against the GP's fingerprint.
    pub fn from_json(text: &str) -> Result<Self> {
        let file: ModelFile = serde_json::from_str(text).map_err(|e| HybridError::ModelFile {
            path: "(memory)".into(),
            message: e.to_string(),
        })?;
        if file.format != MODEL_FORMAT {
            return Err(HybridError::ModelFile {
                path: "(memory)".into(),
                message: format!(
                    "format {:?} is not {MODEL_FORMAT:?}; it was written by another version",
                    file.format
                ),
            });
        }
        let mut model = Self::new(file.config)?;
        if let Some(w) = &file.mechanism_weights {
            check_weights(w)?;
        }
        if let Some(p) = &file.calibrated_params {
            p.check()?;
        }
        model.mechanism_weights = file.mechanism_weights;
        model.calibrated_params = file.calibrated_params;
        if model.mechanism_weights.is_some() || model.calibrated_params.is_some() {
            let params = file.calibrated_params.unwrap_or(model.config.prior);
            model.set_means(build_means(
                &model.config,
                params,
                model.mechanism_weights.as_ref(),
            ));
        }
        for p in file.line_params.values() {
            p.check()?;
        }
        model.set_line_params(file.line_params);
        model.line_calibrations = file.line_calibrations;
        model.dataset = file.dataset;
        model.last_fit = file.last_fit;
        model.process_var = file.process_var;
        model.calibration = file.calibration;
        model.retrains_since_calibration = file.retrains_since_calibration;
        model.lines = file.lines;
        model.prediction_line = file.prediction_line;
        model.ignored_controls = file.ignored_controls;
        if let Some(sd) = file.matched_sd {
            check_sd(&sd)?;
            model.matched_sd = Some(sd);
        }
        if let Some(mut gp) = file.gp {
            gp.set_prior_mean(model.gp_mean.clone())?;
            model.gp = Some(gp);
        }
        Ok(model)
    }

    /// Writes the model to one JSON file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_json()?;
        std::fs::write(path, text).map_err(|e| HybridError::ModelFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Reads a model written by [`HybridModel::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| HybridError::ModelFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_json(&text).map_err(|e| match e {
            HybridError::ModelFile { message, .. } => HybridError::ModelFile {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }
}

fn check_state(state: &SpeciesArray<f64>) -> Result<()> {
    if let Some(k) = state.iter().position(|v| !v.is_finite()) {
        return Err(HybridError::Data(format!(
            "state value of {} is not finite",
            Species::ALL[k]
        )));
    }
    Ok(())
}

pub(crate) fn diag(v: &SpeciesArray<f64>) -> [[f64; N_SPECIES]; N_SPECIES] {
    std::array::from_fn(|i| std::array::from_fn(|j| if i == j { v[i] } else { 0.0 }))
}

/// The excess of the GP's fitted noise over the mean measurement variance of each task's
/// targets (`z`), floored at 0 and capped at the targets' own variance (a noise estimate
/// from a handful of rows, or of a constant task, cannot claim more variability than the
/// data show).
fn process_noise(
    gp: &MultiTaskGp,
    y: &[f64],
    x: &[f64],
    cols: usize,
    measurement_var: impl Fn(usize, f64) -> f64,
) -> SpeciesArray<f64> {
    let noise = gp.noise_variances();
    let mut sum = [0.0; N_SPECIES];
    let mut n = [0usize; N_SPECIES];
    let mut s1 = [0.0; N_SPECIES];
    let mut s2 = [0.0; N_SPECIES];
    for (row, &target) in x.chunks_exact(cols).zip(y) {
        let k = row[cols - 1] as usize;
        if k < N_SPECIES {
            sum[k] += measurement_var(k, target);
            n[k] += 1;
            s1[k] += target;
            s2[k] += target * target;
        }
    }
    std::array::from_fn(|k| match (noise.get(k), n[k]) {
        (Some(v), m) if m > 1 => {
            let m = m as f64;
            let target_var = ((s2[k] - s1[k] * s1[k] / m) / (m - 1.0)).max(0.0);
            (v - sum[k] / m).clamp(0.0, target_var)
        }
        _ => 0.0,
    })
}

fn to_transition(p: &TaskPrediction) -> Transition {
    Transition {
        mean: std::array::from_fn(|k| p.mean[k]),
        cov: std::array::from_fn(|i| std::array::from_fn(|j| p.covariance[i * N_SPECIES + j])),
    }
}

/// Mean, sd and quantiles in original units of `s = clamp(e^z − c, 0, upper)` with
/// `z ~ N(mu, var)`, the species value [`crate::LogTransform::s`] gives: quantiles transform
/// exactly (monotone map, then clipping), mean and sd are the moments of the clipped
/// log-normal ([`clipped_lognormal_moments`]), never above the species' upper bound however
/// wide the band.
pub(crate) fn lognormal_summary(
    tr: &crate::LogTransform,
    k: usize,
    mu: f64,
    var: f64,
) -> SpeciesPrediction {
    let var = var.max(0.0);
    let sd_z = var.sqrt();
    let (mean, sd) = clipped_lognormal_moments(mu, var, tr.offsets[k], tr.upper[k]);
    SpeciesPrediction {
        mean,
        sd,
        quantiles: std::array::from_fn(|i| tr.s(k, mu + Z_QUANTILES[i] * sd_z)),
    }
}

/// Bounds further than this many standard deviations (of every shifted normal the moments
/// use) leave the log-normal moments unchanged to double precision.
const CLIP_NEGLIGIBLE_SD: f64 = 9.0;

/// Mean and standard deviation of `S = clamp(e^Z − c, 0, u)` with `Z ~ N(mu, var)`.
///
/// With `a = ln c`, `b = ln(u + c)`, `α = (a − mu)/σ`, `β = (b − mu)/σ` and
/// `D_j = Φ(β − jσ) − Φ(α − jσ)`:
///
/// * `E[S] = e^{mu + σ²/2} D_1 − c D_0 + u (1 − Φ(β))`,
/// * `E[S²] = e^{2mu + 2σ²} D_2 − 2c e^{mu + σ²/2} D_1 + c² D_0 + u² (1 − Φ(β))`,
///
/// each exponential times its `D_j` formed in logarithms, so that neither overflows when the
/// band is wide. When both bounds are more than [`CLIP_NEGLIGIBLE_SD`] standard deviations
/// away the plain log-normal moments are returned (the same to double precision, without
/// the cancellation of `E[S²] − E[S]²`). `var = 0` gives the clipped point value.
pub(crate) fn clipped_lognormal_moments(mu: f64, var: f64, c: f64, u: f64) -> (f64, f64) {
    let var = var.max(0.0);
    let sd = var.sqrt();
    let (a, b) = (c.ln(), (u + c).ln());
    if sd <= 0.0 {
        return ((mu.exp() - c).clamp(0.0, u), 0.0);
    }
    if !sd.is_finite() {
        // half the mass below 0, half above u
        return if u.is_finite() {
            (0.5 * u, 0.5 * u)
        } else {
            (f64::INFINITY, f64::INFINITY)
        };
    }
    let alpha = (a - mu) / sd;
    let beta = (b - mu) / sd;
    if alpha < -CLIP_NEGLIGIBLE_SD && beta - 2.0 * sd > CLIP_NEGLIGIBLE_SD {
        let m = (mu + 0.5 * var).exp();
        let v = var.exp_m1() * (2.0 * mu + var).exp();
        return ((m - c).clamp(0.0, u), v.sqrt());
    }
    // ln(Φ(hi) − Φ(lo)), lo < hi, from the side where the two are not both close to 1
    // (Φ(hi) − Φ(lo) = Φ(−lo) − Φ(−hi))
    let ln_diff = |lo: f64, hi: f64| -> f64 {
        let (lo, hi) = if lo + hi > 0.0 { (-hi, -lo) } else { (lo, hi) };
        let l_hi = log_norm_cdf(hi);
        l_hi + log1mexp(log_norm_cdf(lo) - l_hi)
    };
    // e^{j·mu + j²σ²/2} (Φ(β − jσ) − Φ(α − jσ))
    let term = |j: f64| -> f64 {
        let shift = j * sd;
        (j * mu + 0.5 * j * j * var + ln_diff(alpha - shift, beta - shift)).exp()
    };
    // P(Z > b) and its share of the moments (none without an upper bound)
    let (u_above, u2_above) = if u.is_finite() {
        let p = norm_sf(beta);
        (u * p, u * u * p)
    } else {
        (0.0, 0.0)
    };
    let (d0, e1, e2) = (term(0.0), term(1.0), term(2.0));
    let mean = (e1 - c * d0 + u_above).clamp(0.0, u);
    let second = e2 - 2.0 * c * e1 + c * c * d0 + u2_above;
    let v = (second - mean * mean).max(0.0);
    // a variable on [0, u] has sd ≤ u/2 (Popoviciu); the bound only catches round-off
    (mean, v.sqrt().min(0.5 * u))
}

/// Checks stored mechanism weights (each in `[0, 1]`, as the fit makes them).
fn check_weights(w: &SpeciesArray<f64>) -> Result<()> {
    match w.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        Some(v) => Err(HybridError::ModelFile {
            path: "(memory)".into(),
            message: format!("mechanism weight {v}: must lie in [0, 1]"),
        }),
        None => Ok(()),
    }
}

/// Least-squares fraction of the mechanism's one-day change per species, clamped to
/// `[0, 1]`: over the GP's rows (`[z, u, day, m(z, u), task]`, targets `y` in `z`),
/// `w_k = Σ (y − z_k)(m_k − z_k) / Σ (m_k − z_k)²`; 1 for a species without rows or
/// without a predicted change.
fn mechanism_weights(x: &[f64], y: &[f64], cols: usize) -> SpeciesArray<f64> {
    let mut num = [0.0; N_SPECIES];
    let mut den = [0.0; N_SPECIES];
    for (r, yv) in x.chunks_exact(cols).zip(y) {
        let k = r[cols - 1] as usize;
        if k >= N_SPECIES {
            continue;
        }
        let (z, m) = (r[k], r[N_BASE + k]);
        num[k] += (yv - z) * (m - z);
        den[k] += (m - z) * (m - z);
    }
    std::array::from_fn(|k| {
        if den[k] > 0.0 && num[k].is_finite() {
            (num[k] / den[k]).clamp(0.0, 1.0)
        } else {
            1.0
        }
    })
}

/// Checks a stored one-day sd (finite and positive, as the configured one).
fn check_sd(sd: &SpeciesArray<f64>) -> Result<()> {
    match sd.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        Some(v) => Err(HybridError::ModelFile {
            path: "(memory)".into(),
            message: format!("matched mechanism sd {v}: must be finite and > 0"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::clipped_lognormal_moments;

    #[test]
    fn mechanism_weights_are_the_least_squares_fraction_of_the_change_clamped() {
        use super::{N_BASE, N_SPECIES, mechanism_weights};
        let cols = N_BASE + N_SPECIES + 1;
        let mut x = Vec::new();
        let mut y = Vec::new();
        // species 0: y − z = 0.3 (m − z) + a residual e; species 1: the opposite direction
        // (clamped to 0); species 2: 1.5 × the change (clamped to 1); species 3: the
        // mechanism predicts no change (1); the others have no rows (1)
        let changes = [0.5, -0.2, 0.8, -1.0];
        let wiggle = [0.01, 0.01, -0.01, -0.01];
        for (i, (dm, e)) in changes.iter().zip(wiggle).enumerate() {
            for (k, ratio) in [(0usize, 0.3), (1, -0.7), (2, 1.5), (3, 0.0)] {
                let mut r = vec![0.0; cols];
                r[k] = 1.0 + 0.1 * i as f64;
                r[N_BASE + k] = if k == 3 { r[k] } else { r[k] + dm };
                r[cols - 1] = k as f64;
                y.push(r[k] + ratio * dm + e);
                x.extend_from_slice(&r);
            }
        }
        let w = mechanism_weights(&x, &y, cols);
        let dot: f64 = changes.iter().zip(wiggle).map(|(a, b)| a * b).sum();
        let norm: f64 = changes.iter().map(|a| a * a).sum();
        assert!((w[0] - (0.3 + dot / norm)).abs() < 1e-12, "{w:?}");
        assert_eq!(w[1].to_bits(), 0.0f64.to_bits());
        assert_eq!(w[2].to_bits(), 1.0f64.to_bits());
        assert!(
            w[3..].iter().all(|v| v.to_bits() == 1.0f64.to_bits()),
            "{w:?}"
        );
    }

    /// `∫ f(z) φ_{μ,σ}(z) dz` over `[lo, hi]` by composite Simpson (the integrand smooth).
    fn simpson(f: impl Fn(f64) -> f64, mu: f64, sd: f64, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            return 0.0;
        }
        let n = 20_000;
        let h = (hi - lo) / n as f64;
        let g = |z: f64| {
            let t = (z - mu) / sd;
            f(z) * (-0.5 * t * t).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt())
        };
        let mut s = g(lo) + g(hi);
        for i in 1..n {
            s += g(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    /// Mean and sd of `clamp(e^Z − c, 0, u)` by quadrature, split at the two kinks.
    fn by_quadrature(mu: f64, var: f64, c: f64, u: f64) -> (f64, f64) {
        let sd = var.sqrt();
        let (a, b) = (c.ln(), (u + c).ln());
        let (lo, hi) = (mu - 12.0 * sd, mu + 12.0 * sd);
        let mid_lo = a.max(lo);
        let mid_hi = b.min(hi);
        let m1 = simpson(|z| z.exp() - c, mu, sd, mid_lo, mid_hi)
            + simpson(|_| u, mu, sd, b.max(lo), hi);
        let m2 = simpson(|z| (z.exp() - c).powi(2), mu, sd, mid_lo, mid_hi)
            + simpson(|_| u * u, mu, sd, b.max(lo), hi);
        (m1, (m2 - m1 * m1).max(0.0).sqrt())
    }

    #[test]
    fn clipped_lognormal_moments_match_quadrature() {
        // (mu, var, c, u): far from both bounds, near the top (viability), wide, very wide,
        // near zero
        let cases = [
            ((405.0f64).ln(), 0.01, 5.0, 5000.0),
            ((99.0f64 + 1.0).ln(), 4e-4, 1.0, 100.0),
            ((50.0f64).ln(), 4.0, 1.0, 100.0),
            ((8.0f64).ln(), 25.0, 0.1, 20.0),
            ((0.5f64 + 0.01).ln(), 0.25, 0.5, 10.0),
        ];
        for (mu, var, c, u) in cases {
            let (m, s) = clipped_lognormal_moments(mu, var, c, u);
            let (mq, sq) = by_quadrature(mu, var, c, u);
            assert!(
                (m - mq).abs() <= 1e-8 * mq.abs().max(1e-6 * u),
                "mean {m} vs quadrature {mq} at {mu} {var} {c} {u}"
            );
            assert!(
                (s - sq).abs() <= 1e-6 * sq.max(1e-6 * u),
                "sd {s} vs quadrature {sq} at {mu} {var} {c} {u}"
            );
            assert!((0.0..=u).contains(&m) && s <= 0.5 * u);
        }
    }

    #[test]
    fn clipped_lognormal_moments_far_from_the_bounds_are_the_lognormal_ones() {
        let (mu, var, c) = ((405.0f64).ln(), 0.01, 5.0);
        let (m, s) = clipped_lognormal_moments(mu, var, c, 5000.0);
        let m0 = (mu + 0.5 * var).exp() - c;
        let s0 = (var.exp_m1() * (2.0 * mu + var).exp()).sqrt();
        assert!((m - m0).abs() <= 1e-12 * m0 && (s - s0).abs() <= 1e-12 * s0);
    }

    #[test]
    fn clipped_lognormal_moments_stay_bounded_when_the_band_explodes() {
        // the plain log-normal mean of this band overflows; the clipped one is about u/2
        let (m, s) = clipped_lognormal_moments(3.0, 1e6, 1.0, 100.0);
        assert!(((m - 50.0) / 50.0).abs() < 0.01, "{m}");
        assert!(s <= 50.0 && s > 49.0, "{s}");
        assert_eq!(clipped_lognormal_moments(2.0, 0.0, 1.0, 5.0), (5.0, 0.0));
        assert_eq!(
            clipped_lognormal_moments(2.0, f64::INFINITY, 1.0, 5.0),
            (2.5, 2.5)
        );
    }
}
