//! The model-accuracy pipeline behind `perfusio evaluate`: train on a design of simulated
//! runs, forecast held-out runs (other seeds, piecewise-constant random controls) from
//! several start days, score each horizon, and compare four models that all start from the
//! same filtered state estimate:
//!
//! | model | one-day step |
//! |---|---|
//! | `mechanistic` | the prior mechanism alone |
//! | `gp` | the same GP with a constant mean per task |
//! | `persistence` | tomorrow equals today |
//! | `hybrid` | mechanism + GP |
//! | `mechanistic-calibrated` | the mechanism with its parameters calibrated on the training runs ([`EvalConfig::calibrate`]) |
//! | `hybrid-calibrated` | the calibrated mechanism + GP ([`EvalConfig::calibrate`]) |
//! | `transfer`, `source-only`, `target-only` | learning across cell lines ([`EvalConfig::transfer`]) |
//! | `transfer-calibrated`, `source-only-calibrated`, `target-only-calibrated` | the same with calibrated mechanisms, per line in the joint model (both settings) |
//!
//! `hybrid` and `mechanistic` are never calibrated, whatever [`HybridConfig::calibrate`]
//! defaults to, so that the calibrated entries are compared with the prior as it is. Every
//! model starts from the uncalibrated hybrid model's filtered estimates. The GP models
//! leave the controls that the training runs never varied out of their kernel
//! ([`crate::GpSettings::ignore_unvaried_controls`]): the 27-run design holds agitation and medium
//! pyruvate, the held-out runs move them.

use std::collections::BTreeMap;
use std::time::Instant;

use perfusio_core::{Control, ControlArray, DesignSpace, SpeciesArray, Trajectory};
use perfusio_mechanistic::doe::{self, TRAINING_FACTORS};
use perfusio_mechanistic::{NoiseModel, PlantSpec, VirtualReactor, VirtualReactorConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::calibrate::{CalibrationConfig, CalibrationReport};
use crate::config::{HybridConfig, MeanKind};
use crate::error::{HybridError, Result};
use crate::forecast::{Forecast, ForecastMethod, ForecastOptions};
use crate::metrics::{HorizonScore, ScoreAccumulator, ScoredPoint};
use crate::model::{HybridFitReport, HybridModel};

/// Training design of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainDesign {
    /// The 27-run Box–Behnken training design.
    BoxBehnken,
    /// A maximin Latin hypercube of `n` runs over the four training factors.
    Lhs(usize),
}

impl std::str::FromStr for TrainDesign {
    type Err = HybridError;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        if t == "box-behnken" || t == "bbd" || t == "box_behnken" {
            return Ok(Self::BoxBehnken);
        }
        if let Some(n) = t.strip_prefix("lhs:") {
            let n: usize = n.parse().map_err(|_| {
                HybridError::Config(format!(
                    "--train {s}: the run count after lhs: must be a whole number"
                ))
            })?;
            if !(2..=500).contains(&n) {
                return Err(HybridError::Config(format!(
                    "--train {s}: an LHS design needs 2 to 500 runs"
                )));
            }
            return Ok(Self::Lhs(n));
        }
        Err(HybridError::Config(format!(
            "--train {s}: use box-behnken or lhs:N"
        )))
    }
}

/// Everything an evaluation depends on.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// The plant that generates training and test data.
    pub truth: PlantSpec,
    /// The mechanism inside the hybrid model.
    pub prior: PlantSpec,
    /// Training design.
    pub train: TrainDesign,
    /// Held-out runs.
    pub test_runs: usize,
    /// Culture length, days.
    pub days: u32,
    /// Forecast horizons scored, days.
    pub horizons: Vec<u32>,
    /// Master seed (training runs use `seed + i`, test runs `seed + 10 000 + i`).
    pub seed: u64,
    /// Measurement noise on (the ambr250 noise model) or off.
    pub noise: bool,
    /// Forecast method.
    pub method: ForecastMethod,
    /// Monte-Carlo paths.
    pub paths: usize,
    /// Days between control changes of the held-out runs.
    pub change_every: u32,
    /// Also score the calibrated mechanism and the hybrid model on it
    /// (`mechanistic-calibrated`, `hybrid-calibrated`), calibrated with these settings on
    /// the training runs only. `None` (default): the four uncalibrated models only; the
    /// `hybrid` and `mechanistic` entries are always uncalibrated.
    pub calibrate: Option<CalibrationConfig>,
    /// Also score learning across cell lines (`transfer`, `source-only`, `target-only`).
    pub transfer: Option<TransferConfig>,
}

/// The transfer experiment of an evaluation: a source plant's full design and a few days
/// of a few runs of the target (the `--truth` plant).
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// The plant whose 27-run design is the earlier campaign.
    pub source: PlantSpec,
    /// Runs of the target's design whose first days are known.
    pub target_runs: usize,
    /// Days of those runs that are known (day 0 to this day).
    pub target_days: u32,
}

/// The entries added by [`EvalConfig::transfer`], in report order.
pub const TRANSFER_MODEL_NAMES: [&str; 3] = ["transfer", "source-only", "target-only"];

/// The entries added when [`EvalConfig::transfer`] and [`EvalConfig::calibrate`] are both
/// set, in report order: the joint model with the shared mechanism calibrated on all runs
/// and each line's own calibrated on its runs alone ([`CalibrationConfig::per_line`]), and
/// the source-only and target-only models with their mechanism calibrated on their runs.
pub const TRANSFER_CALIBRATED_MODEL_NAMES: [&str; 3] = [
    "transfer-calibrated",
    "source-only-calibrated",
    "target-only-calibrated",
];

/// Line labels of the transfer experiment.
const SOURCE_LINE: &str = "source";
const TARGET_LINE: &str = "target";

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            truth: PlantSpec::preset(perfusio_mechanistic::CloneKind::CloneX),
            prior: PlantSpec::preset(perfusio_mechanistic::CloneKind::CloneX),
            train: TrainDesign::BoxBehnken,
            test_runs: 10,
            days: 28,
            horizons: vec![1, 3, 7],
            seed: 1,
            noise: true,
            method: ForecastMethod::MonteCarlo,
            paths: 256,
            change_every: 7,
            calibrate: None,
            transfer: None,
        }
    }
}

impl EvalConfig {
    /// Checks the values; the error names the option.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(HybridError::Config(m));
        if self.horizons.is_empty() || self.horizons.contains(&0) {
            return bad("--horizons: give positive day counts, e.g. 1,3,7".into());
        }
        let hmax = self.horizons.iter().copied().max().unwrap_or(1);
        if self.days < hmax + 3 || self.days > 120 {
            return bad(format!(
                "--days {}: need at least the longest horizon + 3 ({}) and at most 120",
                self.days,
                hmax + 3
            ));
        }
        if self.test_runs == 0 || self.test_runs > 200 {
            return bad(format!(
                "--test {}: use 1 to 200 held-out runs",
                self.test_runs
            ));
        }
        if self.paths < 2 {
            return bad("forecast paths must be at least 2".into());
        }
        if self.change_every == 0 {
            return bad("controls of held-out runs must change every 1 or more days".into());
        }
        if let Some(t) = &self.transfer {
            if t.target_runs == 0 || t.target_runs > 27 {
                return bad(format!(
                    "--transfer-runs {}: use 1 to 27 runs of the target's design",
                    t.target_runs
                ));
            }
            if t.target_days < 2 || t.target_days > self.days {
                return bad(format!(
                    "--transfer-days {}: use 2 to --days ({})",
                    t.target_days, self.days
                ));
            }
        }
        Ok(())
    }

    /// Start days of the scored forecasts: every 3 days from day 3 while the longest
    /// horizon still ends inside the culture.
    pub fn start_days(&self) -> Vec<u32> {
        let hmax = self.horizons.iter().copied().max().unwrap_or(1);
        (3..=self.days.saturating_sub(hmax)).step_by(3).collect()
    }
}

/// A held-out run: its noisy samples, the noise-free states and the applied controls.
#[derive(Debug, Clone)]
pub struct HeldOutRun {
    /// Accepted measurements of days `0..=days`.
    pub measured: Vec<SpeciesArray<Option<f64>>>,
    /// Noise-free states of days `0..=days`.
    pub truth: Vec<SpeciesArray<f64>>,
    /// Controls applied over each day.
    pub controls: Vec<ControlArray<f64>>,
}

fn reactor_config(cfg: &EvalConfig, seed: u64) -> VirtualReactorConfig {
    plant_config(cfg, &cfg.truth, seed)
}

fn plant_config(cfg: &EvalConfig, plant: &PlantSpec, seed: u64) -> VirtualReactorConfig {
    VirtualReactorConfig {
        clone: plant.clone,
        params: Some(plant.params),
        noise: if cfg.noise {
            NoiseModel::default()
        } else {
            NoiseModel::none()
        },
        seed,
        ..VirtualReactorConfig::default()
    }
}

/// Random controls inside the design space, bleed drawn as a fraction of perfusion.
pub fn random_controls(ds: &DesignSpace, rng: &mut ChaCha8Rng) -> ControlArray<f64> {
    let mut u = [0.0; 6];
    for c in Control::ALL {
        let spec = ds.control(c);
        u[c.index()] = spec.lower + rng.random::<f64>() * (spec.upper - spec.lower);
    }
    let perf = u[Control::PerfusionRate.index()];
    let b = ds.control(Control::BleedRate);
    let hi = b.upper.min(perf);
    u[Control::BleedRate.index()] = b.lower.min(hi) + rng.random::<f64>() * (hi - b.lower.min(hi));
    u
}

/// Simulates the held-out runs of an evaluation.
pub fn held_out_runs(cfg: &EvalConfig) -> Result<Vec<HeldOutRun>> {
    let ds = perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
    (0..cfg.test_runs)
        .map(|i| {
            let seed = cfg.seed.wrapping_add(10_000 + i as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de);
            let mut r = VirtualReactor::new(reactor_config(cfg, seed))?;
            let mut controls = Vec::with_capacity(cfg.days as usize);
            let mut u = random_controls(&ds, &mut rng);
            for day in 0..cfg.days {
                if day % cfg.change_every == 0 {
                    u = random_controls(&ds, &mut rng);
                }
                r.set_setpoints(&u)?;
                r.advance_day()?;
                controls.push(u);
            }
            let mut measured = Vec::new();
            let mut truth = Vec::new();
            for day in 0..=cfg.days {
                let s = r.sample(day)?;
                measured.push(s.validate(&ds).sample.species);
                truth.push(r.clean_state_on(day)?);
            }
            Ok(HeldOutRun {
                measured,
                truth,
                controls,
            })
        })
        .collect()
}

/// Simulates the training runs of an evaluation (noisy trajectories with their controls).
pub fn training_runs(cfg: &EvalConfig) -> Result<Vec<Trajectory>> {
    let runs = match &cfg.train {
        TrainDesign::BoxBehnken => doe::training_design(),
        TrainDesign::Lhs(n) => {
            let d = doe::latin_hypercube(*n, TRAINING_FACTORS.len(), cfg.seed, 200)?;
            doe::design_to_controls(&d, &TRAINING_FACTORS, &Control::defaults())?
        }
    };
    Ok(doe::simulate_design(
        &runs,
        &reactor_config(cfg, cfg.seed),
        cfg.days,
    )?)
}

/// A run with its cell-line label.
pub type LabelledRun = (Trajectory, Option<String>);

/// The runs of the transfer experiment, labelled by line: the source plant's design (full
/// length, seed `seed + 20 000`) and the first `target_days` days of the first
/// `target_runs` runs of the target's design (the evaluation's own training runs).
pub fn transfer_runs(
    cfg: &EvalConfig,
    t: &TransferConfig,
    target_design: &[Trajectory],
) -> Result<(Vec<LabelledRun>, Vec<LabelledRun>)> {
    let runs = match &cfg.train {
        TrainDesign::BoxBehnken => doe::training_design(),
        TrainDesign::Lhs(n) => {
            let d = doe::latin_hypercube(*n, TRAINING_FACTORS.len(), cfg.seed, 200)?;
            doe::design_to_controls(&d, &TRAINING_FACTORS, &Control::defaults())?
        }
    };
    let source_cfg = plant_config(cfg, &t.source, cfg.seed.wrapping_add(20_000));
    let source = doe::simulate_design(&runs, &source_cfg, cfg.days)?
        .into_iter()
        .map(|mut r| {
            r.run_id = format!("{SOURCE_LINE}-{}", r.run_id);
            (r, Some(SOURCE_LINE.to_string()))
        })
        .collect();
    let mut target = Vec::new();
    for r in target_design.iter().take(t.target_runs) {
        let mut cut = Trajectory::new(format!("{TARGET_LINE}-{}", r.run_id));
        for row in r.rows().iter().filter(|row| row.day <= t.target_days) {
            cut.push(row.day, row.species, row.controls)
                .map_err(|e| HybridError::Data(e.to_string()))?;
        }
        target.push((cut, Some(TARGET_LINE.to_string())));
    }
    Ok((source, target))
}

/// Scores of every model at every horizon, and timings.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Horizons scored.
    pub horizons: Vec<u32>,
    /// `models[name][horizon]`.
    pub models: BTreeMap<String, BTreeMap<u32, HorizonScore>>,
    /// Wall time of training the hybrid model (and the GP ablation), seconds.
    pub train_seconds: f64,
    /// Mean wall time of the hybrid model's forecasts of one held-out run (all start days),
    /// milliseconds.
    pub forecast_ms_per_run: f64,
    /// Fit report of the hybrid model.
    pub fit: HybridFitReport,
    /// Whether rRMSE was scored against the noise-free truth (always, for simulated runs).
    pub against_truth: bool,
    /// The calibration behind the calibrated entries, when asked for.
    pub calibration: Option<CalibrationReport>,
}

impl EvalReport {
    /// The JSON document of `perfusio evaluate --json`:
    /// `{"horizons":[…],"models":{"hybrid":{"1":{"rrmse":{"VCD":…,…,"mean":…},
    /// "coverage90":…,"coverage80":…,"sharpness90":…,"crps":…},…},…},
    /// "train_seconds":…,"forecast_ms_per_run":…}`. rRMSE in %, coverages as fractions.
    pub fn to_json(&self) -> Value {
        let mut models = Map::new();
        for (name, by_h) in &self.models {
            let mut hs = Map::new();
            for (h, s) in by_h {
                let mut rr = Map::new();
                for sp in perfusio_core::Species::ALL {
                    rr.insert(sp.name().to_string(), num(s.rrmse[sp.index()]));
                }
                rr.insert("mean".into(), num(Some(s.rrmse_mean)));
                hs.insert(
                    h.to_string(),
                    json!({
                        "rrmse": Value::Object(rr),
                        "coverage90": num(Some(s.coverage90)),
                        "coverage80": num(Some(s.coverage80)),
                        "sharpness90": num(Some(s.sharpness90)),
                        "crps": num(Some(s.crps)),
                    }),
                );
            }
            models.insert(name.clone(), Value::Object(hs));
        }
        let mut doc = json!({
            "horizons": self.horizons,
            "models": Value::Object(models),
            "train_seconds": self.train_seconds,
            "forecast_ms_per_run": self.forecast_ms_per_run,
        });
        if let (Some(c), Some(obj)) = (&self.calibration, doc.as_object_mut()) {
            obj.insert(
                "calibration".into(),
                serde_json::to_value(c).unwrap_or(Value::Null),
            );
        }
        doc
    }
}

fn num(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!(x),
        _ => Value::Null,
    }
}

/// The four models of the ablation, in report order.
pub const MODEL_NAMES: [&str; 4] = ["hybrid", "mechanistic", "gp", "persistence"];

/// The entries added by [`EvalConfig::calibrate`], in report order.
pub const CALIBRATED_MODEL_NAMES: [&str; 2] = ["hybrid-calibrated", "mechanistic-calibrated"];

/// Runs the whole pipeline. `progress` receives one line per stage.
pub fn evaluate(cfg: &EvalConfig, progress: &mut dyn FnMut(&str)) -> Result<EvalReport> {
    cfg.check()?;
    progress(&format!(
        "simulating training runs ({:?}) and {} held-out runs of {} days, truth {}",
        cfg.train, cfg.test_runs, cfg.days, cfg.truth
    ));
    let train = training_runs(cfg)?;
    let test = held_out_runs(cfg)?;
    let base = HybridConfig {
        max_day: cfg.days,
        calibrate: None,
        ..HybridConfig::for_design(cfg.prior.params, cfg.prior.to_string())
    };
    let labelled: Vec<(Trajectory, Option<String>)> =
        train.iter().cloned().map(|t| (t, None)).collect();
    let t0 = Instant::now();
    progress("training the hybrid model");
    let (hybrid, fit) = HybridModel::fit_runs(base.clone(), &labelled)?;
    progress(&format!(
        "  {} rows, {} iterations, converged: {}, {:.2} s",
        fit.rows,
        fit.iterations,
        fit.converged,
        fit.wall_time.as_secs_f64()
    ));
    let train_seconds = t0.elapsed().as_secs_f64();
    progress("training the GP-only ablation on the same rows");
    let mut gp_only = HybridModel::with_dataset(
        HybridConfig {
            mean: MeanKind::Constant,
            ..base.clone()
        },
        hybrid.dataset().clone(),
    )?;
    gp_only.retrain(false)?;
    let mechanistic = HybridModel::new(base.clone())?;
    let persistence = HybridModel::new(HybridConfig {
        mean: MeanKind::Persistence,
        ..base.clone()
    })?;
    let calibrated = match &cfg.calibrate {
        Some(c) => {
            progress(
                "calibrating the mechanism on the training runs and training the hybrid model on it",
            );
            let (h, fit) = HybridModel::fit_runs(
                HybridConfig {
                    calibrate: Some(c.clone()),
                    ..base.clone()
                },
                &labelled,
            )?;
            if let Some(r) = &fit.calibration {
                progress(&r.table());
            } else if let Some(why) = &fit.calibration_skipped {
                progress(why);
            }
            let mech = HybridModel::new(HybridConfig {
                prior: *h.mechanism_params(),
                ..base.clone()
            })?;
            Some((h, mech, fit.calibration))
        }
        None => None,
    };
    let transfer = match &cfg.transfer {
        Some(t) => {
            let (source, target) = transfer_runs(cfg, t, &train)?;
            progress(&format!(
                "transfer: {} runs of {} and days 0-{} of {} runs of {}",
                source.len(),
                t.source,
                t.target_days,
                target.len(),
                cfg.truth
            ));
            let mut joint_runs = source.clone();
            joint_runs.extend(target.iter().cloned());
            progress("training the joint model (both lines, learned line embedding)");
            let (mut joint, f) = HybridModel::fit_runs(base.clone(), &joint_runs)?;
            joint.select_line(Some(TARGET_LINE));
            progress(&format!(
                "  {} rows, {} iterations, converged: {}, {:.2} s",
                f.rows,
                f.iterations,
                f.converged,
                f.wall_time.as_secs_f64()
            ));
            progress("training the source-only and target-only models");
            let (source_only, _) = HybridModel::fit_runs(base.clone(), &source)?;
            let (target_only, _) = HybridModel::fit_runs(base.clone(), &target)?;
            let calibrated = match &cfg.calibrate {
                Some(c) => {
                    progress("training the joint model with a mechanism calibrated per line");
                    let (mut m, f) = HybridModel::fit_runs(
                        HybridConfig {
                            calibrate: Some(CalibrationConfig {
                                per_line: true,
                                ..c.clone()
                            }),
                            ..base.clone()
                        },
                        &joint_runs,
                    )?;
                    for (line, r) in &f.line_calibrations {
                        progress(&format!("line {line}:\n{}", r.table()));
                    }
                    m.select_line(Some(TARGET_LINE));
                    progress("training the calibrated source-only and target-only models");
                    let cal = HybridConfig {
                        calibrate: Some(c.clone()),
                        ..base.clone()
                    };
                    let (s, _) = HybridModel::fit_runs(cal.clone(), &source)?;
                    let (t, f) = HybridModel::fit_runs(cal, &target)?;
                    if let Some(r) = &f.calibration {
                        progress(&format!("target-only:\n{}", r.table()));
                    }
                    Some([m, s, t])
                }
                None => None,
            };
            Some(([joint, source_only, target_only], calibrated))
        }
        None => None,
    };
    let mut models: Vec<(&str, &HybridModel)> = vec![
        ("hybrid", &hybrid),
        ("mechanistic", &mechanistic),
        ("gp", &gp_only),
        ("persistence", &persistence),
    ];
    if let Some((h, m, _)) = &calibrated {
        models.push((CALIBRATED_MODEL_NAMES[0], h));
        models.push((CALIBRATED_MODEL_NAMES[1], m));
    }
    if let Some((t, calibrated)) = &transfer {
        for (name, m) in TRANSFER_MODEL_NAMES.iter().zip(t) {
            models.push((name, m));
        }
        if let Some(c) = calibrated {
            for (name, m) in TRANSFER_CALIBRATED_MODEL_NAMES.iter().zip(c) {
                models.push((name, m));
            }
        }
    }
    let hmax = cfg.horizons.iter().copied().max().unwrap_or(1) as usize;
    let starts = cfg.start_days();
    let mut acc: BTreeMap<(usize, u32), ScoreAccumulator> = BTreeMap::new();
    let mut hybrid_ms = 0.0;
    for (ri, run) in test.iter().enumerate() {
        progress(&format!(
            "forecasting held-out run {}/{}",
            ri + 1,
            test.len()
        ));
        // one filter pass with the hybrid model: every model starts from the same estimates
        let estimates = hybrid.filter_sequence(0, &run.measured, &run.controls)?;
        for &s in &starts {
            let est = &estimates[s as usize];
            let schedule = &run.controls[s as usize..s as usize + hmax];
            for (mi, (name, model)) in models.iter().enumerate() {
                let opts = ForecastOptions {
                    method: cfg.method,
                    paths: cfg.paths,
                    seed: cfg.seed ^ (u64::from(s) << 20) ^ ri as u64,
                    keep_paths: true,
                    threads: 2,
                };
                let t = Instant::now();
                let f = model.forecast(est, schedule, &opts)?;
                if *name == "hybrid" {
                    hybrid_ms += t.elapsed().as_secs_f64() * 1e3;
                }
                for &h in &cfg.horizons {
                    let day = (s + h) as usize;
                    score(
                        acc.entry((mi, h)).or_default(),
                        &f,
                        h,
                        &run.truth[day],
                        &run.measured[day],
                        opts.seed,
                    );
                }
            }
        }
    }
    let mut out: BTreeMap<String, BTreeMap<u32, HorizonScore>> = BTreeMap::new();
    for ((mi, h), a) in &acc {
        if let Some(s) = a.finish() {
            out.entry(models[*mi].0.to_string())
                .or_default()
                .insert(*h, s);
        }
    }
    Ok(EvalReport {
        horizons: cfg.horizons.clone(),
        models: out,
        train_seconds,
        forecast_ms_per_run: hybrid_ms / test.len().max(1) as f64,
        fit,
        against_truth: true,
        calibration: calibrated.and_then(|c| c.2),
    })
}

/// Scores forecast `f` at horizon `h` against the truth and the measurement of that day.
fn score(
    acc: &mut ScoreAccumulator,
    f: &Forecast,
    h: u32,
    truth: &SpeciesArray<f64>,
    measured: &SpeciesArray<Option<f64>>,
    seed: u64,
) {
    let i = h as usize - 1;
    let ens = f.measured_ensemble(i, seed);
    let points: SpeciesArray<ScoredPoint<'_>> = std::array::from_fn(|k| ScoredPoint {
        state_mean: f.state[i].mean[k],
        measured_mean: f.measured[i].mean[k],
        quantiles: std::array::from_fn(|q| f.measured[i].quantiles[q][k]),
        ensemble: &ens[k],
    });
    acc.add(&points, &truth.map(Some), measured);
}
