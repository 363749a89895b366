//! Where the time of one decision goes, on the benchmarks' online model:
//! `cargo run --release -p perfusio-bed --example decide_profile`.

#[path = "../benches/fixture.rs"]
mod fixture;

use std::time::Instant;

use perfusio_bed::objective::Harvest;
use perfusio_bed::{BedPolicy, PolicyConfig};
use perfusio_core::{Acquisition, DEFAULT_AMBR250_DESIGN_SPACE as DS};

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
        let t = Instant::now();
        let ds = p
            .decide_batch(&model, &reactors)
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("decide_batch(24): {:?}; {:?}", t.elapsed(), ds[0].timings);
    }
}
