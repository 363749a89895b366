//! The online model of the benchmarks: one 28-day run of the virtual reactor
//! (CloneY plant, CloneX prior, mechanism inputs on), filtered up to day 14, and a
//! 24-reactor batch of states along that run; and a late campaign day: one model shared by
//! 24 runs of 25 days and the 24 reactors' day-25 states. Shared by the benches and the
//! profiling example (`#[path]`-included).

use perfusio_core::{ControlArray, Trajectory};
use perfusio_hybrid::{ForecastJob, ForecastMethod, ForecastOptions};
use perfusio_hybrid::{HybridConfig, HybridModel, StateEstimate};
use perfusio_mechanistic::{CloneKind, VirtualReactorConfig, doe};

/// One 28-day run of the CloneY plant (seed 11).
pub(crate) fn online_run() -> Trajectory {
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneY,
        seed: 11,
        ..VirtualReactorConfig::default()
    };
    doe::simulate_design(&doe::training_design()[..1], &cfg, 28)
        .unwrap_or_else(|e| panic!("simulation: {e}"))
        .remove(0)
}

/// The online model (fitted on the whole run) and the run.
pub(crate) fn online_model() -> (HybridModel, Trajectory) {
    let run = online_run();
    let (m, _) = HybridModel::fit_runs(HybridConfig::online(), &[(run.clone(), None)])
        .unwrap_or_else(|e| panic!("fit: {e}"));
    (m, run)
}

/// Filtered estimates of days `0..=last` and the controls applied on each day.
pub(crate) fn filtered(
    model: &HybridModel,
    run: &Trajectory,
    last: usize,
) -> (Vec<StateEstimate>, Vec<ControlArray<f64>>) {
    let measured: Vec<_> = run.rows().iter().map(|r| r.species).collect();
    let controls: Vec<_> = run.rows().iter().map(|r| r.controls).collect();
    let est = model
        .filter_sequence(0, &measured[..=last], &controls[..=last])
        .unwrap_or_else(|e| panic!("filter: {e}"));
    (est, controls[..=last].to_vec())
}

/// The estimate on day 14 and the setpoints in force.
pub(crate) fn day14(model: &HybridModel, run: &Trajectory) -> (StateEstimate, ControlArray<f64>) {
    let (est, controls) = filtered(model, run, 14);
    (est[14].clone(), controls[14])
}

/// 24 reactors: the run's estimates on days 4..=27, each with its own setpoints.
pub(crate) fn batch24(
    model: &HybridModel,
    run: &Trajectory,
) -> Vec<(StateEstimate, ControlArray<f64>)> {
    let (est, controls) = filtered(model, run, 27);
    (4..28).map(|d| (est[d].clone(), controls[d])).collect()
}

/// A late day of a 24-reactor campaign: one model shared by 24 runs of 25 days (the first 24
/// runs of the training design on the CloneY plant, CloneX prior, 600 distinct inputs with
/// the runs' missing values as empty cells) and each run's filtered day-25 state with its
/// setpoints. The fit takes several seconds.
pub(crate) fn late24() -> (HybridModel, Vec<(StateEstimate, ControlArray<f64>)>) {
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneY,
        seed: 21,
        ..VirtualReactorConfig::default()
    };
    let runs = doe::simulate_design(&doe::training_design()[..24], &cfg, 25)
        .unwrap_or_else(|e| panic!("simulation: {e}"));
    let pairs: Vec<_> = runs.iter().map(|r| (r.clone(), None)).collect();
    let (model, _) = HybridModel::fit_runs(HybridConfig::online(), &pairs)
        .unwrap_or_else(|e| panic!("fit: {e}"));
    let reactors = runs
        .iter()
        .map(|r| {
            let (est, controls) = filtered(&model, r, 25);
            (est[25].clone(), controls[25])
        })
        .collect();
    (model, reactors)
}

/// Each reactor's forecast under its setpoints for `days` days, as one batch's jobs (the
/// schedules must outlive the jobs).
pub(crate) fn jobs<'a>(
    reactors: &'a [(StateEstimate, ControlArray<f64>)],
    schedules: &'a [Vec<ControlArray<f64>>],
) -> Vec<ForecastJob<'a>> {
    reactors
        .iter()
        .zip(schedules)
        .enumerate()
        .map(|(i, ((s, _), schedule))| ForecastJob {
            start: s,
            schedule,
            seed: i as u64,
        })
        .collect()
}

/// Each reactor's setpoints held for 14 days.
pub(crate) fn schedules14(
    reactors: &[(StateEstimate, ControlArray<f64>)],
) -> Vec<Vec<ControlArray<f64>>> {
    reactors.iter().map(|(_, c)| vec![*c; 14]).collect()
}

/// The campaign's forecast settings: moment matching, 256 draws for the bands, two threads.
pub(crate) fn mm_options() -> ForecastOptions {
    ForecastOptions {
        method: ForecastMethod::MomentMatching,
        paths: 256,
        seed: 1,
        keep_paths: true,
        threads: 2,
    }
}

/// The jobs' forecasts one at a time (each with its own seed), as before batching.
pub(crate) fn one_at_a_time(model: &HybridModel, jobs: &[ForecastJob<'_>], opts: &ForecastOptions) {
    for j in jobs {
        let one = ForecastOptions {
            seed: j.seed,
            ..opts.clone()
        };
        model
            .forecast(j.start, j.schedule, &one)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
