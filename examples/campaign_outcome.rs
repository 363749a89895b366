//! The outcome of a campaign on the true plant: the best operating point the campaign
//! reported (`snapshot.json`), run constant for `--days` days on the noise-free true plant,
//! against the best run of the 27-run Box–Behnken training design on the same plant (and
//! the default setpoints).
//!
//! ```sh
//! cargo run --release -p perfusio-examples --example campaign_outcome -- \
//!     --campaign DIR --truth CloneY --objective harvest --medium-cost 400 [--days 28]
//! ```
//!
//! The best constant-control objective to compare with comes from `closed_loop_baselines`
//! with the same flags.

use anyhow::{Context, bail};
use perfusio_twin::campaign_files::read_snapshot;
use perfusio_twin::layers::bed::objective::parse_objective;
use perfusio_twin::layers::core::{Control, ControlArray};
use perfusio_twin::layers::mechanistic::{PlantSpec, VirtualReactor, VirtualReactorConfig, doe};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let mut dir = None;
    let (mut truth, mut objective, mut cost, mut days) =
        ("CloneY".to_string(), "harvest".to_string(), 0.0, 28u32);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--campaign" => dir = Some(std::path::PathBuf::from(value()?)),
            "--truth" => truth = value()?,
            "--objective" => objective = value()?,
            "--medium-cost" => cost = value()?.parse()?,
            "--days" => days = value()?.parse()?,
            other => bail!(
                "unknown flag {other}; use --campaign --truth --objective --medium-cost --days"
            ),
        }
    }
    let dir = dir.context("--campaign DIR is required")?;
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let snap = read_snapshot(&dir)?.context("the campaign has published no snapshot")?;
    let best = snap
        .best_point
        .context("the campaign reported no best point")?;
    let mut u = Control::defaults();
    for c in Control::ALL {
        u[c.index()] = *best
            .controls
            .get(c.name())
            .with_context(|| format!("the best point has no {}", c.name()))?;
    }
    let spec = PlantSpec::from_arg(&truth)?;
    let config = VirtualReactorConfig {
        clone: spec.clone,
        params: Some(spec.params),
        ..VirtualReactorConfig::default()
    };
    let obj = parse_objective(&objective, cost)?;
    let constant = |u: &ControlArray<f64>| -> anyhow::Result<f64> {
        let mut r = VirtualReactor::new(config.clone())?;
        for _ in 0..days {
            r.set_setpoints(u)?;
            r.advance_day()?;
        }
        let schedule = vec![*u; days as usize];
        Ok(obj.value(r.clean_history(), &schedule))
    };
    let campaign_value = constant(&u)?;
    let mut bbd: Vec<(f64, ControlArray<f64>)> = doe::training_design()
        .iter()
        .map(|p| Ok((constant(p)?, *p)))
        .collect::<anyhow::Result<_>>()?;
    bbd.sort_by(|a, b| b.0.total_cmp(&a.0));
    let named = |u: &ControlArray<f64>| {
        Control::ALL
            .iter()
            .map(|c| (c.name().to_string(), json!(u[c.index()])))
            .collect::<serde_json::Map<_, _>>()
    };
    let out = json!({
        "campaign": snap.campaign,
        "truth": spec.source,
        "objective": obj.name(),
        "days": days,
        "campaign_best_point": named(&u),
        "campaign_best_point_predicted": {"mean": best.objective_mean, "sd": best.objective_sd},
        "campaign_best_point_true_objective": campaign_value,
        "box_behnken_best_true_objective": bbd[0].0,
        "box_behnken_best_point": named(&bbd[0].1),
        "default_setpoints_true_objective": constant(&Control::defaults())?,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
