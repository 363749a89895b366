//! Where the time of one decision goes, on the benchmarks' online model:
//! `cargo run --release -p perfusio-bed --example decide_profile` (`-- batch`: also the
//! 24-reactor batch; `-- late`: only a late campaign day's batch forecasts and decision).
//! `HORIZON=14` sets the single decisions' horizon in days (default 3).

#[path = "../benches/support/fixture.rs"]
mod fixture;

use std::time::Instant;

use perfusio_bed::objective::Harvest;
use perfusio_bed::{BedPolicy, PolicyConfig};
use perfusio_core::{Acquisition, DEFAULT_AMBR250_DESIGN_SPACE as DS};

/// CPU time of this process so far (user + system), from `/proc/self/stat` (Linux; zero
/// elsewhere), in seconds.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the command name: state is field 3, utime 14, stime 15
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let t = Instant::now();
    let (model, run) = fixture::online_model();
    eprintln!("online model fitted in {:?}", t.elapsed());
    let (state, current) = fixture::day14(&model, &run);
    let horizon: u32 = match std::env::var("HORIZON") {
        Ok(h) => h
            .parse()
            .unwrap_or_else(|e| panic!("HORIZON={h}: not a number of days ({e})")),
        Err(_) => 3,
    };
    for acq in [Acquisition::LogEI, Acquisition::QLogEI] {
        let cfg = PolicyConfig {
            acquisition: acq,
            horizon_days: horizon,
            ..PolicyConfig::new(&DS)
        };
        let p = BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg)
            .unwrap_or_else(|e| panic!("{e}"));
        let (c0, w0) = (cpu_seconds(), Instant::now());
        for _ in 0..3 {
            let d = p
                .decide(&model, &state, &current)
                .unwrap_or_else(|e| panic!("{e}"));
            eprintln!("{acq}: {:?} — {}", d.elapsed, d.reason);
            eprintln!("  {:?}", d.timings);
            for r in &d.restarts {
                eprintln!(
                    "  restart {:.5} -> {:.5}: {} it, {} evals, {}",
                    r.start_value, r.value, r.iterations, r.evaluations, r.stop
                );
            }
            eprintln!(
                "  finalists {}, setpoints {:?}",
                d.finalists, d.setpoints.values
            );
        }
        eprintln!(
            "{acq}: {:.0} ms CPU and {:.0} ms wall per decision",
            (cpu_seconds() - c0) / 3.0 * 1e3,
            w0.elapsed().as_secs_f64() / 3.0 * 1e3
        );
    }
    let mode = std::env::args().nth(1);
    if mode.as_deref() == Some("late") {
        late_batch();
        return;
    }
    if mode.as_deref() != Some("batch") {
        return;
    }
    let reactors = fixture::batch24(&model, &run);
    time_batch("decide_batch(24)", &model, &reactors, 2);
}

/// Times `runs` qLogEI batch decisions over `reactors` (wall, CPU and the first decision's
/// split), labelled `label`.
fn time_batch(
    label: &str,
    model: &perfusio_hybrid::HybridModel,
    reactors: &[(
        perfusio_hybrid::StateEstimate,
        perfusio_core::ControlArray<f64>,
    )],
    runs: usize,
) {
    let cfg = PolicyConfig {
        acquisition: Acquisition::QLogEI,
        ..PolicyConfig::new(&DS)
    };
    let p = BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg)
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..runs {
        let (c0, t) = (cpu_seconds(), Instant::now());
        let ds = p
            .decide_batch(model, reactors)
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{label}: {:?} wall, {:.0} ms CPU; {:?}",
            t.elapsed(),
            (cpu_seconds() - c0) * 1e3,
            ds[0].timings
        );
    }
}

/// A late campaign day ([`fixture::late24`]): conditioning the shared model on all data, the
/// 24 reactors' 14-day moment-matched forecasts as one batch and one at a time, and the
/// batch decision.
fn late_batch() {
    let t = Instant::now();
    let (model, reactors) = fixture::late24();
    eprintln!("late campaign model fitted in {:?}", t.elapsed());
    for _ in 0..3 {
        let mut copy = model.clone();
        let (c0, t) = (cpu_seconds(), Instant::now());
        copy.adopt_fit(&model).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "conditioning the shared model on all data (adopt_fit): {:?} wall, {:.0} ms CPU",
            t.elapsed(),
            (cpu_seconds() - c0) * 1e3
        );
    }
    let schedules = fixture::schedules14(&reactors);
    let jobs = fixture::jobs(&reactors, &schedules);
    let opts = fixture::mm_options();
    for _ in 0..3 {
        let (c0, t) = (cpu_seconds(), Instant::now());
        let ok = model
            .forecast_many(&jobs, &opts)
            .iter()
            .filter(|f| f.is_ok())
            .count();
        eprintln!(
            "24 forecasts of 14 days (moment matching) as one batch: {:?} wall, {:.0} ms CPU ({ok} ok)",
            t.elapsed(),
            (cpu_seconds() - c0) * 1e3
        );
        let (c0, t) = (cpu_seconds(), Instant::now());
        fixture::one_at_a_time(&model, &jobs, &opts);
        eprintln!(
            "the same one at a time: {:?} wall, {:.0} ms CPU",
            t.elapsed(),
            (cpu_seconds() - c0) * 1e3
        );
    }
    time_batch("late decide_batch(24)", &model, &reactors, 5);
}
