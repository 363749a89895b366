//! `perfusio forecast`: filter a run's history with a trained model and forecast the coming
//! days at given controls; writes the forecast as CSV and one SVG fan chart per species.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use perfusio_core::{DEFAULT_AMBR250_DESIGN_SPACE, MAX_DURATION_DAYS, Setpoints, Species};
use perfusio_hybrid::{ForecastMethod, ForecastOptions, HybridModel};

use crate::runs::read_run;
use perfusio_twin::plot::{FanChart, fan_chart_svg};

/// Arguments of `perfusio forecast`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Trained model file (from `perfusio train`).
    #[arg(long)]
    model: PathBuf,
    /// The run so far: a culture CSV (days 0…t). Its control columns, where present, are the
    /// controls that were applied; otherwise the forecast's controls are assumed to have
    /// been in force.
    #[arg(long)]
    history: PathBuf,
    /// Days to forecast from the last day of the history.
    #[arg(long, default_value = "28")]
    days: String,
    /// Controls held over the forecast, e.g. `--controls perfusion_rate=1.5` (repeatable);
    /// the others keep the history's last applied value (or the default).
    #[arg(long = "controls", value_name = "NAME=VALUE")]
    controls: Vec<String>,
    /// Forecast method: mc (Monte Carlo) or mm (moment matching).
    #[arg(long, default_value = "mc")]
    method: String,
    /// Monte-Carlo paths.
    #[arg(long, default_value = "256")]
    paths: String,
    /// Seed of the Monte-Carlo draws.
    #[arg(long, default_value = "0")]
    seed: String,
    /// Cell line of the run, for a model trained on several lines (`perfusio train --runs A
    /// --line X --runs B --line Y`). A line the model was not trained on is forecast as an
    /// unseen line: only what the lines share, with the extra uncertainty of the rest.
    #[arg(long)]
    line: Option<String>,
    /// Output directory: `forecast.csv` and `<species>.svg`.
    #[arg(long)]
    out: PathBuf,
}

fn number<T: std::str::FromStr>(option: &str, value: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{option} {value}: not a valid number"))
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let days: u32 = number("--days", &args.days)?;
    if !(1..=MAX_DURATION_DAYS).contains(&days) {
        bail!("--days {days}: must be between 1 and {MAX_DURATION_DAYS}");
    }
    let paths: usize = number("--paths", &args.paths)?;
    if !(2..=100_000).contains(&paths) {
        bail!("--paths {paths}: must be between 2 and 100000");
    }
    let seed: u64 = number("--seed", &args.seed)?;
    let method: ForecastMethod = args
        .method
        .parse()
        .map_err(|_| anyhow::anyhow!("--method {}: use mc or mm", args.method))?;
    let mut model = HybridModel::load(&args.model)
        .map_err(|e| anyhow::anyhow!("--model {}: {e}", args.model.display()))?;
    if let Some(line) = &args.line {
        match model.select_line(Some(line)) {
            perfusio_hybrid::LineChoice::Unseen => eprintln!(
                "warning: --line {line}: the model was trained on {}; forecasting it as an unseen line (shared knowledge only, wider bands)",
                model.lines().join(", ")
            ),
            perfusio_hybrid::LineChoice::NoEmbedding => eprintln!(
                "note: --line {line}: the model was trained on one line; the label has no effect"
            ),
            perfusio_hybrid::LineChoice::Known(_) => {}
        }
    }

    // the controls of the forecast: history's last applied value, then the overrides
    let defaults = Setpoints::defaults(0).values;
    let history_probe =
        read_run(&args.history, None).map_err(|e| anyhow::anyhow!("--history {e:#}"))?;
    let last_applied = history_probe.days.iter().rev().find_map(|d| d.2);
    let mut sp = Setpoints {
        day: 0,
        values: last_applied.unwrap_or(defaults),
    };
    for a in &args.controls {
        sp = sp
            .with_assignment(a)
            .with_context(|| format!("--controls {a}"))?;
    }
    for v in DEFAULT_AMBR250_DESIGN_SPACE.validate(&sp.values)? {
        eprintln!("warning: {v}");
    }
    let u = sp.values;
    let history =
        read_run(&args.history, Some(&u)).map_err(|e| anyhow::anyhow!("--history {e:#}"))?;
    if history.rejected > 0 {
        eprintln!(
            "warning: {} values of {} were rejected at validation and not used",
            history.rejected,
            args.history.display()
        );
    }
    if last_applied.is_none() {
        eprintln!(
            "note: {} has no control columns; the forecast's controls are assumed to have been \
             applied over the history",
            args.history.display()
        );
    }

    // filter the history day by day (gaps widen the estimate)
    let mut est = None;
    let mut prev: Option<(u32, perfusio_core::ControlArray<f64>)> = None;
    for (day, measured, applied) in &history.days {
        let prior = match (est.take(), prev) {
            (Some(e), Some((d, c))) if d + 1 == *day => Some(model.filter_predict(&e, &c)?),
            (Some(e), _) => Some(perfusio_hybrid::StateEstimate::widened(e, *day)),
            (None, _) => None,
        };
        est = Some(model.filter_update(prior, *day, measured)?);
        prev = applied.map(|c| (*day, c));
    }
    let est = est.context("--history: no culture days")?;
    let schedule = vec![u; days as usize];
    let opts = ForecastOptions {
        method,
        paths,
        seed,
        keep_paths: false,
        ..ForecastOptions::default()
    };
    let f = model.forecast(&est, &schedule, &opts)?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut csv = String::from("day,species,mean,q05,q10,q50,q90,q95\n");
    for band in &f.measured {
        for s in Species::ALL {
            let k = s.index();
            let _ = write!(csv, "{},{},{}", band.day, s.name(), band.mean[k]);
            for q in &band.quantiles {
                let _ = write!(csv, ",{}", q[k]);
            }
            csv.push('\n');
        }
    }
    let csv_path = args.out.join("forecast.csv");
    std::fs::write(&csv_path, csv)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    for s in Species::ALL {
        let k = s.index();
        let chart = FanChart {
            title: format!(
                "{} — {}-day forecast from day {}",
                s.name(),
                days,
                f.start_day
            ),
            unit: s.unit().to_string(),
            days: f.measured.iter().map(|b| f64::from(b.day)).collect(),
            q: std::array::from_fn(|j| f.measured.iter().map(|b| b.quantiles[j][k]).collect()),
            // the bands above are already the measured value's
            measured: Vec::new(),
            observed: history
                .days
                .iter()
                .filter_map(|(d, m, _)| m[k].map(|v| (f64::from(*d), v)))
                .collect(),
        };
        let path = args.out.join(format!("{}.svg", s.name()));
        std::fs::write(&path, fan_chart_svg(&chart)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "{} method forecast of {days} days from day {} written to {} (forecast.csv, 9 SVG charts)",
        method.name(),
        f.start_day,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
