//! The daily loop, end to end, on the built-in virtual ambr250 reactor (no hardware):
//!
//! 1. read the day's raw reading through the `Connector` trait and validate it in the one
//!    shared step (`read_validated`), auditing every rejected value,
//! 2. learn: every `--retrain-every` days fit a multi-task GP on one-day transitions, with
//!    the mechanistic model's one-day prediction as its prior mean (the hybrid model: the
//!    GP learns only what the mechanism gets wrong),
//! 3. forecast tomorrow with 90 % prediction bands and, the next day, check the bands
//!    against what the reactor reports,
//! 4. apply an operator's setpoint change on day 10 (it acts from day 10 on),
//! 5. record every step in a hash-chained audit log and verify it at the end.
//!
//! The virtual cell line grows faster, takes up less glucose and makes more antibody than
//! the textbook parameters say, so the mechanistic model alone is biased; the summary
//! compares its one-day errors with the hybrid model's.
//!
//! ```sh
//! cargo run -p perfusio-examples --example daily_loop -- [--days 21] [--seed 7] [--out DIR]
//! ```

use std::path::PathBuf;
use std::time::Instant;

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
use perfusio_examples::{MechanisticMean, N_COLS, TrainingSet, base_row};
use perfusio_gp::{GpParams, MultiTaskGp};
use perfusio_mechanistic::{
    CloneKind, KineticParams, PlantModel, VirtualReactor, VirtualReactorConfig,
};

/// Two-sided 90 % standard-normal quantile.
const Z90: f64 = 1.644_853_626_951_472_2;

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

/// One-day forecast made on day t for day t + 1.
struct DayForecast {
    mean: SpeciesArray<f64>,
    sd: SpeciesArray<f64>,
    mechanistic: SpeciesArray<f64>,
}

#[derive(Default)]
struct Score {
    covered: [u32; N_SPECIES],
    checked: [u32; N_SPECIES],
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
        "{:<6} {:>9} {:>14} {:>14}",
        "species", "90% band", "RMSE hybrid", "RMSE mech."
    );
    for s in Species::ALL {
        let i = s.index();
        if score.checked[i] == 0 {
            continue;
        }
        let (hybrid, mech) = score.rmse(s);
        println!(
            "{:<6} {:>5}/{:<3} {:>14.4} {:>14.4}",
            s.name(),
            score.covered[i],
            score.checked[i],
            hybrid,
            mech
        );
    }
    let (cov, n) = score.coverage();
    if n > 0 {
        println!(
            "coverage of the 90 % bands: {cov}/{n} = {:.0} %",
            100.0 * f64::from(cov) / f64::from(n)
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
    let skeleton = PlantModel::new(KineticParams::for_clone(CloneKind::CloneX));

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
    let mut training = TrainingSet::default();
    let mut gp: Option<MultiTaskGp> = None;
    let mut model_sha256 = String::new();
    let mut transitions = 0u64;
    let mut prev_input: Option<[f64; perfusio_examples::N_BASE]> = None;
    let mut forecast: Option<DayForecast> = None;
    let mut score = Score::default();
    let mut fit_ms = Vec::new();
    let mean = std::sync::Arc::new(MechanisticMean::new(skeleton.clone()));

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
                    if (v - f.mean[s]).abs() <= Z90 * f.sd[s] {
                        score.covered[s] += 1;
                    }
                    score.sq_err_hybrid[s] += (v - f.mean[s]).powi(2);
                    score.sq_err_mech[s] += (v - f.mechanistic[s]).powi(2);
                }
            }
        }

        // today's state estimate: measurements, gaps filled by yesterday's forecast
        let mut estimate = [0.0; N_SPECIES];
        for s in 0..N_SPECIES {
            estimate[s] = match (measured[s], &forecast, prev_input) {
                (Some(v), _, _) => v,
                (None, Some(f), _) => f.mean[s],
                (None, None, Some(p)) => mean.predict(&p)?[s],
                (None, None, None) => perfusio_mechanistic::initial_state()[s],
            };
        }

        // 2. learn from the transition that ended today
        if let Some(input) = prev_input {
            training.push_transition(&input, &measured);
            transitions += 1;
        }
        if day >= 3 && day % args.retrain_every == 0 {
            // the unit-cube map comes from the first fit's data and is kept by the warm
            // refits (`fit_warm`), so the length-scales keep their meaning as days arrive
            let params = GpParams::new(perfusio_examples::N_BASE, N_SPECIES)
                .prior_mean(mean.clone())
                .seed(args.seed)
                .check()?;
            let t0 = Instant::now();
            let fitted = match &gp {
                Some(previous) => params.fit_warm(&training.x, N_COLS, &training.y, previous)?,
                None => params.fit(&training.x, N_COLS, &training.y)?,
            };
            let dt = t0.elapsed();
            fit_ms.push(dt.as_secs_f64() * 1e3);
            let rep = fitted.report();
            // The model's identity: what determines its predictions (hyperparameters, data,
            // input map, prior mean), not its wall time.
            model_sha256 = fitted.fingerprint();
            audit.append(Entry::new(
                day,
                ModelRetrained {
                    model_sha256: model_sha256.clone(),
                    rows: training.len() as u64,
                    transitions,
                    nlml: rep.nlml,
                    iterations: rep.iterations,
                    evaluations: rep.evaluations,
                    converged: rep.converged,
                    termination: rep.termination.name().into(),
                    warm_start: gp.is_some(),
                    duration_s: dt.as_secs_f64(),
                    calibrated: Default::default(),
                },
            ))?;
            note += &format!(
                "{}GP retrained on {} rows in {:.1} ms",
                if note.is_empty() { "" } else { "; " },
                training.len(),
                dt.as_secs_f64() * 1e3
            );
            gp = Some(fitted);
        }

        // 3. forecast tomorrow
        let input = base_row(&estimate, &controls.values, day);
        let mechanistic = mean.predict(&input)?;
        forecast = match &gp {
            Some(model) => {
                let p = model.predict_observed(&TrainingSet::query(&input))?;
                let mut f = DayForecast {
                    mean: [0.0; N_SPECIES],
                    sd: [0.0; N_SPECIES],
                    mechanistic,
                };
                for s in 0..N_SPECIES {
                    f.mean[s] = p.mean[s];
                    f.sd[s] = p.variance[s].max(0.0).sqrt();
                }
                let bands = Species::ALL
                    .iter()
                    .map(|s| {
                        let i = s.index();
                        let b = SpeciesBands::from_normal(&[f.mean[i]], &[f.sd[i]], 0.0);
                        (s.name().to_string(), b)
                    })
                    .collect();
                audit.append(Entry::new(
                    day,
                    Forecast {
                        from_day: day,
                        horizon_days: 1,
                        method: ForecastMethod::MomentMatching,
                        paths: 0,
                        model_sha256: model_sha256.clone(),
                        forecast_sha256: canonical_sha256(&(&f.mean, &f.sd))?,
                        days_ahead: vec![1],
                        bands,
                    },
                ))?;
                Some(f)
            }
            None => None,
        };
        prev_input = Some(input);

        let show = |s: Species| -> (String, String) {
            let v = measured[s.index()].map_or("—".into(), |v| format!("{v:.2}"));
            let b = forecast.as_ref().map_or(String::new(), |f| {
                let i = s.index();
                format!(
                    "[{:.2}, {:.2}]",
                    (f.mean[i] - Z90 * f.sd[i]).max(0.0),
                    f.mean[i] + Z90 * f.sd[i]
                )
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
        println!("\nGP fits: {} (slowest {worst:.1} ms)", fit_ms.len());
    }
    println!("audit head hash: {}", head.hash);
    Ok(Summary {
        score,
        audit_records: report.records,
        finished: report.finished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main job of README.md runs, its forecasts are calibrated and better than the
    /// mechanistic model alone where the virtual cell line differs from it, and its audit
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
        assert!((0.8..=1.0).contains(&frac), "90 % band coverage {frac}");
        // titer and glucose carry the cell line's mismatch: the GP must reduce the error
        for s in [Species::Titer, Species::Glc] {
            let (hybrid, mech) = summary.score.rmse(s);
            assert!(
                hybrid < 0.9 * mech,
                "{s}: hybrid {hybrid} vs mechanistic {mech}"
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
