//! `perfusio recommend`: one decision of the design policy for a run's history, for
//! supervised use without the daily loop.
//!
//! The history is filtered day by day with the model (each day's accepted measurements,
//! the controls applied on the previous day); the decision is made for the last day, from
//! the setpoints in force then. Controls missing from the file keep their last value (the
//! design's defaults before the first one).
//!
//! With `--json` the decision is one JSON object: `day`; `setpoints` and `current` (control
//! name → value); `hold`; `acquisition` (canonical name) and `acquisition_value`;
//! `objective` (its name); `recommended` and `holding` (`{mean, sd}` of the objective);
//! `probability_feasible`; `reason`; `elapsed_ms`; `forecast` (per forecast day: `day`,
//! and `mean`, `sd`, `q05`, `q95` as species name → value); `restarts` (per local
//! refinement: `start_value`, `value`, `iterations`, `evaluations`, `converged`, `stop`);
//! `rejected` (values of the history that validation rejected, `"day D: reason"`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use perfusio_bed::objective::parse_objective;
use perfusio_bed::{BedPolicy, Decision, PolicyConfig};
use perfusio_connectors::files::{CultureTable, ParseOptions};
use perfusio_core::{Acquisition, Control, ControlArray, Species};
use perfusio_hybrid::{HybridModel, StateEstimate};
use serde_json::{Value, json};

/// Arguments of `perfusio recommend`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The hybrid model (JSON, as saved by the library).
    #[arg(long)]
    model: PathBuf,
    /// The run's history: a culture CSV (one row per day; species, and the controls applied
    /// when present).
    #[arg(long)]
    history: PathBuf,
    // `[:WEIGHT]` is the help text's notation for an optional part, not a link
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Objective to maximise: harvest, final-titer or track:VAR=TARGET[:WEIGHT],… (e.g.
    /// track:VCV=10).
    #[arg(long, default_value = "harvest")]
    objective: String,
    /// Cost of medium for `harvest`, mg-equivalents per reactor volume of medium.
    #[arg(long, default_value = "0")]
    medium_cost: String,
    /// Acquisition function (PI, EI, LogEI, UCB, qEI, qLogEI, qUCB).
    #[arg(long, default_value = "LogEI")]
    acquisition: String,
    /// Days the objective looks ahead (1–28), the recommended setpoints held over them.
    #[arg(long, default_value_t = 3)]
    horizon: u32,
    /// The run's last culture day: the objective stops there (near the end the decision looks
    /// only as far as the run goes; a final titer is the titer on that day). Default: no end.
    #[arg(long)]
    end_day: Option<u32>,
    /// Print the decision as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let medium_cost: f64 =
        args.medium_cost.trim().parse().map_err(|_| {
            anyhow::anyhow!("--medium-cost {}: not a valid number", args.medium_cost)
        })?;
    let acquisition: Acquisition = args
        .acquisition
        .parse()
        .map_err(|e| anyhow::anyhow!("--acquisition {}: {e}", args.acquisition))?;
    if acquisition.is_multi_objective() {
        bail!(
            "--acquisition {acquisition}: recommend optimises one objective; use PI, EI, LogEI, \
             UCB, qEI, qLogEI or qUCB"
        );
    }
    let objective = parse_objective(&args.objective, medium_cost)
        .map_err(|e| anyhow::anyhow!("--objective {}: {e}", args.objective))?;
    let model = HybridModel::load(&args.model)
        .with_context(|| format!("--model {}", args.model.display()))?;
    let design = model.config().design_space.clone();
    let table = CultureTable::read_csv(&args.history, &ParseOptions::default())
        .with_context(|| format!("--history {}", args.history.display()))?;
    let (state, current, rejected) = filter_history(&model, &table)?;
    let cfg = PolicyConfig {
        acquisition,
        horizon_days: args.horizon,
        end_day: args.end_day,
        ..PolicyConfig::new(&design)
    };
    if let Err(e) = cfg.check() {
        bail!("--horizon {}: {e}", args.horizon);
    }
    if let Some(end) = args.end_day
        && end <= state.day
    {
        bail!(
            "--end-day {end}: the history's last day is {}; the run must end after it",
            state.day
        );
    }
    let policy = BedPolicy::new(design, vec![objective], cfg)?;
    let decision = policy.decide(&model, &state, &current)?;
    let text = if args.json {
        serde_json::to_string_pretty(&to_json(&decision, &rejected))? + "\n"
    } else {
        render_text(&decision, &rejected)
    };
    // a reader that stops early (`| head`) is not an error
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The filtered estimate of the history's last day, the controls in force then, and the
/// rejected values (as `"day D: reason"` lines).
fn filter_history(
    model: &HybridModel,
    table: &CultureTable,
) -> anyhow::Result<(StateEstimate, ControlArray<f64>, Vec<String>)> {
    let design = &model.config().design_space;
    let mut controls = design.clamp(&Control::defaults());
    let mut est: Option<StateEstimate> = None;
    let mut rejected = Vec::new();
    for day in table.days().collect::<Vec<_>>() {
        let Some(v) = table.validated(day, design) else {
            continue;
        };
        for r in &v.rejections {
            rejected.push(format!("day {day}: {r}"));
        }
        // predict through the days since the last estimate under the controls in force
        let mut prior = None;
        if let Some(mut e) = est.take() {
            while e.day < day {
                e = model.filter_predict(&e, &controls)?;
            }
            prior = Some(e);
        }
        est = Some(model.filter_update(prior, day, &v.sample.species)?);
        for c in Control::ALL {
            if let Some(u) = v.sample.control(c) {
                controls[c.index()] = u;
            }
        }
    }
    let Some(state) = est else {
        bail!("the history has no day with a measurement");
    };
    Ok((state, controls, rejected))
}

fn controls_json(u: &ControlArray<f64>) -> Value {
    Value::Object(
        Control::ALL
            .iter()
            .map(|c| (c.name().to_string(), json!(u[c.index()])))
            .collect(),
    )
}

fn species_json(v: &[f64; 9]) -> Value {
    Value::Object(
        Species::ALL
            .iter()
            .map(|s| (s.name().to_string(), json!(v[s.index()])))
            .collect(),
    )
}

/// The decision as JSON (the shape is in the module docs).
fn to_json(d: &Decision, rejected: &[String]) -> Value {
    let summary = |s: &perfusio_bed::ObjectiveSummary| json!({"mean": s.mean, "sd": s.sd});
    json!({
        "day": d.day,
        "setpoints": controls_json(&d.setpoints.values),
        "current": controls_json(&d.current),
        "hold": d.hold,
        "acquisition": d.acquisition.name(),
        "acquisition_value": d.acquisition_value,
        "objective": d.objectives.first(),
        "recommended": d.recommended.first().map(summary),
        "holding": d.holding.first().map(summary),
        "probability_feasible": d.probability_feasible,
        "reason": d.reason,
        "elapsed_ms": d.elapsed.as_secs_f64() * 1e3,
        "forecast": d.forecast.state.iter().map(|b| json!({
            "day": b.day,
            "mean": species_json(&b.mean),
            "sd": species_json(&b.sd),
            "q05": species_json(&b.quantiles[0]),
            "q95": species_json(&b.quantiles[4]),
        })).collect::<Vec<_>>(),
        "restarts": d.restarts.iter().map(|r| json!({
            "start_value": r.start_value,
            "value": r.value,
            "iterations": r.iterations,
            "evaluations": r.evaluations,
            "converged": r.converged,
            "stop": r.stop,
        })).collect::<Vec<_>>(),
        "rejected": rejected,
    })
}

fn render_text(d: &Decision, rejected: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "day {}: {}", d.day, d.reason);
    let _ = writeln!(
        out,
        "{:<18} {:>12} {:>12}",
        "control", "current", "recommended"
    );
    for c in Control::ALL {
        let _ = writeln!(
            out,
            "{:<18} {:>12.4} {:>12.4}  {}",
            c.name(),
            d.current[c.index()],
            d.setpoints.values[c.index()],
            c.unit()
        );
    }
    if let (Some(r), Some(h)) = (d.recommended.first(), d.holding.first()) {
        let _ = writeln!(
            out,
            "{}: {:.2} ± {:.2} recommended, {:.2} ± {:.2} holding course",
            d.objectives.first().map_or("objective", String::as_str),
            r.mean,
            r.sd,
            h.mean,
            h.sd
        );
    }
    let _ = writeln!(
        out,
        "{} {:.4}; P(feasible) {:.2}; {:.0} ms",
        d.acquisition,
        d.acquisition_value,
        d.probability_feasible,
        d.elapsed.as_secs_f64() * 1e3
    );
    for r in rejected {
        let _ = writeln!(out, "rejected: {r}");
    }
    out
}
