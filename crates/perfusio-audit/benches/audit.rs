//! Throughput of appending and verifying audit records.
//!
//! Targets: append without fsync ≥ 100 000 records/s, verify ≥ 200 000 records/s. The
//! fsync-per-record rate is measured for information (it depends on the disk). All files go to a
//! temporary directory.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use perfusio_audit::{
    AuditWriter, Entry, FsyncPolicy, VerifyOptions, WriterOptions, demo, verify_bytes,
};

const SEED: u64 = 2026;

fn entries(n: usize) -> Vec<Entry> {
    demo::simulated_run(n, SEED)
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let batch = entries(1000);
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(batch.len() as u64));
    let opts = WriterOptions::new("bench", "R1").fsync(FsyncPolicy::Never);
    let (mut w, _) = AuditWriter::open(dir.path().join("nofsync.jsonl"), opts).expect("open");
    g.bench_function("no_fsync_1000", |b| {
        b.iter_batched(
            || batch.clone(),
            |es| {
                for e in es {
                    black_box(w.append(e).expect("append"));
                }
            },
            BatchSize::LargeInput,
        );
    });
    let small = entries(20);
    g.throughput(Throughput::Elements(small.len() as u64));
    g.sample_size(10);
    let opts = WriterOptions::new("bench", "R1").fsync(FsyncPolicy::EveryRecord);
    let (mut w, _) = AuditWriter::open(dir.path().join("fsync.jsonl"), opts).expect("open");
    g.bench_function("fsync_every_record_20", |b| {
        b.iter_batched(
            || small.clone(),
            |es| {
                for e in es {
                    black_box(w.append(e).expect("append"));
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("verify.jsonl");
    let opts = WriterOptions::new("bench", "R1").fsync(FsyncPolicy::Never);
    let (mut w, _) = AuditWriter::open(&path, opts).expect("open");
    let n = 10_000;
    for e in entries(n) {
        w.append(e).expect("append");
    }
    drop(w);
    let bytes = std::fs::read(&path).expect("read");
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    g.bench_function("10000_records", |b| {
        b.iter(|| {
            let r = verify_bytes(black_box(&bytes), &VerifyOptions::default()).expect("valid");
            assert_eq!(r.records, n as u64);
        });
    });
    g.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
