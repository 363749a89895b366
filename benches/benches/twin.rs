//! The whole twin: one culture day (read → learn → forecast → alarms → decide → write →
//! audit, plus the run's first and last records) and the 14-day T06 loop, with the T06
//! settings (28-day forecasts with 256 paths, LogEI with 512 raw candidates × 10 restarts).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use perfusio_benches::{Scratch, run_t06};

fn twin(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("twin");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    for days in [1u32, 14] {
        g.measurement_time(Duration::from_secs(if days == 1 { 10 } else { 60 }));
        let name = if days == 1 { "one_day" } else { "t06_14_days" };
        g.bench_function(name, |b| {
            b.iter_batched(
                || Scratch::new(days).unwrap(),
                |s| {
                    let report = rt.block_on(run_t06(&s, black_box(days))).unwrap();
                    assert!(report.completed);
                    (s, report)
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, twin);
criterion_main!(benches);
