//! Where the time of one decision goes, on the benchmarks' online model:
//! `cargo run --release -p perfusio-bed --example decide_profile`.

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
    for acq in [Acquisition::LogEI, Acquisition::QLogEI] {
        let cfg = PolicyConfig {
            acquisition: acq,
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
    if std::env::args().nth(1).as_deref() != Some("batch") {
        return;
    }
    let reactors = fixture::batch24(&model, &run);
    let cfg = PolicyConfig {
        acquisition: Acquisition::QLogEI,
        ..PolicyConfig::new(&DS)
    };
    let p = BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg)
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        let c0 = cpu_seconds();
        let t = Instant::now();
        let ds = p
            .decide_batch(&model, &reactors)
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "decide_batch(24): {:?} wall, {:.0} ms CPU; {:?}",
            t.elapsed(),
            (cpu_seconds() - c0) * 1e3,
            ds[0].timings
        );
    }
}
