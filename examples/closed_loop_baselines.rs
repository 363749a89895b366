//! The baselines of the twin's closed-loop table: on the noise-free true plant, the 28-day
//! objective of
//!
//! - the default controls held constant;
//! - the best **constant** controls: a Latin hypercube over the six controls (2 000 points by
//!   default, maximin-improved), then a bounded compass search (pattern search) from the five
//!   best points until its step is below 1e-4 of each range;
//! - **random search**: a random feasible setpoint each day (uniform over the design space,
//!   bleed ≤ perfusion by rejection), averaged over 10 seeds.
//!
//! The objective is the one of `perfusio run --summary-json` on `true_states`, applied to the
//! whole run from day 0 (for `harvest`:
//! `Σ_d ½(Titer_d + Titer_{d+1})·(perfusion_d − bleed_d) − medium_cost·Σ_d perfusion_d`), and
//! the plant is the virtual reactor's noise-free state, as in that summary.
//!
//! ```sh
//! cargo run --release -p perfusio-examples --example closed_loop_baselines -- \
//!     --truth CloneY --objective harvest --medium-cost 400 [--days 28] [--lhs 2000] [--seeds 10]
//! ```
//!
//! Prints one JSON object.

use anyhow::{Context, bail};
use perfusio_core::{Control, ControlArray, DEFAULT_AMBR250_DESIGN_SPACE, N_CONTROLS};
use perfusio_mechanistic::{PlantSpec, VirtualReactor, VirtualReactorConfig, doe};
use perfusio_twin::layers::bed::objective::{Objective, parse_objective};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// Smallest compass step, as a fraction of each control's range.
const MIN_STEP: f64 = 1e-4;
/// Cap of objective evaluations per compass search (reported when reached).
const MAX_EVALS: usize = 20_000;

struct Args {
    truth: String,
    objective: String,
    medium_cost: f64,
    days: u32,
    lhs: usize,
    seeds: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        truth: "CloneY".into(),
        objective: "harvest".into(),
        medium_cost: 0.0,
        days: 28,
        lhs: 2000,
        seeds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--truth" => a.truth = value()?,
            "--objective" => a.objective = value()?,
            "--medium-cost" => a.medium_cost = value()?.parse()?,
            "--days" => a.days = value()?.parse()?,
            "--lhs" => a.lhs = value()?.parse()?,
            "--seeds" => a.seeds = value()?.parse()?,
            other => bail!(
                "unknown flag {other}; use --truth --objective --medium-cost --days --lhs --seeds"
            ),
        }
    }
    if a.lhs == 0 || a.seeds == 0 || a.days == 0 {
        bail!("--lhs, --seeds and --days must be at least 1");
    }
    Ok(a)
}

/// The true plant under a daily schedule.
struct Plant {
    config: VirtualReactorConfig,
    objective: Box<dyn Objective>,
    days: u32,
}

impl Plant {
    fn value(&self, schedule: &[ControlArray<f64>]) -> anyhow::Result<f64> {
        let mut r = VirtualReactor::new(self.config.clone())?;
        for u in schedule.iter().take(self.days as usize) {
            r.set_setpoints(u)?;
            r.advance_day()?;
        }
        let states = r.clean_history();
        Ok(self
            .objective
            .value(states, &schedule[..self.days as usize]))
    }

    fn constant(&self, u: &ControlArray<f64>) -> anyhow::Result<f64> {
        self.value(&vec![*u; self.days as usize])
    }
}

/// Physical controls of a point of the unit cube, projected onto the feasible set.
fn controls(unit: &ControlArray<f64>) -> anyhow::Result<ControlArray<f64>> {
    let space = DEFAULT_AMBR250_DESIGN_SPACE;
    let clipped = unit.map(|v| v.clamp(0.0, 1.0));
    Ok(space.clamp(&space.from_unit(&clipped)?))
}

/// Bounded compass search in the unit cube from `start`: returns the best point, its value
/// and the number of evaluations.
fn compass(
    plant: &Plant,
    start: ControlArray<f64>,
    f0: f64,
) -> anyhow::Result<(ControlArray<f64>, f64, usize, bool)> {
    let (mut x, mut fx) = (start, f0);
    let mut step = 0.1;
    let mut evals = 0;
    while step >= MIN_STEP {
        if evals >= MAX_EVALS {
            return Ok((x, fx, evals, false));
        }
        let mut improved = false;
        for k in 0..N_CONTROLS {
            for dir in [1.0, -1.0] {
                let mut y = x;
                y[k] = (y[k] + dir * step).clamp(0.0, 1.0);
                if (y[k] - x[k]).abs() < 0.5 * MIN_STEP {
                    continue; // on the bound already
                }
                let fy = plant.constant(&controls(&y)?)?;
                evals += 1;
                if fy > fx {
                    (x, fx) = (y, fy);
                    improved = true;
                }
            }
        }
        if !improved {
            step /= 2.0;
        }
    }
    Ok((x, fx, evals, true))
}

fn named(u: &ControlArray<f64>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for c in Control::ALL {
        m.insert(c.name().into(), json!(u[c.index()]));
    }
    serde_json::Value::Object(m)
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let spec = PlantSpec::from_arg(&a.truth)?;
    let plant = Plant {
        config: VirtualReactorConfig {
            clone: spec.clone,
            params: Some(spec.params),
            ..VirtualReactorConfig::default()
        },
        objective: parse_objective(&a.objective, a.medium_cost)?,
        days: a.days,
    };
    let t0 = std::time::Instant::now();

    let default_value = plant.constant(&Control::defaults())?;

    // best constant: Latin hypercube, then compass search from the five best points
    let design = doe::latin_hypercube(a.lhs, N_CONTROLS, 2026, 200)?;
    let mut scored = Vec::with_capacity(a.lhs);
    for p in design.to_unit() {
        let unit: ControlArray<f64> = std::array::from_fn(|k| p[k]);
        scored.push((unit, plant.constant(&controls(&unit)?)?));
    }
    scored.sort_by(|x, y| y.1.total_cmp(&x.1));
    let lhs_best = *scored
        .first()
        .context("the Latin hypercube has no points")?;
    let mut best = (lhs_best.0, lhs_best.1);
    let mut refinements = Vec::new();
    for (unit, v) in scored.iter().take(5) {
        let (x, fx, evals, converged) = compass(&plant, *unit, *v)?;
        refinements.push(json!({"from": v, "to": fx, "evals": evals, "converged": converged}));
        if fx > best.1 {
            best = (x, fx);
        }
    }

    // random search: a random feasible setpoint each day
    let space = DEFAULT_AMBR250_DESIGN_SPACE;
    let mut random = Vec::new();
    for seed in 0..a.seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut schedule = Vec::with_capacity(a.days as usize);
        while schedule.len() < a.days as usize {
            let unit: ControlArray<f64> = std::array::from_fn(|_| rng.random::<f64>());
            let u = space.from_unit(&unit)?;
            if u[Control::BleedRate.index()] <= u[Control::PerfusionRate.index()] {
                schedule.push(u);
            }
        }
        random.push(plant.value(&schedule)?);
    }
    let mean = random.iter().sum::<f64>() / random.len().max(1) as f64;
    let sd = (random.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
        / (random.len().max(2) - 1) as f64)
        .sqrt();

    let out = json!({
        "truth": spec.source,
        "objective": plant.objective.name(),
        "medium_cost": a.medium_cost,
        "days": a.days,
        "default_constant": default_value,
        "best_constant": {
            "lhs_points": a.lhs,
            "lhs_best": lhs_best.1,
            "lhs_best_controls": named(&controls(&lhs_best.0)?),
            "refined": best.1,
            "refined_controls": named(&controls(&best.0)?),
            "refinements": refinements,
        },
        "random_search": {"seeds": a.seeds, "mean": mean, "sd": sd, "values": random},
        "seconds": t0.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
