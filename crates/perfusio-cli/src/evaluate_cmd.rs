//! `perfusio evaluate`: the model-accuracy pipeline (train on a design, forecast held-out
//! runs, score each horizon) and the four-model ablation table.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use perfusio_core::Species;
use perfusio_hybrid::ForecastMethod;
use perfusio_hybrid::evaluate::{
    CALIBRATED_MODEL_NAMES, EvalConfig, EvalReport, MODEL_NAMES, TRANSFER_CALIBRATED_MODEL_NAMES,
    TRANSFER_MODEL_NAMES, TrainDesign, TransferConfig, evaluate,
};
use perfusio_mechanistic::PlantSpec;

/// Arguments of `perfusio evaluate`. Values are parsed here so that every invalid value
/// gives one `error:` line.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The plant that generates training and test data: CloneX, CloneY or a plant file
    /// (TOML: `clone = "CloneY"` plus kinetic-parameter overrides).
    #[arg(long, default_value = "CloneX")]
    truth: String,
    /// The mechanism inside the hybrid model (same forms as --truth).
    #[arg(long, default_value = "CloneX")]
    prior: String,
    /// Training design: box-behnken (the 27-run design) or lhs:N.
    #[arg(long, default_value = "box-behnken")]
    train: String,
    /// Held-out runs (random piecewise-constant controls that change every 7 days).
    #[arg(long, default_value = "10")]
    test: String,
    /// Culture length, days.
    #[arg(long, default_value = "28")]
    days: String,
    /// Forecast horizons scored, days (comma-separated).
    #[arg(long, default_value = "1,3,7")]
    horizons: String,
    /// Master seed.
    #[arg(long, default_value = "1")]
    seed: String,
    /// Measurement noise of the simulated runs: on or off.
    #[arg(long, default_value = "on")]
    noise: String,
    /// Forecast method: mc (Monte Carlo, 256 paths) or mm (moment matching).
    #[arg(long, default_value = "mc")]
    forecast: String,
    /// Write the scores as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also calibrate the mechanism on the training runs and score `mechanistic-calibrated`
    /// and `hybrid-calibrated`: the bare flag calibrates mu_max, q_glc_max, q_gln_max, k_d
    /// and beta_p and tests the pathway switch consumes_lactate (see `perfusio train
    /// --help`); a comma-separated list of kinetic-parameter names (and switches) chooses
    /// others.
    #[arg(long, value_name = "NAMES", num_args = 0..=1, default_missing_value = "")]
    calibrate: Option<String>,
    /// With --calibrate: weigh each species by the misfit the mechanism leaves in it, not
    /// by its noise model alone (see `perfusio train --help`).
    #[arg(long, requires = "calibrate")]
    species_weights: bool,
    /// With --calibrate: correct the calibration for the noise of the measured inputs by
    /// simulation–extrapolation with this many refits per extra-noise level (see `perfusio
    /// train --help`).
    #[arg(long, value_name = "N", requires = "calibrate")]
    simex: Option<usize>,
    /// Also score learning across cell lines: train one model on the 27-run design of this
    /// plant (CloneX, CloneY or a plant file) plus the first --transfer-days days of
    /// --transfer-runs runs of the --truth plant, and score it (`transfer`) with the source
    /// plant's runs alone (`source-only`) and the target's few days alone (`target-only`) on
    /// the held-out --truth runs. With --calibrate as well, also the joint model with each
    /// line's mechanism calibrated on its own runs (`transfer-calibrated`), and the two
    /// single-line models with calibrated mechanisms (`source-only-calibrated`,
    /// `target-only-calibrated`).
    #[arg(long, value_name = "CLONE|FILE.toml")]
    transfer_from: Option<String>,
    /// Runs of the --truth plant's design whose first days the transfer models see.
    #[arg(long, default_value = "3", requires = "transfer_from")]
    transfer_runs: String,
    /// Days of those runs that the transfer models see (day 0 to this day).
    #[arg(long, default_value = "7", requires = "transfer_from")]
    transfer_days: String,
}

fn parse<T: std::str::FromStr>(option: &str, value: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{option} {value}: not a valid number"))
}

pub(crate) fn config(args: &Args) -> anyhow::Result<EvalConfig> {
    let truth = PlantSpec::from_arg(&args.truth).map_err(|e| anyhow::anyhow!("--truth {e}"))?;
    let prior = PlantSpec::from_arg(&args.prior).map_err(|e| anyhow::anyhow!("--prior {e}"))?;
    let train: TrainDesign = args.train.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let horizons = args
        .horizons
        .split(',')
        .map(|h| parse::<u32>("--horizons", h))
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let noise = match args.noise.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => true,
        "off" | "false" | "no" => false,
        other => bail!("--noise {other}: use on or off"),
    };
    let method: ForecastMethod = args
        .forecast
        .parse()
        .map_err(|_| anyhow::anyhow!("--forecast {}: use mc or mm", args.forecast))?;
    let cfg = EvalConfig {
        truth,
        prior,
        train,
        test_runs: parse("--test", &args.test)?,
        days: parse("--days", &args.days)?,
        horizons,
        seed: parse("--seed", &args.seed)?,
        noise,
        method,
        calibrate: crate::train_cmd::calibration_arg(args.calibrate.as_deref())?.map(|c| {
            perfusio_hybrid::CalibrationConfig {
                species_weights: args.species_weights,
                simex_replicates: args.simex.unwrap_or(0),
                ..c
            }
        }),
        transfer: match &args.transfer_from {
            Some(src) => Some(TransferConfig {
                source: PlantSpec::from_arg(src)
                    .map_err(|e| anyhow::anyhow!("--transfer-from {e}"))?,
                target_runs: parse("--transfer-runs", &args.transfer_runs)?,
                target_days: parse("--transfer-days", &args.transfer_days)?,
            }),
            None => None,
        },
        ..EvalConfig::default()
    };
    cfg.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cfg)
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cfg = config(args)?;
    let report = evaluate(&cfg, &mut |line| eprintln!("{line}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(table(&cfg, &report).as_bytes())?;
    out.flush()?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())? + "\n";
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".to_string()
    }
}

/// The ablation table: per horizon, each model's mean rRMSE, coverage, sharpness and CRPS;
/// then the hybrid's rRMSE per species.
fn table(cfg: &EvalConfig, r: &EvalReport) -> String {
    let mut s = format!(
        "truth {}, prior {}, training {:?}, {} held-out runs of {} days, noise {}, forecast {}\n\
         rRMSE against the noise-free truth; coverage, sharpness and CRPS against the noisy samples\n\
         hybrid fit: {} rows, {} iterations, converged {}, {:.2} s; forecasts {:.0} ms per held-out run\n",
        cfg.truth,
        cfg.prior,
        cfg.train,
        cfg.test_runs,
        cfg.days,
        if cfg.noise { "on" } else { "off" },
        cfg.method.name(),
        r.fit.rows,
        r.fit.iterations,
        r.fit.converged,
        r.train_seconds,
        r.forecast_ms_per_run,
    );
    for h in &r.horizons {
        s += &format!(
            "\nhorizon {h} d{:12}{:>8} {:>7} {:>7} {:>8} {:>7}\n",
            "", "rRMSE %", "cov90", "cov80", "sharp90", "CRPS %"
        );
        for name in MODEL_NAMES
            .iter()
            .chain(&CALIBRATED_MODEL_NAMES)
            .chain(&TRANSFER_MODEL_NAMES)
            .chain(&TRANSFER_CALIBRATED_MODEL_NAMES)
        {
            if let Some(sc) = r.models.get(*name).and_then(|m| m.get(h)) {
                s += &format!(
                    "{name:<22} {:>8} {:>7} {:>7} {:>8} {:>7}\n",
                    fmt(sc.rrmse_mean, 2),
                    fmt(sc.coverage90, 3),
                    fmt(sc.coverage80, 3),
                    fmt(sc.sharpness90, 2),
                    fmt(sc.crps, 2),
                );
            }
        }
    }
    s += "\nrRMSE % per species (hybrid | mechanistic)\n";
    s += &format!("{:<7}", "horizon");
    for sp in Species::ALL {
        s += &format!(" {:>13}", sp.name());
    }
    s.push('\n');
    for h in &r.horizons {
        s += &format!("{h:<7}");
        for sp in Species::ALL {
            let get = |m: &str| {
                r.models
                    .get(m)
                    .and_then(|x| x.get(h))
                    .and_then(|x| x.rrmse[sp.index()])
                    .map_or("-".to_string(), |v| format!("{v:.1}"))
            };
            s += &format!(
                " {:>13}",
                format!("{} | {}", get("hybrid"), get("mechanistic"))
            );
        }
        s.push('\n');
    }
    s += "\nhybrid per species: 90 % coverage / sharpness90 / CRPS %\n";
    for h in &r.horizons {
        if let Some(sc) = r.models.get("hybrid").and_then(|m| m.get(h)) {
            s += &format!("{h:<7}");
            for sp in Species::ALL {
                let k = sp.index();
                let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| fmt(x, d));
                s += &format!(
                    " {:>13}",
                    format!(
                        "{}/{}/{}",
                        f(sc.coverage90_by_species[k], 2),
                        f(sc.sharpness90_by_species[k], 1),
                        f(sc.crps_by_species[k], 1)
                    )
                );
            }
            s.push('\n');
        }
    }
    s
}
