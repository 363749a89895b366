//! Parsing a 10 000-row culture CSV (target: median < 50 ms), wide and long layouts, from
//! bytes and from a file in a temp dir.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use perfusio_connectors::files::{CultureTable, ParseOptions};

/// Deterministic xorshift64* stream (fixed seed) for plausible cell values.
struct Stream(u64);

impl Stream {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

const COLUMNS: [&str; 9] = [
    "VCD",
    "viability",
    "glucose",
    "lactate",
    "glutamine",
    "glutamate",
    "titer",
    "perfusion_rate",
    "bleed_rate",
];
const SCALE: [f64; 9] = [60.0, 0.1, 6.0, 20.0, 4.0, 3.0, 800.0, 2.0, 0.2];

fn wide_csv(rows: usize, seed: u64) -> String {
    let mut r = Stream(seed);
    let mut s = format!("day,{}\n", COLUMNS.join(","));
    for day in 0..rows {
        let _ = write!(s, "{day}");
        for (i, k) in SCALE.iter().enumerate() {
            let v = if i == 1 {
                0.88 + k * r.unit()
            } else {
                k * r.unit()
            };
            let _ = write!(s, ",{v:.4}");
        }
        s.push('\n');
    }
    s
}

fn long_csv(rows: usize, seed: u64) -> String {
    let mut r = Stream(seed);
    let mut s = String::from("day,species,value\n");
    for i in 0..rows {
        let c = i % COLUMNS.len();
        let _ = writeln!(
            s,
            "{},{},{:.4}",
            i / COLUMNS.len(),
            COLUMNS[c],
            SCALE[c] * r.unit()
        );
    }
    s
}

fn parse(c: &mut Criterion) {
    let rows = 10_000;
    let opts = ParseOptions::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("files_parse");
    g.sample_size(30);
    for (name, text) in [
        ("wide", wide_csv(rows, 0x5EED)),
        ("long", long_csv(rows, 0x5EED)),
    ] {
        let path = dir.path().join(format!("{name}.csv"));
        std::fs::write(&path, &text).expect("write fixture");
        let check = CultureTable::from_csv_bytes(text.as_bytes(), "b.csv", &opts).expect("parses");
        assert!(check.len() >= rows / COLUMNS.len());
        g.bench_with_input(BenchmarkId::new("bytes", name), &text, |b, t| {
            b.iter(|| CultureTable::from_csv_bytes(black_box(t.as_bytes()), "b.csv", &opts))
        });
        g.bench_with_input(BenchmarkId::new("file", name), &path, |b, p| {
            b.iter(|| CultureTable::read_csv(black_box(p), &opts))
        });
    }
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
