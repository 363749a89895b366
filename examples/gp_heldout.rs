//! Held-out accuracy and calibration of the hybrid GP (mechanistic prior mean + multi-task
//! GP on one-day transitions), on simulated runs.
//!
//! The "real" cell line is clone X with faster growth, leaner glucose uptake and more
//! product (as in the daily-loop example); the prior mean is the textbook clone X. Training
//! data are noisy runs of the 27-run Box–Behnken training design (seed 42 + run); the test
//! runs are 8 Latin-hypercube operating points over the same four factors, simulated with
//! other noise seeds (1000 + run). Every model predicts each test transition `t → t+1`
//! (28 per run) from the measured state of day `t` (a missing species filled with the
//! mechanistic one-day prediction from the day before) and is scored on:
//!
//! * rRMSE per species: RMSE of the predicted mean against the noise-free state of day
//!   `t+1`, divided by the mean of that state over the scored transitions, in %;
//! * coverage of the 90 % predictive interval (observation noise included) of the noisy
//!   measurement of day `t+1`.
//!
//! Scenarios: `online` fits one GP per training run on that run's 28 transitions (252 rows
//! at most, fixed setpoints: every control column is constant) — six runs, scores pooled;
//! `offline` fits one GP on all 27 runs (about 6 800 rows). Each is run with the input map
//! derived from the data and with the design space's bounds fixed
//! (`GpParams::input_bounds`). The mechanistic prior alone is scored for reference.
//!
//! ```sh
//! cargo run -p perfusio-examples --example gp_heldout -- [--offline | --offline-only] [--runs 6] [--dump DIR]
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use perfusio_core::{
    Control, ControlArray, DEFAULT_AMBR250_DESIGN_SPACE, N_SPECIES, Species, SpeciesArray,
};
use perfusio_examples::{MechanisticMean, N_BASE, N_COLS, TrainingSet, base_row, input_bounds};
use perfusio_gp::{GpParams, MultiTaskGp};
use perfusio_mechanistic::doe::{self, TRAINING_FACTORS};
use perfusio_mechanistic::{
    KineticParams, PlantModel, VirtualReactor, VirtualReactorConfig, initial_state,
};

/// Two-sided 90 % standard-normal quantile.
const Z90: f64 = 1.644_853_626_951_472_2;
/// Transitions per run.
const DAYS: u32 = 28;

/// One simulated run: noisy samples, noise-free states and the constant setpoints.
struct Run {
    samples: Vec<SpeciesArray<Option<f64>>>,
    clean: Vec<SpeciesArray<f64>>,
    controls: ControlArray<f64>,
}

fn truth() -> KineticParams {
    let mut p = KineticParams::clone_x();
    p.mu_max *= 1.08;
    p.q_glc_max *= 0.90;
    p.beta_p *= 1.15;
    p
}

fn simulate(controls: ControlArray<f64>, seed: u64) -> anyhow::Result<Run> {
    let config = VirtualReactorConfig {
        setpoints: controls,
        seed,
        ..VirtualReactorConfig::default()
    };
    let mut reactor = VirtualReactor::with_params(config, truth())?;
    reactor.advance_to(DAYS)?;
    let mut samples = Vec::new();
    let mut clean = Vec::new();
    for day in 0..=DAYS {
        samples.push(reactor.sample(day)?.species);
        clean.push(reactor.clean_state_on(day)?);
    }
    Ok(Run {
        samples,
        clean,
        controls,
    })
}

/// Base inputs of every transition of a run: the measured state, a missing species filled
/// with the mechanistic one-day prediction from the (filled) day before.
fn inputs(run: &Run, mean: &MechanisticMean) -> anyhow::Result<Vec<[f64; N_BASE]>> {
    let mut out: Vec<[f64; N_BASE]> = Vec::new();
    let mut prev: Option<[f64; N_BASE]> = None;
    for day in 0..DAYS {
        let predicted = match &prev {
            Some(p) => mean.predict(p)?,
            None => initial_state(),
        };
        let mut state = [0.0; N_SPECIES];
        for s in 0..N_SPECIES {
            state[s] = run.samples[day as usize][s].unwrap_or(predicted[s]);
        }
        let row = base_row(&state, &run.controls, day);
        out.push(row);
        prev = Some(row);
    }
    Ok(out)
}

fn training_set(runs: &[&Run], mean: &MechanisticMean) -> anyhow::Result<TrainingSet> {
    let mut ts = TrainingSet::default();
    for run in runs {
        for (day, input) in inputs(run, mean)?.iter().enumerate() {
            ts.push_transition(input, &run.samples[day + 1]);
        }
    }
    Ok(ts)
}

/// Pooled scores over test transitions.
#[derive(Default)]
struct Score {
    sq_err: [f64; N_SPECIES],
    truth_sum: [f64; N_SPECIES],
    n: [u32; N_SPECIES],
    covered: u32,
    checked: u32,
}

impl Score {
    fn add(&mut self, mean: &[f64], sd_obs: Option<&[f64]>, run: &Run, day: usize) {
        for s in 0..N_SPECIES {
            let clean = run.clean[day + 1][s];
            self.sq_err[s] += (mean[s] - clean).powi(2);
            self.truth_sum[s] += clean;
            self.n[s] += 1;
            if let (Some(sd), Some(y)) = (sd_obs, run.samples[day + 1][s]) {
                self.checked += 1;
                if (y - mean[s]).abs() <= Z90 * sd[s] {
                    self.covered += 1;
                }
            }
        }
    }

    fn rrmse(&self) -> [f64; N_SPECIES] {
        std::array::from_fn(|s| {
            let n = f64::from(self.n[s].max(1));
            let level = (self.truth_sum[s] / n).abs().max(1e-12);
            100.0 * (self.sq_err[s] / n).sqrt() / level
        })
    }

    fn print(&self, label: &str) {
        let label = if label.len() > 28 {
            &label[..28]
        } else {
            label
        };
        let r = self.rrmse();
        // pyruvate is fed at 0 in every run: its level is ~0 and its rRMSE meaningless
        let scored: Vec<f64> = Species::ALL
            .iter()
            .filter(|s| **s != Species::Pyr)
            .map(|s| r[s.index()])
            .collect();
        let mean = scored.iter().sum::<f64>() / scored.len() as f64;
        let cover = if self.checked > 0 {
            format!("{:.3}", f64::from(self.covered) / f64::from(self.checked))
        } else {
            "—".into()
        };
        let cols: Vec<String> = r.iter().map(|v| format!("{v:>6.2}")).collect();
        println!("{label:<28} {} | {mean:>6.2} | {cover:>6}", cols.join(" "));
    }
}

fn header() {
    let names: Vec<String> = Species::ALL
        .iter()
        .map(|s| format!("{:>6}", s.name()))
        .collect();
    println!(
        "{:<28} {} | {:>6} | {:>6}",
        "rRMSE % (vs clean)",
        names.join(" "),
        "mean*",
        "cov90"
    );
}

fn fit(ts: &TrainingSet, mean: &Arc<MechanisticMean>, bounds: bool) -> anyhow::Result<MultiTaskGp> {
    let mut params = GpParams::new(N_BASE, N_SPECIES).prior_mean(mean.clone());
    if bounds {
        params = params.input_bounds(input_bounds(&DEFAULT_AMBR250_DESIGN_SPACE, DAYS));
    }
    Ok(params.check()?.fit(&ts.x, N_COLS, &ts.y)?)
}

fn score_gp(
    gp: &MultiTaskGp,
    tests: &[Run],
    mean: &MechanisticMean,
    score: &mut Score,
) -> anyhow::Result<()> {
    for run in tests {
        let base: Vec<f64> = inputs(run, mean)?.iter().flatten().copied().collect();
        let p = gp.predict_tasks(&base, true)?;
        for (day, tp) in p.iter().enumerate() {
            let sd: Vec<f64> = (0..N_SPECIES)
                .map(|s| tp.covariance[s * N_SPECIES + s].max(0.0).sqrt())
                .collect();
            score.add(&tp.mean, Some(&sd), run, day);
        }
    }
    Ok(())
}

fn describe(gp: &MultiTaskGp, rows: usize, ms: f64) -> String {
    let r = gp.report();
    format!(
        "rows {rows:>5}  iters {:>5}  evals {:>5}  converged {:<5}  nlml {:>10.3}  {:>9.1} ms",
        r.iterations, r.evaluations, r.converged, r.nlml, ms
    )
}

fn main() -> anyhow::Result<()> {
    let mut offline = false;
    let mut online_runs = true;
    let mut n_online = 6usize;
    let mut dump: Option<std::path::PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--offline" => offline = true,
            "--offline-only" => {
                offline = true;
                online_runs = false;
            }
            "--runs" => {
                n_online = it
                    .next()
                    .context("--runs needs a value")?
                    .parse()
                    .context("--runs")?
            }
            "--dump" => dump = Some(it.next().context("--dump needs a directory")?.into()),
            other => {
                bail!("unknown option {other}; use --offline, --offline-only, --runs N, --dump DIR")
            }
        }
    }
    let design = doe::training_design();
    let train: Vec<Run> = design
        .iter()
        .enumerate()
        .map(|(i, c)| simulate(*c, 42 + i as u64))
        .collect::<anyhow::Result<_>>()?;
    let lhs = doe::latin_hypercube(8, TRAINING_FACTORS.len(), 2024, 200)?;
    let test_controls = doe::design_to_controls(&lhs, &TRAINING_FACTORS, &Control::defaults())?;
    let tests: Vec<Run> = test_controls
        .iter()
        .enumerate()
        .map(|(i, c)| simulate(*c, 1000 + i as u64))
        .collect::<anyhow::Result<_>>()?;
    let mean = Arc::new(MechanisticMean::new(PlantModel::new(
        KineticParams::clone_x(),
    )));

    // the mechanistic prior alone
    let mut mech = Score::default();
    for run in &tests {
        for (day, input) in inputs(run, &mean)?.iter().enumerate() {
            mech.add(&mean.predict(input)?, None, run, day);
        }
    }

    if let Some(dir) = &dump {
        // the training sets as JSON {x, y} (rows [base..., task]), e.g. for an external
        // reference implementation
        std::fs::create_dir_all(dir)?;
        let write = |name: &str, ts: &TrainingSet| -> anyhow::Result<()> {
            let v = serde_json::json!({ "n_cols": N_COLS, "x": ts.x, "y": ts.y });
            std::fs::write(dir.join(name), serde_json::to_string(&v)?)?;
            Ok(())
        };
        let step = (design.len() / n_online.max(1)).max(1);
        for r in (0..design.len()).step_by(step).take(n_online) {
            write(
                &format!("hyb_online_{}.json", r + 1),
                &training_set(&[&train[r]], &mean)?,
            )?;
        }
        write("hyb_online.json", &training_set(&[&train[0]], &mean)?)?;
        let all: Vec<&Run> = train.iter().collect();
        write("hyb_offline.json", &training_set(&all, &mean)?)?;
        // the prior mean at every base input, and the test transitions with their truth
        let mut means = Vec::new();
        for run in train.iter().chain(&tests) {
            for input in inputs(run, &mean)? {
                means.push(serde_json::json!({"x": input, "m": mean.predict(&input)?}));
            }
        }
        let mut test_rows = Vec::new();
        for run in &tests {
            for (day, input) in inputs(run, &mean)?.iter().enumerate() {
                test_rows.push(serde_json::json!({
                    "x": input,
                    "clean": run.clean[day + 1],
                    "noisy": run.samples[day + 1],
                }));
            }
        }
        let v = serde_json::json!({ "means": means, "tests": test_rows });
        std::fs::write(dir.join("hyb_eval.json"), serde_json::to_string(&v)?)?;
    }

    let mut rows = Vec::new();
    for (label, bounds) in [("derived map", false), ("design bounds", true)] {
        if online_runs {
            println!("online ({label}): one GP per training run (28 transitions), {n_online} runs");
            let mut online = Score::default();
            let step = (design.len() / n_online.max(1)).max(1);
            for r in (0..design.len()).step_by(step).take(n_online) {
                let ts = training_set(&[&train[r]], &mean)?;
                let t0 = Instant::now();
                let gp = fit(&ts, &mean, bounds)?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                println!("  run {:>2}: {}", r + 1, describe(&gp, ts.len(), ms));
                score_gp(&gp, &tests, &mean, &mut online)?;
            }
            rows.push((format!("online, {label}"), online));
        }
        if offline {
            let all: Vec<&Run> = train.iter().collect();
            let ts = training_set(&all, &mean)?;
            let t0 = Instant::now();
            let gp = fit(&ts, &mean, bounds)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            println!("offline ({label}): {}", describe(&gp, ts.len(), ms));
            let mut s = Score::default();
            score_gp(&gp, &tests, &mean, &mut s)?;
            rows.push((format!("offline, {label}"), s));
        }
    }

    println!();
    header();
    mech.print("mechanistic prior");
    for (label, s) in &rows {
        s.print(label);
    }
    println!("* mean over species without Pyr (fed at 0: level ~0)");
    Ok(())
}
