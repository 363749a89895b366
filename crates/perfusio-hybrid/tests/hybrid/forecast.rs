//! Forecast methods against each other and against the mechanism.

use perfusio_core::{N_SPECIES, Species};
use perfusio_hybrid::{
    ForecastJob, ForecastMethod, ForecastOptions, HybridConfig, HybridModel, StateEstimate,
};
use perfusio_mechanistic::{KineticParams, PlantModel};

use crate::common::defaults;

/// With the model's variance → 0 and a known start, both forecasts equal the mechanism
/// integrated day by day.
#[test]
fn zero_variance_forecast_is_the_mechanism() {
    let model = HybridModel::new(HybridConfig {
        mechanism_sd: [1e-9; N_SPECIES],
        ..HybridConfig::default()
    })
    .unwrap();
    let tr = model.config().transform;
    let s0 = [4.0, 98.0, 3.5, 2.5, 0.8, 8.0, 1.2, 0.0, 60.0];
    let start = StateEstimate::known(5, &s0, &tr);
    let schedule = vec![defaults(); 14];
    let exact = PlantModel::new(KineticParams::clone_x())
        .simulate(&s0, &schedule)
        .unwrap();
    for method in [ForecastMethod::MonteCarlo, ForecastMethod::MomentMatching] {
        let f = model
            .forecast(
                &start,
                &schedule,
                &ForecastOptions {
                    method,
                    paths: 16,
                    ..ForecastOptions::default()
                },
            )
            .unwrap();
        assert_eq!(f.state.len(), 14);
        for (h, band) in f.state.iter().enumerate() {
            assert_eq!(band.day, 6 + h as u32);
            for (k, &want) in exact[h + 1].iter().enumerate() {
                let tol = 2e-4 * want.abs().max(tr.offsets[k]);
                assert!(
                    (band.mean[k] - want).abs() <= tol,
                    "{method:?} day {} {}: {} vs {want}",
                    band.day,
                    Species::ALL[k],
                    band.mean[k]
                );
                assert!((band.quantiles[2][k] - want).abs() <= tol);
            }
        }
    }
}

/// On a nearly linear case (small uncertainties) Monte Carlo with many paths and moment
/// matching agree: means within 0.5 %, 5–95 % band edges within 5 % of the band width (the
/// Monte-Carlo standard error of a 5 % quantile at 4096 paths is about 1 % of the width).
#[test]
fn monte_carlo_agrees_with_moment_matching_when_nearly_linear() {
    // clone Y never switches to lactate consumption, so no species hits a switch or zero
    let model = HybridModel::new(HybridConfig {
        mechanism_sd: [0.01; N_SPECIES],
        ..HybridConfig::with_prior(KineticParams::clone_y(), "CloneY")
    })
    .unwrap();
    let tr = model.config().transform;
    let s0 = [1.5, 98.0, 6.0, 3.5, 0.6, 5.0, 0.8, 0.0, 20.0];
    let mut start = StateEstimate::known(4, &s0, &tr);
    for k in 0..N_SPECIES {
        start.cov[k][k] = 0.01f64.powi(2);
    }
    let schedule = vec![defaults(); 5];
    let mc = model
        .forecast(
            &start,
            &schedule,
            &ForecastOptions {
                paths: 4096,
                seed: 9,
                ..ForecastOptions::default()
            },
        )
        .unwrap();
    let mm = model
        .forecast(
            &start,
            &schedule,
            &ForecastOptions {
                method: ForecastMethod::MomentMatching,
                ..ForecastOptions::default()
            },
        )
        .unwrap();
    for h in 0..5 {
        for k in [0, 1, 2, 3, 5, 6, 8] {
            let (a, b) = (mc.state[h].mean[k], mm.state[h].mean[k]);
            // relative to the value, or to the log offset for a species near zero
            let scale = b.abs().max(tr.offsets[k]);
            assert!(
                (a - b).abs() <= 5e-3 * scale,
                "h {h} species {k}: mean MC {a} MM {b}"
            );
            let width = mm.state[h].quantiles[4][k] - mm.state[h].quantiles[0][k];
            for q in [0, 4] {
                let (a, b) = (mc.state[h].quantiles[q][k], mm.state[h].quantiles[q][k]);
                assert!(
                    (a - b).abs() <= 0.05 * width + 1e-9,
                    "h {h} species {k} q{q}: MC {a} MM {b} (width {width})"
                );
            }
        }
    }
}

/// Forecasts keep states non-negative and viability at most 100 %, derive VCV and Diam,
/// and are deterministic for a seed.
#[test]
fn forecasts_respect_physical_bounds_and_seeds() {
    let model = HybridModel::new(HybridConfig {
        mechanism_sd: [0.5; N_SPECIES],
        ..HybridConfig::default()
    })
    .unwrap();
    let tr = model.config().transform;
    let s0 = [10.0, 99.5, 0.05, 0.1, 1.0, 2.0, 3.0, 0.0, 300.0];
    let start = StateEstimate::known(10, &s0, &tr);
    let opts = ForecastOptions {
        paths: 128,
        seed: 1,
        ..ForecastOptions::default()
    };
    let f = model
        .forecast(&start, &vec![defaults(); 10], &opts)
        .unwrap();
    let g = model
        .forecast(&start, &vec![defaults(); 10], &opts)
        .unwrap();
    assert_eq!(f, g);
    for p in f.paths.as_ref().unwrap() {
        for s in p {
            assert!(s.iter().all(|v| *v >= 0.0));
            assert!(s[Species::Via.index()] <= 100.0);
        }
    }
    for b in f.state.iter().chain(&f.measured) {
        assert!(b.quantiles[4][Species::Via.index()] <= 100.0);
        assert!(b.quantiles[0].iter().all(|v| *v >= 0.0));
        // VCV ≈ 0.45·VCD and Diam in its range
        assert!(b.derived[0][2] > 0.0 && b.derived[1][2] >= 20.5 && b.derived[1][2] <= 24.5);
        for q in 0..4 {
            assert!(b.quantiles[q][0] <= b.quantiles[q + 1][0]);
        }
    }
}

/// However wide a moment-matched band grows, its mean and sd stay inside what the clamped
/// species can take (mean in `[0, upper]`, sd at most `upper/2`) and every variance in `z`
/// stays at most `(range/2)²`. With a one-day sd of 3 in `z` the plain log-normal mean of
/// titer is past 1e30 mg/L within a week.
#[test]
fn moment_matched_bands_stay_inside_the_species_range() {
    let model = HybridModel::new(HybridConfig {
        mechanism_sd: [3.0; N_SPECIES],
        ..HybridConfig::default()
    })
    .unwrap();
    let tr = model.config().transform;
    let s0 = [4.0, 98.0, 3.5, 2.5, 0.8, 8.0, 1.2, 0.0, 60.0];
    let start = StateEstimate::known(5, &s0, &tr);
    let opts = ForecastOptions {
        method: ForecastMethod::MomentMatching,
        ..ForecastOptions::default()
    };
    let f = model
        .forecast(&start, &vec![defaults(); 21], &opts)
        .unwrap();
    let upper = perfusio_hybrid::default_upper();
    for (b, (_, cov)) in f.state.iter().zip(f.moments.as_ref().unwrap()) {
        for k in 0..N_SPECIES {
            assert!(
                (0.0..=upper[k]).contains(&b.mean[k]) && b.sd[k] <= 0.5 * upper[k] + 1e-9,
                "day {} species {k}: mean {} sd {}",
                b.day,
                b.mean[k],
                b.sd[k]
            );
            assert!(
                cov[k][k] <= tr.max_var_z(k) * (1.0 + 1e-12),
                "{}",
                cov[k][k]
            );
        }
    }
    // the bands did grow to the caps: titer's band is wide, its mean far from the start
    let last = f.state.last().unwrap();
    assert!(last.sd[8] > 0.25 * upper[8], "{}", last.sd[8]);
}

/// `transitions_and_inputs` gives exactly `transitions` and `gp_input`, trained or not.
#[test]
fn transitions_and_inputs_match_transitions_and_gp_inputs() {
    let untrained = HybridModel::new(HybridConfig::default()).unwrap();
    let trained = crate::common::trained(2, perfusio_mechanistic::CloneKind::CloneY);
    let tr = untrained.config().transform;
    let states = [
        [4.0, 98.0, 3.5, 2.5, 0.8, 8.0, 1.2, 0.0, 60.0],
        [12.0, 95.0, 1.5, 0.5, 1.1, 20.0, 3.2, 0.2, 420.0],
    ];
    let inputs: Vec<_> = states
        .iter()
        .enumerate()
        .map(|(i, s)| HybridModel::z_input(&tr.to_z(s), &defaults(), 3 + i as u32))
        .collect();
    for model in [&untrained, &trained] {
        let (t, x) = model.transitions_and_inputs(&inputs).unwrap();
        assert_eq!(t, model.transitions(&inputs).unwrap());
        let expected: Vec<Vec<f64>> = inputs.iter().map(|i| model.gp_input(i).unwrap()).collect();
        assert_eq!(x, expected);
    }
}

/// A batch of forecasts gives each job what its own forecast gives with the job's seed:
/// moment matching batches each day's linearisations (equal up to summation order),
/// Monte Carlo runs the jobs in turn (bit for bit). Jobs may differ in start day and
/// horizon, and a bad job fails alone.
#[test]
fn a_batch_of_forecasts_equals_the_single_forecasts() {
    let model = crate::common::trained(2, perfusio_mechanistic::CloneKind::CloneY);
    let tr = model.config().transform;
    let starts = [
        StateEstimate::known(3, &[4.0, 98.0, 3.5, 2.5, 0.8, 8.0, 1.2, 0.0, 60.0], &tr),
        StateEstimate::known(9, &[12.0, 95.0, 1.5, 0.5, 1.1, 20.0, 3.2, 0.2, 420.0], &tr),
        StateEstimate::known(14, &[20.0, 92.0, 0.8, 0.3, 1.3, 25.0, 4.0, 0.1, 700.0], &tr),
    ];
    let mut high = defaults();
    high[perfusio_core::Control::PerfusionRate.index()] = 1.8;
    let schedules = [vec![defaults(); 7], vec![high; 3], vec![high; 10]];
    let seeds = [3, 5, 7];
    let jobs: Vec<ForecastJob<'_>> = (0..3)
        .map(|i| ForecastJob {
            start: &starts[i],
            schedule: &schedules[i],
            seed: seeds[i],
        })
        .collect();
    for method in [ForecastMethod::MomentMatching, ForecastMethod::MonteCarlo] {
        let opts = ForecastOptions {
            method,
            paths: 64,
            seed: 99,
            keep_paths: true,
            threads: 2,
        };
        let many = model.forecast_many(&jobs, &opts);
        assert_eq!(many.len(), 3);
        for (i, f) in many.into_iter().enumerate() {
            let f = f.unwrap();
            let single = model
                .forecast(
                    &starts[i],
                    &schedules[i],
                    &ForecastOptions {
                        seed: seeds[i],
                        ..opts.clone()
                    },
                )
                .unwrap();
            assert_eq!(f.horizon(), schedules[i].len());
            if method == ForecastMethod::MonteCarlo {
                assert_eq!(f, single);
                continue;
            }
            for (a, b) in f
                .moments
                .unwrap()
                .iter()
                .zip(single.moments.unwrap().iter())
            {
                for k in 0..N_SPECIES {
                    assert!((a.0[k] - b.0[k]).abs() <= 1e-9 * b.0[k].abs().max(1.0));
                    for j in 0..N_SPECIES {
                        let scale = (b.1[k][k] * b.1[j][j]).sqrt().max(1e-300);
                        assert!((a.1[k][j] - b.1[k][j]).abs() <= 1e-9 * scale);
                    }
                }
            }
        }
    }
    // an empty schedule fails its own job, with the error a single forecast gives
    let empty: Vec<perfusio_core::ControlArray<f64>> = Vec::new();
    let bad = [
        jobs[0],
        ForecastJob {
            start: &starts[1],
            schedule: &empty,
            seed: 1,
        },
    ];
    let opts = ForecastOptions {
        method: ForecastMethod::MomentMatching,
        ..ForecastOptions::default()
    };
    let out = model.forecast_many(&bad, &opts);
    assert!(out[0].is_ok());
    assert!(matches!(&out[1], Err(perfusio_hybrid::HybridError::Config(m)) if m.contains("empty")));
    assert!(model.forecast_many(&[], &opts).is_empty());
}

/// The first days of a long forecast are the short forecast with the same seed, bit for bit
/// (Monte Carlo: one seeded stream drawn day by day; moment matching: deterministic), so a
/// caller holding the 28-day forecast can hand its first days on instead of recomputing.
#[test]
fn the_first_days_of_a_long_forecast_are_the_short_forecast() {
    let model = HybridModel::new(HybridConfig::default()).unwrap();
    let tr = model.config().transform;
    let s0 = [4.0, 98.0, 3.5, 2.5, 0.8, 8.0, 1.2, 0.1, 60.0];
    let mut start = StateEstimate::known(5, &s0, &tr);
    for k in 0..N_SPECIES {
        start.cov[k][k] = 0.01;
    }
    for method in [ForecastMethod::MonteCarlo, ForecastMethod::MomentMatching] {
        let opts = ForecastOptions {
            method,
            paths: 64,
            seed: 17,
            keep_paths: true,
            ..ForecastOptions::default()
        };
        let long = model
            .forecast(&start, &vec![defaults(); 28], &opts)
            .unwrap();
        let short = model.forecast(&start, &vec![defaults(); 9], &opts).unwrap();
        let cut = long.truncated(9);
        assert_eq!(cut.horizon(), 9);
        // PartialEq on f64 fields: equal values, and the serialisations match bit for bit
        assert_eq!(cut, short, "{method:?}");
        assert_eq!(
            serde_json::to_string(&cut).unwrap(),
            serde_json::to_string(&short).unwrap()
        );
        assert_eq!(long.truncated(40), long);
        assert_eq!(long.truncated(0).horizon(), 0);
    }
}
