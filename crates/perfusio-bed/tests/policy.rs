//! The design policy against the hybrid model and the virtual reactor.

use perfusio_bed::objective::{Harvest, Objective};
use perfusio_bed::{BedPolicy, HoldForecast, PolicyConfig};
use perfusio_core::{
    Acquisition, Control, ControlArray, DEFAULT_AMBR250_DESIGN_SPACE as DS, N_SPECIES, Species,
    SpeciesArray,
};
use perfusio_hybrid::{ForecastMethod, ForecastOptions, HybridConfig, HybridModel, StateEstimate};
use perfusio_mechanistic::{CloneKind, NoiseModel, VirtualReactor, VirtualReactorConfig, doe};

fn trained(n_runs: usize) -> HybridModel {
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneX,
        seed: 3,
        ..VirtualReactorConfig::default()
    };
    let runs: Vec<_> = doe::simulate_design(&doe::training_design()[..n_runs], &cfg, 28)
        .unwrap()
        .into_iter()
        .map(|t| (t, None))
        .collect();
    HybridModel::fit_runs(HybridConfig::default(), &runs)
        .unwrap()
        .0
}

fn policy(acq: Acquisition, seed: u64) -> BedPolicy {
    let cfg = PolicyConfig {
        acquisition: acq,
        seed,
        ..PolicyConfig::new(&DS)
    };
    BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg).unwrap()
}

/// True harvest of a run: Σ_d ½(T_d + T_{d+1})(perfusion_d − bleed_d), mg per L of reactor.
fn harvest(states: &[SpeciesArray<f64>], controls: &[ControlArray<f64>]) -> f64 {
    Harvest::default().value(states, controls)
}

/// A closed loop of `days` days on the virtual reactor: filter, decide, apply.
fn closed_loop(model: &HybridModel, policy: Option<&BedPolicy>, days: u32) -> f64 {
    let mut r = VirtualReactor::new(VirtualReactorConfig {
        seed: 77,
        noise: NoiseModel::default(),
        ..VirtualReactorConfig::default()
    })
    .unwrap();
    let mut est: Option<StateEstimate> = None;
    let mut applied: Vec<ControlArray<f64>> = Vec::new();
    let mut current = Control::defaults();
    for day in 0..days {
        let sample = r.sample(day).unwrap().validate(&DS).sample;
        let prior = match (&est, applied.last()) {
            (Some(e), Some(u)) => Some(model.filter_predict(e, u).unwrap()),
            _ => None,
        };
        let e = model.filter_update(prior, day, &sample.species).unwrap();
        if let Some(p) = policy {
            let d = p.decide(model, &e, &current).unwrap();
            assert!(
                DS.check_setpoints(&d.setpoints.values).is_empty(),
                "{:?}",
                d.setpoints
            );
            current = d.setpoints.values;
        }
        r.set_setpoints(&current).unwrap();
        r.advance_day().unwrap();
        applied.push(current);
        est = Some(e);
    }
    let states: Vec<_> = (0..=days).map(|d| r.clean_state_on(d).unwrap()).collect();
    harvest(&states, &applied)
}

#[test]
fn closed_loop_harvest_beats_holding_the_defaults() {
    let model = trained(27);
    let p = policy(Acquisition::LogEI, 1);
    let held = closed_loop(&model, None, 10);
    let driven = closed_loop(&model, Some(&p), 10);
    eprintln!("10-day harvest: holding defaults {held:.1} mg/L, policy {driven:.1} mg/L");
    assert!(
        driven > held,
        "policy {driven} does not beat holding course {held}"
    );
}

/// A day-6 state (6e6 cells/mL, 150 mg/L titer) with a small uncertainty in every species.
fn day6_state(model: &HybridModel) -> StateEstimate {
    let tr = model.config().transform;
    let mut s0 = perfusio_mechanistic::initial_state();
    s0[Species::VCD.index()] = 6.0;
    s0[Species::Titer.index()] = 150.0;
    let mut e = StateEstimate::known(6, &s0, &tr);
    for k in 0..N_SPECIES {
        e.cov[k][k] = 0.003;
    }
    e
}

#[test]
fn same_seed_same_decision_and_bounds_hold() {
    let model = trained(3);
    let e = day6_state(&model);
    for acq in [Acquisition::LogEI, Acquisition::QLogEI, Acquisition::UCB] {
        let a = policy(acq, 5)
            .decide(&model, &e, &Control::defaults())
            .unwrap();
        let b = policy(acq, 5)
            .decide(&model, &e, &Control::defaults())
            .unwrap();
        assert_eq!(a.setpoints, b.setpoints, "{acq}");
        assert_eq!(a.acquisition_value.to_bits(), b.acquisition_value.to_bits());
        let v = a.setpoints.values;
        assert!(DS.check_setpoints(&v).is_empty(), "{acq}: {v:?}");
        assert!(v[1] <= v[0]);
        assert!(a.reason.starts_with(acq.name()), "{}", a.reason);
        assert!((0.0..=1.0).contains(&a.probability_feasible));
        // every restart reports how it stopped, and the phases fit in the wall time
        assert_eq!(a.restarts.len(), 10, "{acq}");
        assert!(
            a.restarts
                .iter()
                .all(|r| r.value >= r.start_value - 1e-9 || !r.converged)
        );
        let t = a.timings;
        assert!(t.linearise + t.screen + t.refine + t.final_check + t.forecast <= a.elapsed);
        eprintln!(
            "{acq}: {} ({:?}, {} screened)",
            a.reason, a.elapsed, a.screened
        );
    }
}

/// A decision near the run's end looks only as far as the run goes: with `end_day` two days
/// after the state's day, a 5-day horizon decides exactly as a 2-day one (same setpoints,
/// acquisition value and forecast, bit for bit), single and batched; open-ended, it keeps 5.
#[test]
fn decision_horizon_stops_at_the_run_end() {
    let model = trained(3);
    let e = day6_state(&model);
    let with = |horizon_days: u32, end_day: Option<u32>| {
        let cfg = PolicyConfig {
            acquisition: Acquisition::QLogEI,
            horizon_days,
            end_day,
            raw_samples: 64,
            restarts: 3,
            seed: 11,
            ..PolicyConfig::new(&DS)
        };
        BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg).unwrap()
    };
    let cut = with(5, Some(8));
    let short = with(2, None);
    let open = with(5, None);
    let a = cut.decide(&model, &e, &Control::defaults()).unwrap();
    let b = short.decide(&model, &e, &Control::defaults()).unwrap();
    let c = open.decide(&model, &e, &Control::defaults()).unwrap();
    assert_eq!(a.forecast.horizon(), 2);
    assert_eq!(c.forecast.horizon(), 5);
    assert_eq!(a.setpoints, b.setpoints);
    assert_eq!(a.acquisition_value.to_bits(), b.acquisition_value.to_bits());
    assert_eq!(a.recommended, b.recommended);
    assert_ne!(
        a.recommended, c.recommended,
        "the 5-day objective is another number"
    );
    let reactors = vec![(e.clone(), Control::defaults()); 3];
    let ab = cut.decide_batch(&model, &reactors).unwrap();
    let bb = short.decide_batch(&model, &reactors).unwrap();
    for (x, y) in ab.iter().zip(&bb) {
        assert_eq!(x.forecast.horizon(), 2);
        assert_eq!(x.setpoints, y.setpoints);
        assert_eq!(x.acquisition_value.to_bits(), y.acquisition_value.to_bits());
    }
    // past the end a decision still looks one day ahead
    let late = StateEstimate { day: 9, ..e };
    assert_eq!(
        cut.decide(&model, &late, &Control::defaults())
            .unwrap()
            .forecast
            .horizon(),
        1
    );
}

#[path = "../benches/support/fixture.rs"]
#[allow(dead_code)]
mod fixture;

/// Every recommended setpoint is inside the design space, bleed ≤ perfusion, within the ramp
/// limits of `current`, and fixed controls did not move.
fn assert_admissible(
    v: &ControlArray<f64>,
    current: &ControlArray<f64>,
    ramp: &ControlArray<Option<f64>>,
    fixed: &[Control],
) {
    assert!(DS.check_setpoints(v).is_empty(), "{v:?}");
    let (p, b) = (
        v[Control::PerfusionRate.index()],
        v[Control::BleedRate.index()],
    );
    assert!(b <= p, "bleed {b} > perfusion {p}");
    for c in Control::ALL {
        let i = c.index();
        if let Some(r) = ramp[i] {
            assert!(
                (v[i] - current[i]).abs() <= r * (1.0 + 1e-12) + 1e-12,
                "{c}: {} -> {} beyond the ramp limit {r}",
                current[i],
                v[i]
            );
        }
    }
    for c in fixed {
        let i = c.index();
        assert!(
            (v[i] - current[i]).abs() <= 1e-12 * current[i].abs().max(1.0),
            "{c} is fixed"
        );
    }
}

/// Issue 11: `decide_batch` for reactors in the same state spreads them over the design
/// space (the model's correlations make a second copy of a point worth nothing), and every
/// member respects the bounds, bleed ≤ perfusion, the ramp limits and the fixed controls.
#[test]
fn decide_batch_spreads_identical_reactors_and_respects_the_space() {
    let (model, run) = fixture::online_model();
    let (state, current) = fixture::day14(&model, &run);
    let current = DS.clamp(&current);
    let mut ramp: ControlArray<Option<f64>> = [None; 6];
    ramp[Control::PerfusionRate.index()] = Some(0.3);
    ramp[Control::Temperature.index()] = Some(0.5);
    let fixed = vec![Control::Agitation];
    let cfg = PolicyConfig {
        acquisition: Acquisition::QLogEI,
        ramp_limits: ramp,
        fixed: fixed.clone(),
        ..PolicyConfig::new(&DS)
    };
    let p = BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg).unwrap();
    let q = 8;
    let reactors = vec![(state.clone(), current); q];
    let ds = p.decide_batch(&model, &reactors).unwrap();
    assert_eq!(ds.len(), q);
    let mut distinct: Vec<ControlArray<f64>> = Vec::new();
    for d in &ds {
        let v = d.setpoints.values;
        assert_admissible(&v, &current, &ramp, &fixed);
        assert!((0.0..=1.0).contains(&d.probability_feasible));
        assert!(d.acquisition_value.is_finite());
        assert_eq!(d.forecast.horizon(), 3);
        if !distinct
            .iter()
            .any(|u| u.iter().zip(&v).all(|(a, b)| (a - b).abs() < 1e-9))
        {
            distinct.push(v);
        }
    }
    eprintln!(
        "{} distinct setpoints among {q} identical reactors; {:?}",
        distinct.len(),
        ds[0].elapsed
    );
    assert_eq!(
        distinct.len(),
        q,
        "identical reactors were given the same point"
    );
    // the same seed gives the same batch
    let again = p.decide_batch(&model, &reactors).unwrap();
    for (a, b) in ds.iter().zip(&again) {
        assert_eq!(a.setpoints, b.setpoints);
    }
}

/// Issue 11: screening the raw candidates on Monte-Carlo paths instead of linearised
/// (moment-matching) forecasts does not change the decision's quality. Both decisions are
/// judged by the same final Monte-Carlo check (same seed, common random numbers against the
/// same holding course), so their objective means and acquisition values are comparable.
#[test]
fn linearised_screening_decides_as_well_as_monte_carlo_screening() {
    let (model, run) = fixture::online_model();
    let (state, current) = fixture::day14(&model, &run);
    let run_with = |screening| {
        let cfg = PolicyConfig {
            screening,
            raw_samples: 128,
            restarts: 4,
            ..PolicyConfig::new(&DS)
        };
        BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg)
            .unwrap()
            .decide(&model, &state, &current)
            .unwrap()
    };
    let lin = run_with(perfusio_bed::Screening::Linearised);
    let mc = run_with(perfusio_bed::Screening::MonteCarlo);
    eprintln!(
        "linearised screening: {:?} harvest {:.2} ± {:.2}, acquisition {:.4} ({:?})",
        lin.setpoints.values,
        lin.recommended[0].mean,
        lin.recommended[0].sd,
        lin.acquisition_value,
        lin.elapsed
    );
    eprintln!(
        "Monte-Carlo screening: {:?} harvest {:.2} ± {:.2}, acquisition {:.4} ({:?})",
        mc.setpoints.values,
        mc.recommended[0].mean,
        mc.recommended[0].sd,
        mc.acquisition_value,
        mc.elapsed
    );
    // same holding course, same Monte-Carlo check
    assert_eq!(lin.holding[0].mean.to_bits(), mc.holding[0].mean.to_bits());
    // decision quality: LogEI within 0.05 (5 % of EI) and harvest means within 2 %
    assert!(
        (lin.acquisition_value - mc.acquisition_value).abs() < 0.05,
        "{} vs {}",
        lin.acquisition_value,
        mc.acquisition_value
    );
    assert!(
        (lin.recommended[0].mean / mc.recommended[0].mean - 1.0).abs() < 0.02,
        "{} vs {}",
        lin.recommended[0].mean,
        mc.recommended[0].mean
    );
}

/// Issue 11: for any model output (a mechanism-only model with random uncertainty, random
/// states) and any admissible current setpoints, ramp limits and fixed controls, the
/// recommendation stays in the design space, keeps bleed ≤ perfusion, respects the ramps
/// and leaves fixed controls alone.
mod admissible {
    use super::*;
    use proptest::prelude::*;

    /// Unit-cube current setpoints, state scales, ramp limits (fractions of the ranges),
    /// fixed controls, the model's transition sd and the state variance.
    type Case = (Vec<f64>, Vec<f64>, Vec<Option<f64>>, Vec<bool>, f64, f64);

    fn case() -> impl Strategy<Value = Case> {
        (
            proptest::collection::vec(0.0..1.0f64, 6),
            proptest::collection::vec(0.5..1.5f64, 3),
            proptest::collection::vec(proptest::option::of(0.01..0.5f64), 6),
            proptest::collection::vec(proptest::bool::weighted(0.25), 6),
            0.005..0.3f64,
            0.001..0.05f64,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
        #[test]
        fn recommendations_are_admissible((unit, scale, ramp_frac, fix, model_sd, state_var) in case()) {
            let cfg_h = HybridConfig {
                mechanism_sd: [model_sd; N_SPECIES],
                ..HybridConfig::default()
            };
            let model = HybridModel::new(cfg_h).unwrap();
            let tr = model.config().transform;
            // current setpoints: anywhere in the design space, bleed ≤ perfusion
            let mut current = [0.0; 6];
            for c in Control::ALL {
                let spec = DS.control(c);
                current[c.index()] = spec.lower + unit[c.index()] * (spec.upper - spec.lower);
            }
            let pi = Control::PerfusionRate.index();
            let bi = Control::BleedRate.index();
            current[bi] = current[bi].min(current[pi]);
            let mut ramp: ControlArray<Option<f64>> = [None; 6];
            let mut fixed = Vec::new();
            for c in Control::ALL {
                let spec = DS.control(c);
                ramp[c.index()] = ramp_frac[c.index()].map(|f| f * (spec.upper - spec.lower));
                if fix[c.index()] {
                    fixed.push(c);
                }
            }
            let mut s0 = perfusio_mechanistic::initial_state();
            s0[Species::VCD.index()] = 4.0 * scale[0];
            s0[Species::Titer.index()] = 200.0 * scale[1];
            s0[Species::Glc.index()] *= scale[2];
            let mut e = StateEstimate::known(5, &s0, &tr);
            for k in 0..N_SPECIES {
                e.cov[k][k] = state_var;
            }
            let cfg = PolicyConfig {
                raw_samples: 32,
                restarts: 2,
                mc_samples: 16,
                ramp_limits: ramp,
                fixed: fixed.clone(),
                ..PolicyConfig::new(&DS)
            };
            let p = BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg).unwrap();
            let d = p.decide(&model, &e, &current).unwrap();
            assert_admissible(&d.setpoints.values, &current, &ramp, &fixed);
            prop_assert!((0.0..=1.0).contains(&d.probability_feasible));
        }
    }
}

/// Issue 14: with two objectives the batch is chosen by qNEHVI (and qEHVI): identical
/// reactors are spread, every member is admissible and reports both objectives, the batch
/// extends the front of the holding courses, and the same seed gives the same batch.
#[test]
fn decide_batch_over_two_objectives_spreads_along_the_front() {
    use perfusio_bed::objective::FinalTiter;
    let (model, run) = fixture::online_model();
    let (state, current) = fixture::day14(&model, &run);
    let current = DS.clamp(&current);
    let q = 8;
    let reactors = vec![(state.clone(), current); q];
    for acq in [Acquisition::QNEHVI, Acquisition::QEHVI] {
        let cfg = PolicyConfig {
            acquisition: acq,
            ..PolicyConfig::new(&DS)
        };
        let p = BedPolicy::new(
            DS,
            vec![Box::new(Harvest::default()), Box::new(FinalTiter)],
            cfg,
        )
        .unwrap();
        let ds = p.decide_batch(&model, &reactors).unwrap();
        assert_eq!(ds.len(), q);
        let mut distinct: Vec<ControlArray<f64>> = Vec::new();
        for d in &ds {
            let v = d.setpoints.values;
            assert_admissible(&v, &current, &[None; 6], &[]);
            assert_eq!(d.acquisition, acq);
            assert_eq!(d.objectives.len(), 2);
            assert_eq!(d.recommended.len(), 2);
            assert_eq!(d.holding.len(), 2);
            assert!(d.reason.starts_with(acq.name()), "{}", d.reason);
            // the expected hypervolume the batch adds to the holding courses' front
            assert!(
                d.acquisition_value > 0.0 && d.acquisition_value.is_finite(),
                "{acq}: {}",
                d.acquisition_value
            );
            if !distinct
                .iter()
                .any(|u| u.iter().zip(&v).all(|(a, b)| (a - b).abs() < 1e-9))
            {
                distinct.push(v);
            }
        }
        let means: Vec<(f64, f64)> = ds
            .iter()
            .map(|d| (d.recommended[0].mean, d.recommended[1].mean))
            .collect();
        eprintln!(
            "{acq}: {} distinct of {q}, batch EHVI {:.3}, holding ({:.1}, {:.1}), members {means:.1?}, {:?}",
            distinct.len(),
            ds[0].acquisition_value,
            ds[0].holding[0].mean,
            ds[0].holding[1].mean,
            ds[0].elapsed
        );
        assert_eq!(distinct.len(), q, "{acq}: identical reactors share a point");
        // the batch spans the trade-off: its best member by harvest and its best by final
        // titer are different members, each better than holding course in its objective
        let arg = |k: usize| {
            (0..q)
                .max_by(|&a, &b| {
                    ds[a].recommended[k]
                        .mean
                        .total_cmp(&ds[b].recommended[k].mean)
                })
                .unwrap()
        };
        let (h, t) = (arg(0), arg(1));
        assert_ne!(h, t, "{acq}: one member is best in both objectives");
        assert!(ds[h].recommended[0].mean > ds[h].holding[0].mean);
        assert!(ds[t].recommended[1].mean > ds[t].holding[1].mean);
        let again = p.decide_batch(&model, &reactors).unwrap();
        for (a, b) in ds.iter().zip(&again) {
            assert_eq!(a.setpoints, b.setpoints);
        }
    }
}

/// A forecast the caller already has under the setpoints in force (the daily loop's 28-day
/// forecast) stands in for the final check's holding course: with the seed the policy would
/// draw, the decision is the same bit for bit, with one Monte-Carlo forecast fewer. One that
/// cannot be the holding course (too short, another schedule) is not used.
#[test]
fn a_shared_forecast_of_the_holding_course_decides_as_recomputing_it() {
    let model = trained(3);
    let e = day6_state(&model);
    let current = Control::defaults();
    for acq in [Acquisition::LogEI, Acquisition::QLogEI] {
        let cfg = PolicyConfig {
            acquisition: acq,
            horizon_days: 5,
            raw_samples: 64,
            restarts: 3,
            seed: 5,
            ..PolicyConfig::new(&DS)
        };
        let p = BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg).unwrap();
        let forecast = |days: usize, u: ControlArray<f64>, seed: u64| {
            model
                .forecast(
                    &e,
                    &vec![u; days],
                    &ForecastOptions {
                        method: ForecastMethod::MonteCarlo,
                        paths: p.config().mc_samples,
                        seed,
                        keep_paths: true,
                        threads: 2,
                    },
                )
                .unwrap()
        };
        let sharing = |forecast: &perfusio_hybrid::Forecast, seed: u64| {
            p.decide_sharing(&model, &e, &current, Some(HoldForecast { forecast, seed }))
                .unwrap()
        };
        let own = p.decide(&model, &e, &current).unwrap();
        let shared = sharing(
            &forecast(28, current, p.final_check_seed()),
            p.final_check_seed(),
        );
        assert_eq!(own.setpoints, shared.setpoints, "{acq}");
        assert_eq!(
            own.acquisition_value.to_bits(),
            shared.acquisition_value.to_bits(),
            "{acq}"
        );
        assert_eq!(own.recommended, shared.recommended, "{acq}");
        assert_eq!(own.holding, shared.holding, "{acq}");
        assert_eq!(own.forecast, shared.forecast, "{acq}");
        // not the holding course: too short, or under other setpoints (and another seed,
        // which would change the draws if it were used)
        let mut other = current;
        other[0] = 1.5;
        for unusable in [forecast(2, current, 99), forecast(28, other, 99)] {
            let d = sharing(&unusable, 99);
            assert_eq!(own.setpoints, d.setpoints, "{acq}");
            assert_eq!(own.holding, d.holding, "{acq}");
        }
        // a usable one drawn with another seed: its paths and that seed are used
        let d = sharing(&forecast(28, current, 99), 99);
        assert_ne!(
            own.holding, d.holding,
            "{acq}: other draws, another estimate"
        );
    }
}
