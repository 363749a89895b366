//! The synthetic culture process of the GP benchmarks: 9 coupled species, 6 constant
//! controls and the day, one row per day and species in the indexed multi-task layout.
//! Shared by the benches and the tests (`#[path]`-included).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Species (tasks).
pub(crate) const SPECIES: usize = 9;
/// Controls.
pub(crate) const CONTROLS: usize = 6;
/// Base input columns: species, controls, day.
pub(crate) const D: usize = SPECIES + CONTROLS + 1;

/// One run of `days` days: the rows `[species, controls, day]` and the next day's species.
pub(crate) fn run(rng: &mut ChaCha8Rng, days: usize) -> (Vec<[f64; D]>, Vec<[f64; SPECIES]>) {
    let mut s: [f64; SPECIES] =
        std::array::from_fn(|j| 1.0 + 0.5 * j as f64 + rng.random_range(-0.2..0.2));
    let c: [f64; CONTROLS] = std::array::from_fn(|_| rng.random_range(0.0..1.0));
    let mut inputs = Vec::new();
    let mut next = Vec::new();
    for day in 0..days {
        let mut row = [0.0; D];
        row[..SPECIES].copy_from_slice(&s);
        row[SPECIES..SPECIES + CONTROLS].copy_from_slice(&c);
        row[D - 1] = day as f64;
        let growth = 0.3 * (1.0 - s[0] / 12.0) * (0.5 + c[0]);
        let mut n = s;
        for j in 0..SPECIES {
            let drive = (0.4 * s[(j + 1) % SPECIES]).sin() * 0.2 + 0.1 * c[j % CONTROLS]
                - 0.05 * s[j]
                + growth * s[0] / (1.0 + j as f64);
            n[j] = s[j] + drive + 0.02 * rng.random_range(-1.0..1.0);
        }
        inputs.push(row);
        next.push(n);
        s = n;
    }
    (inputs, next)
}

/// Indexed multi-task rows for `runs` runs of `days` transitions; drops each target with
/// probability `drop`.
pub(crate) fn dataset(runs: usize, days: usize, drop: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..runs {
        let (inp, nxt) = run(&mut rng, days);
        for (row, n) in inp.iter().zip(&nxt) {
            for (t, nt) in n.iter().enumerate() {
                if drop > 0.0 && rng.random::<f64>() < drop {
                    continue;
                }
                x.extend_from_slice(row);
                x.push(t as f64);
                y.push(*nt);
            }
        }
    }
    (x, y)
}
