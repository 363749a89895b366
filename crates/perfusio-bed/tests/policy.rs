//! The design policy against the hybrid model and the virtual reactor.

use perfusio_bed::objective::{Harvest, Objective};
use perfusio_bed::{BedPolicy, PolicyConfig};
use perfusio_core::{
    Acquisition, Control, ControlArray, DEFAULT_AMBR250_DESIGN_SPACE as DS, N_SPECIES, Species,
    SpeciesArray,
};
use perfusio_hybrid::{HybridConfig, HybridModel, StateEstimate};
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
    let model = trained(9);
    let p = policy(Acquisition::LogEI, 1);
    let held = closed_loop(&model, None, 10);
    let driven = closed_loop(&model, Some(&p), 10);
    eprintln!("10-day harvest: holding defaults {held:.1} mg/L, policy {driven:.1} mg/L");
    assert!(
        driven > held,
        "policy {driven} does not beat holding course {held}"
    );
}

#[test]
fn same_seed_same_decision_and_bounds_hold() {
    let model = trained(3);
    let tr = model.config().transform;
    let mut s0 = perfusio_mechanistic::initial_state();
    s0[Species::VCD.index()] = 6.0;
    s0[Species::Titer.index()] = 150.0;
    let mut e = StateEstimate::known(6, &s0, &tr);
    for k in 0..N_SPECIES {
        e.cov[k][k] = 0.003;
    }
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
        eprintln!(
            "{acq}: {} ({:?}, {} screened)",
            a.reason, a.elapsed, a.screened
        );
    }
}
