//! `perfusio train`: train the hybrid model offline on a directory of runs and save it as
//! one model file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use perfusio_core::Control;
use perfusio_hybrid::{CalibrationConfig, HybridConfig, HybridModel};
use perfusio_mechanistic::PlantSpec;

use crate::runs::read_run_dir;

/// Arguments of `perfusio train`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of runs in the layout `perfusio simulate --design … --out DIR` writes (one
    /// CSV per run plus `design.csv`; control columns in a run's CSV take precedence).
    /// Repeat it, each with its own --line, to train one model on several cell lines: the
    /// line then enters the GP as a learned embedding, and run ids become `LINE/ID`.
    #[arg(long, required = true)]
    runs: Vec<PathBuf>,
    /// The mechanism inside the hybrid model: CloneX, CloneY or a plant file (TOML).
    #[arg(long, default_value = "CloneX")]
    prior: String,
    /// Cell-line label of the runs of the --runs directory at the same position (give none,
    /// or one per --runs).
    #[arg(long)]
    line: Vec<String>,
    /// Extend this saved model instead of starting a new one: the new runs are added to its
    /// data (new lines get their own embedding position) and the GP is refitted warm-started
    /// from the model's hyperparameters; the prior and calibration flags are the model's.
    #[arg(long, value_name = "MODEL.json", conflicts_with_all = ["calibrate", "no_calibrate"])]
    extend: Option<PathBuf>,
    /// Where to write the trained model (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Calibrate these kinetic parameters of the mechanism before the GP is fitted
    /// (comma-separated field names of a plant file). The bare flag, like no flag at all,
    /// calibrates the default subset: mu_max, q_glc_max, q_gln_max, k_d, beta_p, and tests
    /// the pathway switch consumes_lactate against the data (kept flipped when the data
    /// favour it by more than ln n in profile deviance). A pathway switch named in the
    /// list is tested; with a list that names none, none is.
    #[arg(long, value_name = "NAMES", num_args = 0..=1, default_missing_value = "")]
    calibrate: Option<String>,
    /// Keep the prior's kinetic parameters as they are (no calibration).
    #[arg(long, conflicts_with = "calibrate")]
    no_calibrate: bool,
    /// Weigh each species in the calibration by the misfit the mechanism leaves in it, not
    /// by its noise model alone: for a prior that lacks or adds a pathway of the cell line,
    /// whose one misfit species would otherwise bend the other parameters.
    #[arg(long, conflicts_with_all = ["no_calibrate", "extend"])]
    species_weights: bool,
    /// Correct the calibration for the noise of the measured inputs by
    /// simulation–extrapolation with this many refits per extra-noise level (0: off; 4
    /// removes most of the bias noisy VCD readings leave in mu_max and k_d, at about 2.5× the
    /// calibration's time).
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["no_calibrate", "extend"])]
    simex: usize,
    /// With runs of two or more --line labels: also calibrate a mechanism for each line on
    /// that line's runs alone (from the prior, with the pathway test); the line's runs and
    /// forecasts use it, an unseen line the shared mechanism calibrated on all runs.
    #[arg(long, conflicts_with_all = ["no_calibrate", "extend"])]
    per_line: bool,
    /// Write the fit report, with the calibration report (estimates, standard errors,
    /// correlations, identifiability flags), as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The calibration of `--calibrate [NAMES]`: `None` when the flag is absent, the default
/// subset for the bare flag, the named parameters otherwise (unknown names are an error
/// that lists the valid ones).
pub(crate) fn calibration_arg(arg: Option<&str>) -> anyhow::Result<Option<CalibrationConfig>> {
    let Some(list) = arg else {
        return Ok(None);
    };
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    CalibrationConfig::named_or_default(&names)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--calibrate {list}: {e}"))
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let prior = PlantSpec::from_arg(&args.prior).map_err(|e| anyhow::anyhow!("--prior {e}"))?;
    let calibrate = if args.no_calibrate {
        None
    } else {
        Some(CalibrationConfig {
            species_weights: args.species_weights,
            simex_replicates: args.simex,
            per_line: args.per_line,
            ..calibration_arg(args.calibrate.as_deref())?.unwrap_or_default()
        })
    };
    if let Some(c) = &calibrate {
        c.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if args.line.iter().any(|l| l.trim().is_empty()) {
        bail!("--line: the cell-line label must not be empty");
    }
    if !args.line.is_empty() && args.line.len() != args.runs.len() {
        bail!(
            "--line: give one --line per --runs ({} --runs, {} --line)",
            args.runs.len(),
            args.line.len()
        );
    }
    let t0 = Instant::now();
    let mut groups = Vec::with_capacity(args.runs.len());
    for (i, dir) in args.runs.iter().enumerate() {
        let runs = read_run_dir(dir).map_err(|e| anyhow::anyhow!("--runs {e:#}"))?;
        let rejected: usize = runs.iter().map(|r| r.rejected).sum();
        eprintln!(
            "read {} runs ({} days, {rejected} values rejected at validation) from {} in {:.1} s",
            runs.len(),
            runs.iter().map(|r| r.days.len()).sum::<usize>(),
            dir.display(),
            t0.elapsed().as_secs_f64()
        );
        groups.push((args.line.get(i).cloned(), runs));
    }
    let max_day = groups
        .iter()
        .flat_map(|(_, runs)| runs.iter().filter_map(|r| r.days.last().map(|d| d.0)))
        .max()
        .unwrap_or(0);
    let mut model = match &args.extend {
        Some(path) => {
            HybridModel::load(path).with_context(|| format!("--extend {}", path.display()))?
        }
        None => HybridModel::new(HybridConfig {
            max_day: max_day.max(1),
            calibrate,
            ..HybridConfig::for_design(prior.params, prior.source.clone())
        })?,
    };
    let several = groups.len() > 1 || args.extend.is_some();
    let mut missing_controls = 0usize;
    for (line, runs) in &groups {
        for r in runs {
            // one directory's run ids are unique; across directories they may repeat
            let id = match (several, line) {
                (true, Some(l)) => format!("{l}/{}", r.id),
                _ => r.id.clone(),
            };
            for (day, measured, applied) in &r.days {
                model.record_day(&id, line.as_deref(), *day, *measured)?;
                match applied {
                    Some(u) => {
                        model.record_applied(&id, *day, *u)?;
                    }
                    None => missing_controls += 1,
                }
            }
        }
    }
    if missing_controls > 0 {
        eprintln!(
            "warning: {missing_controls} days have no applied controls (no control columns and \
             no design.csv row); their transitions are not used"
        );
    }
    eprintln!(
        "{}estimating every day's state with the mechanism-only filter and fitting the \
         multi-task GP …",
        if model.config().calibrate.is_some() {
            "calibrating the mechanism, "
        } else {
            ""
        }
    );
    let rep = if args.extend.is_some() {
        model
            .retrain(true)
            .context("extending the hybrid model (warm-started)")?
    } else {
        model.fit_offline().context("training the hybrid model")?
    };
    if !model.lines().is_empty() {
        eprintln!(
            "cell lines (learned embedding): {}",
            model.lines().join(", ")
        );
    }
    let unvaried: Vec<&str> = Control::ALL
        .iter()
        .filter(|c| model.ignored_controls()[c.index()])
        .map(|c| c.name())
        .collect();
    if !unvaried.is_empty() {
        eprintln!(
            "constant in every run, left out of the GP's inputs (they act through the \
             mechanism): {}",
            unvaried.join(", ")
        );
    }
    if let Some(c) = &rep.calibration {
        eprint!("{}", c.table());
    }
    for (line, c) in &rep.line_calibrations {
        eprint!(
            "mechanism of line {line}, calibrated on its runs alone:\n{}",
            c.table()
        );
    }
    if let Some(m) = &rep.mechanism_sd {
        let sds: Vec<String> = perfusio_core::Species::ALL
            .iter()
            .map(|s| format!("{} {:.3}", s.name(), m.sd[s.index()]))
            .collect();
        eprintln!(
            "the mechanism's one-day sd in log units, matched to the runs' innovations ({} filter passes{}): {}",
            m.rounds,
            if m.converged { "" } else { ", NOT converged" },
            sds.join(", ")
        );
    }
    if let Some(w) = &rep.mechanism_weights {
        let ws: Vec<String> = perfusio_core::Species::ALL
            .iter()
            .map(|s| format!("{} {:.3}", s.name(), w[s.index()]))
            .collect();
        eprintln!(
            "the fraction of the mechanism's one-day change in the GP's prior mean (1: all of it, 0: tomorrow equals today): {}",
            ws.join(", ")
        );
    }
    if let Some(why) = &rep.calibration_skipped {
        eprintln!("warning: {why}");
    }
    eprintln!(
        "trained on {} rows: NLML {:.2}, {} iterations, {} ({}), {:.1} s",
        rep.rows,
        rep.nlml,
        rep.iterations,
        if rep.converged {
            "converged"
        } else {
            "NOT converged"
        },
        rep.termination,
        rep.wall_time.as_secs_f64()
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "model": args.out.display().to_string(),
            "fingerprint": model.fingerprint(),
            "fit": rep,
        });
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    model
        .save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "model written to {} ({})",
        args.out.display(),
        model.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}
