//! The daily loop, end to end, on the built-in virtual ambr250 reactor (no hardware):
//!
//! 1. read the day's raw reading through the `Connector` trait and validate it in the one
//!    shared step (`read_validated`), auditing every rejected value,
//! 2. filter: the hybrid model's state filter turns the noisy, gappy sample into a state
//!    estimate with its uncertainty (a missing species is carried by the model, never 0),
//! 3. learn: record the day and the controls **applied** over it in the deduplicated
//!    dataset and, every `--retrain-every` days, retrain `perfusio_hybrid::HybridModel`
//!    (the mechanistic one-day step as the GP's prior mean, warm-started refits),
//! 4. forecast tomorrow's measured values with 90 % bands from the filtered state and,
//!    the next day, score them against what the reactor reports (coverage and sharpness:
//!    band width over 3.29 × RMSE, 1.0 for a calibrated Gaussian),
//! 5. apply an operator's setpoint change on day 10 (it acts from day 10 on),
//! 6. record every step in a hash-chained audit log and verify it at the end.
//!
//! The virtual cell line grows faster, takes up less glucose and makes more antibody than
//! the textbook parameters say, so the mechanistic model alone is biased; the summary
//! compares its one-day errors with the hybrid model's.
//!
//! ```sh
//! cargo run -p perfusio-examples --example daily_loop -- [--days 21] [--seed 7] [--out DIR]
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};
use perfusio_audit::canonical::canonical_sha256;
use perfusio_audit::event::{
    Forecast, ForecastMethod, ModelRetrained, RunFinished, RunStarted, SampleRead, SampleRejected,
    SetpointWritten, SpeciesBands,
};
use perfusio_audit::{Actor, AuditWriter, Entry, VerifyOptions, WriterOptions, verify_file};
use perfusio_connectors::virtual_reactor::VirtualReactorConnector;
use perfusio_core::{
    Connector, Control, DEFAULT_AMBR250_DESIGN_SPACE, N_SPECIES, Setpoints, Species, SpeciesArray,
    read_validated,
};
use perfusio_hybrid::{
    ForecastMethod as HybridMethod, ForecastOptions, GpSettings, HybridConfig, HybridModel,
    StateEstimate,
};
use perfusio_mechanistic::{CloneKind, KineticParams, VirtualReactor, VirtualReactorConfig};

/// Width of a calibrated Gaussian 90 % band in RMSEs (2 × 1.645).
const WIDTH90_PER_RMSE: f64 = 3.289_707_253_902_944;
/// Run id of the culture in the model's dataset.
const RUN_ID: &str = "R01";

struct Args {
    days: u32,
    seed: u64,
    retrain_every: u32,
    out: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        days: 21,
        seed: 7,
        retrain_every: 3,
        out: std::env::temp_dir().join(format!("perfusio-daily-loop-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--days" => a.days = value.parse().context("--days")?,
            "--seed" => a.seed = value.parse().context("--seed")?,
            "--retrain-every" => a.retrain_every = value.parse().context("--retrain-every")?,
            "--out" => a.out = PathBuf::from(value),
            other => bail!("unknown option {other}; use --days, --seed, --retrain-every, --out"),
        }
    }
    if !(4..=60).contains(&a.days) || a.retrain_every == 0 {
        bail!("--days must be in 4..=60 and --retrain-every at least 1");
    }
    Ok(a)
}

/// One-day forecast of the measured values made on day t for day t + 1.
struct DayForecast {
    mean: SpeciesArray<f64>,
    q05: SpeciesArray<f64>,
    q95: SpeciesArray<f64>,
    mechanistic: SpeciesArray<f64>,
}

#[derive(Default)]
struct Score {
    covered: [u32; N_SPECIES],
    checked: [u32; N_SPECIES],
    width: [f64; N_SPECIES],
    sq_err_hybrid: [f64; N_SPECIES],
    sq_err_mech: [f64; N_SPECIES],
}

/// What a run achieved, for the summary and the test.
struct Summary {
    score: Score,
    audit_records: u64,
    finished: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let summary = run(&parse_args()?).await?;
    let score = &summary.score;
    println!("\none-day-ahead forecasts checked against the next sample");
    println!(
        "{:<6} {:>9} {:>10} {:>14} {:>14}",
        "species", "90% band", "sharpness", "RMSE hybrid", "RMSE mech."
    );
    for s in Species::ALL {
        let i = s.index();
        if score.checked[i] == 0 {
            continue;
        }
        let (hybrid, mech) = score.rmse(s);
        println!(
            "{:<6} {:>5}/{:<3} {:>10.2} {:>14.4} {:>14.4}",
            s.name(),
            score.covered[i],
            score.checked[i],
            score.sharpness(s),
            hybrid,
            mech
        );
    }
    let (cov, n) = score.coverage();
    if n > 0 {
        println!(
            "coverage of the 90 % bands: {cov}/{n} = {:.0} %; mean sharpness {:.2} \
             (band width / 3.29 RMSE: 1.0 is a calibrated Gaussian, above 1.5 too wide)",
            100.0 * f64::from(cov) / f64::from(n),
            score.mean_sharpness()
        );
    }
    println!(
        "audit: OK {} records (run finished: {})",
        summary.audit_records, summary.finished
    );
    Ok(())
}

impl Score {
    fn coverage(&self) -> (u32, u32) {
        (self.covered.iter().sum(), self.checked.iter().sum())
    }

    /// Mean 90 % band width over 3.29 × RMSE of one species.
    fn sharpness(&self, species: Species) -> f64 {
        let i = species.index();
        let k = f64::from(self.checked[i].max(1));
        (self.width[i] / k) / (WIDTH90_PER_RMSE * self.rmse(species).0)
    }

    /// Sharpness averaged over the species that were scored.
    fn mean_sharpness(&self) -> f64 {
        let v: Vec<f64> = Species::ALL
            .iter()
            .filter(|s| self.checked[s.index()] > 0)
            .map(|s| self.sharpness(*s))
            .filter(|x| x.is_finite())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    fn rmse(&self, species: Species) -> (f64, f64) {
        let i = species.index();
        let k = f64::from(self.checked[i].max(1));
        (
            (self.sq_err_hybrid[i] / k).sqrt(),
            (self.sq_err_mech[i] / k).sqrt(),
        )
    }
}

async fn run(args: &Args) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let audit_path = args.out.join("audit.jsonl");
    let ds = DEFAULT_AMBR250_DESIGN_SPACE;

    // The "real" cell line: faster growth, leaner glucose uptake, more product.
    let mut truth = KineticParams::clone_x();
    truth.mu_max *= 1.08;
    truth.q_glc_max *= 0.90;
    truth.beta_p *= 1.15;
    let config = VirtualReactorConfig {
        seed: args.seed,
        ..VirtualReactorConfig::default()
    };
    let reactor = VirtualReactor::with_params(config, truth)?;
    let connector = VirtualReactorConnector::from_reactor(reactor);

    let (mut audit, _) = AuditWriter::open(&audit_path, WriterOptions::new("daily-loop", "R01"))?;
    audit.append(Entry::new(
        0,
        RunStarted {
            software: format!("perfusio-rs {}", env!("CARGO_PKG_VERSION")),
            seed: Some(args.seed),
            settings: [
                (
                    "connector".to_string(),
                    serde_json::json!(connector.describe()),
                ),
                ("days".to_string(), serde_json::json!(args.days)),
                (
                    "retrain_every".to_string(),
                    serde_json::json!(args.retrain_every),
                ),
            ]
            .into_iter()
            .collect(),
        },
    ))?;

    println!(
        "perfusio-rs daily loop on the virtual ambr250 reactor (seed {})",
        args.seed
    );
    println!("audit log: {}\n", audit_path.display());
    println!(
        "day      VCD   forecast 90% band      Glc   forecast 90% band   Titer   \
         forecast 90% band  note"
    );

    let mut controls = Setpoints::defaults(0);
    // the hybrid model: the textbook clone-X mechanism as the GP's prior mean, learned
    // online from this run's own days
    // online, one run: the GP's noise above the measurement noise is process variability
    // the few days cannot explain; carry it (`process_noise`), or the bands are too narrow.
    // And the mean residual of the days seen so far is the mechanism's error in the one
    // regime the run has been in; uncentred (`centre_residuals: false`), the step returns
    // to the mechanism, not to mechanism + that offset, where the controls move the culture
    // somewhere new (the glucose setpoint change on day 10).
    let config = HybridConfig {
        max_day: args.days,
        gp: GpSettings {
            process_noise: true,
            centre_residuals: false,
            ..GpSettings::default()
        },
        ..HybridConfig::with_prior(KineticParams::for_clone(CloneKind::CloneX), "CloneX")
    };
    let mechanism = HybridModel::new(config.clone())?;
    let mut model = HybridModel::new(config)?;
    let mut estimate: Option<StateEstimate> = None;
    let mut forecast: Option<DayForecast> = None;
    let mut score = Score::default();
    let mut fit_ms = Vec::new();
    let mut model_sha256 = String::new();
    let one_day = ForecastOptions {
        method: HybridMethod::MonteCarlo,
        paths: 512,
        seed: args.seed,
        keep_paths: false,
        ..ForecastOptions::default()
    };

    for day in 0..=args.days {
        let mut note = String::new();
        // Operator intervention: more perfusion and a richer medium from day 10 on.
        if day == 10 {
            controls = Setpoints::defaults(day)
                .with(Control::PerfusionRate, 1.5)
                .with(Control::GlucoseSetpoint, 6.5);
            let receipt = connector.write_setpoints(&controls).await?;
            let written = SetpointWritten::new(connector.describe(), receipt);
            note = format!(
                "setpoints written ({}/{} confirmed by read-back)",
                written.confirmed().len(),
                written.receipt.controls.len()
            );
            audit.append(Entry::new(day, written).by(Actor::operator("demo-operator")?))?;
        }

        // 1. read and validate (the one validation boundary, the same for every connector)
        let checked = read_validated(&connector, day, &ds).await?;
        audit.append(Entry::new(
            day,
            SampleRead::from_sample(&checked.sample, connector.describe()),
        ))?;
        for r in &checked.rejections {
            audit.append(Entry::new(day, SampleRejected::from(r)))?;
        }
        let measured = checked.sample.species;

        // score yesterday's forecast against today's measurements
        if let Some(f) = &forecast {
            for (s, value) in measured.iter().enumerate() {
                if let Some(v) = *value {
                    score.checked[s] += 1;
                    if (f.q05[s]..=f.q95[s]).contains(&v) {
                        score.covered[s] += 1;
                    }
                    score.width[s] += f.q95[s] - f.q05[s];
                    score.sq_err_hybrid[s] += (v - f.mean[s]).powi(2);
                    score.sq_err_mech[s] += (v - f.mechanistic[s]).powi(2);
                }
            }
        }

        // 2. filter: today's state estimate from yesterday's and today's sample
        let prior = match estimate.take() {
            Some(e) => Some(model.filter_predict(&e, &controls_before(&model, day)?)?),
            None => None,
        };
        let est = model.filter_update(prior, day, &measured)?;
        model.record_day(RUN_ID, None, day, measured)?;
        model.record_estimate(RUN_ID, day, est.mean_species(&model.config().transform))?;

        // 3. learn: the controls in force over today are the applied ones
        model.record_applied(RUN_ID, day, controls.values)?;
        if day >= 3 && day % args.retrain_every == 0 {
            let rep = model.retrain(true)?;
            let ms = rep.wall_time.as_secs_f64() * 1e3;
            fit_ms.push(ms);
            model_sha256 = model.fingerprint();
            audit.append(Entry::new(
                day,
                ModelRetrained {
                    model_sha256: model_sha256.clone(),
                    rows: rep.rows as u64,
                    transitions: rep.transitions as u64,
                    nlml: rep.nlml,
                    iterations: rep.iterations,
                    evaluations: rep.evaluations,
                    converged: rep.converged,
                    termination: rep.termination.clone(),
                    warm_start: rep.warm_start,
                    duration_s: rep.wall_time.as_secs_f64(),
                    calibrated: Default::default(),
                    pathways: rep.pathways.clone(),
                },
            ))?;
            note += &format!(
                "{}model retrained on {} rows in {ms:.1} ms{}",
                if note.is_empty() { "" } else { "; " },
                rep.rows,
                if rep.converged {
                    ""
                } else {
                    " (not converged)"
                }
            );
        }

        // 4. forecast tomorrow's measured values from the filtered state
        forecast = if model.gp().is_some() {
            let f = model.forecast(&est, &[controls.values], &one_day)?;
            let m = mechanism.forecast(&est, &[controls.values], &one_day)?;
            let band = &f.measured[0];
            let day_forecast = DayForecast {
                mean: band.mean,
                q05: band.quantiles[0],
                q95: band.quantiles[4],
                mechanistic: m.measured[0].mean,
            };
            let bands = Species::ALL
                .iter()
                .map(|s| {
                    let i = s.index();
                    let q = |j: usize| vec![band.quantiles[j][i]];
                    let b = SpeciesBands {
                        mean: vec![band.mean[i]],
                        q05: q(0),
                        q10: q(1),
                        q50: q(2),
                        q90: q(3),
                        q95: q(4),
                    };
                    (s.name().to_string(), b)
                })
                .collect();
            audit.append(Entry::new(
                day,
                Forecast {
                    from_day: day,
                    horizon_days: 1,
                    method: ForecastMethod::MonteCarlo,
                    paths: u32::try_from(one_day.paths)?,
                    model_sha256: model_sha256.clone(),
                    forecast_sha256: canonical_sha256(&f)?,
                    days_ahead: vec![1],
                    bands,
                },
            ))?;
            Some(day_forecast)
        } else {
            None
        };
        estimate = Some(est);

        let show = |s: Species| -> (String, String) {
            let v = measured[s.index()].map_or("—".into(), |v| format!("{v:.2}"));
            let b = forecast.as_ref().map_or(String::new(), |f| {
                let i = s.index();
                format!("[{:.2}, {:.2}]", f.q05[i], f.q95[i])
            });
            (v, b)
        };
        let (vcd, vcd_b) = show(Species::VCD);
        let (glc, glc_b) = show(Species::Glc);
        let (tit, tit_b) = show(Species::Titer);
        println!(
            "{day:>3}  {vcd:>7} {vcd_b:>19}  {glc:>7} {glc_b:>19}  {tit:>6} {tit_b:>19}  {note}"
        );
    }

    audit.append(Entry::new(
        args.days,
        RunFinished {
            completed: true,
            reason: "completed".into(),
            last_day: args.days,
        },
    ))?;
    let head = audit.close()?;
    let report = verify_file(&audit_path, &VerifyOptions::default())?;

    if !fit_ms.is_empty() {
        let worst = fit_ms.iter().copied().fold(0.0, f64::max);
        println!("\nmodel fits: {} (slowest {worst:.1} ms)", fit_ms.len());
    }
    println!("audit head hash: {}", head.hash);
    Ok(Summary {
        score,
        audit_records: report.records,
        finished: report.finished,
    })
}

/// The controls applied over `day - 1 → day` (the ones recorded for yesterday).
fn controls_before(
    model: &HybridModel,
    day: u32,
) -> anyhow::Result<perfusio_core::ControlArray<f64>> {
    let run = model
        .dataset()
        .runs()
        .iter()
        .find(|r| r.id == RUN_ID)
        .context("the run is not in the dataset")?;
    day.checked_sub(1)
        .and_then(|d| run.days.get(&d))
        .and_then(|d| d.applied)
        .with_context(|| {
            format!(
                "no applied controls recorded for day {}",
                day.saturating_sub(1)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daily loop runs, its one-day bands are calibrated and honest (coverage ≥ 0.85,
    /// sharpness ≤ 1.5) and its forecasts better than the mechanistic model alone where the virtual cell line differs from it, and its audit
    /// log verifies.
    #[tokio::test]
    async fn main_job_runs_learns_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            days: 21,
            seed: 7,
            retrain_every: 3,
            out: dir.path().to_path_buf(),
        };
        let summary = run(&args).await.unwrap();
        assert!(summary.finished);
        assert!(summary.audit_records > 40, "{}", summary.audit_records);
        let (cov, n) = summary.score.coverage();
        assert!(n > 100, "{n} forecasts checked");
        let frac = f64::from(cov) / f64::from(n);
        // honest one-day bands: not wider than the errors need, and covering. Measured
        // (coverage, mean sharpness) on seeds 7, 3, 11, 19, 23, 31, 43, 59: 141/157 = 0.90,
        // 0.88, 0.87, 0.90, 0.86, 0.86, 0.85, 0.86, sharpness 0.84–0.98. With centred
        // residuals (`centre_residuals: true`) 132/157 = 0.84, 0.85, 0.80, 0.88, 0.88, 0.82,
        // 0.79, 0.84, sharpness 0.79–0.93: the centred model carried the low-glucose days'
        // offset past the day-10 glucose setpoint change (forecast [1.85, 3.74] g/L for a
        // reading of 1.35).
        assert!((0.85..=1.0).contains(&frac), "90 % band coverage {frac}");
        let sharp = summary.score.mean_sharpness();
        assert!(sharp <= 1.5, "mean sharpness {sharp}");
        // the cell line's largest mismatches are titer (β_P +15 %) and glucose (q_glc,max
        // −10 %): the GP must reduce both errors. Measured on this seed: titer 56.9 against
        // 70.5 mg/L, glucose 0.166 against 0.333 g/L (glucose: better on 7 of the 8 seeds
        // above; titer: on 7 of 8, seed 11 worse, 99.6 against 67.1). VCD is not asserted
        // (0.85 against 0.67 × 10⁶/mL on this seed).
        for (species, factor) in [(Species::Titer, 0.9), (Species::Glc, 0.8)] {
            let (hybrid, mech) = summary.score.rmse(species);
            assert!(
                hybrid < factor * mech,
                "{species:?}: hybrid {hybrid} vs mechanistic {mech}"
            );
        }
        // Every forecast names the model that made it, as recorded by the last retrain, and
        // starts from its record's day.
        let (_, records) = perfusio_audit::read_verified(dir.path().join("audit.jsonl")).unwrap();
        let mut model = None;
        let mut forecasts = 0;
        for r in &records {
            match r.kind.as_str() {
                "model_retrained" => {
                    let m: ModelRetrained = r.payload_as().unwrap();
                    assert_eq!(m.transitions, u64::from(r.culture_day().unwrap()));
                    model = Some(m.model_sha256);
                }
                "forecast" => {
                    let f: Forecast = r.payload_as().unwrap();
                    assert_eq!(Some(&f.model_sha256), model.as_ref());
                    assert_eq!(f.from_day, r.culture_day().unwrap());
                    forecasts += 1;
                }
                _ => {}
            }
        }
        assert_eq!(
            forecasts, 19,
            "one forecast a day from the first fit on day 3 to day 21"
        );
    }
}
