//! Simulating designs of experiments into training trajectories.

use perfusio_core::{Control, Species};
use perfusio_mechanistic::{NoiseModel, VirtualReactorConfig, doe};

#[test]
fn training_design_gives_27_noisy_28_day_trajectories() {
    let runs = doe::training_design();
    let config = VirtualReactorConfig {
        seed: 5,
        ..VirtualReactorConfig::default()
    };
    let trajs = doe::simulate_design(&runs, &config, 28).unwrap();
    assert_eq!(trajs.len(), 27);
    for (t, c) in trajs.iter().zip(&runs) {
        assert_eq!(t.len(), 29);
        assert_eq!(t.days(), (0..=28).collect::<Vec<_>>());
        assert!(
            t.rows()
                .iter()
                .all(|r| r.controls.map(f64::to_bits) == c.map(f64::to_bits))
        );
        assert_eq!(t.clone.as_deref(), Some("CloneX"));
    }
    // about 5 % of the values are missing
    let n_missing: usize = trajs
        .iter()
        .flat_map(|t| t.rows())
        .map(|r| r.species.iter().filter(|v| v.is_none()).count())
        .sum();
    let rate = n_missing as f64 / (27.0 * 29.0 * 9.0);
    assert!((0.035..0.065).contains(&rate), "{rate}");
    // seeded: the same call gives the same data
    assert_eq!(trajs, doe::simulate_design(&runs, &config, 28).unwrap());
}

#[test]
fn every_factor_changes_the_clean_trajectory() {
    // 24 distinct edge runs + 3 identical centre runs: 25 distinct clean trajectories
    let runs = doe::training_design();
    let config = VirtualReactorConfig {
        noise: NoiseModel::none(),
        ..VirtualReactorConfig::default()
    };
    let trajs = doe::simulate_design(&runs, &config, 14).unwrap();
    let mut keys: Vec<Vec<u64>> = trajs
        .iter()
        .map(|t| {
            t.rows()
                .iter()
                .flat_map(|r| r.species.iter().map(|v| v.unwrap().to_bits()))
                .collect()
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 25);
    // the glucose factor alone changes day-14 glucose (runs differing only in glucose)
    let find = |g: f64| {
        trajs
            .iter()
            .zip(&runs)
            .find(|(_, c)| {
                (c[Control::GlucoseSetpoint.index()] - g).abs() < 1e-9
                    && (c[Control::PerfusionRate.index()] - 1.5).abs() < 1e-9
            })
            .map(|(t, _)| t.species(Species::Glc)[14].unwrap())
            .unwrap()
    };
    assert!(find(6.0) > find(4.0));
}

#[test]
fn lhs_design_over_the_design_space_is_valid() {
    let ds = perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
    let d = doe::latin_hypercube(12, 6, 3, 200).unwrap();
    let factors: Vec<doe::Factor> = ds
        .controls()
        .iter()
        .map(|s| doe::Factor::from(*s))
        .collect();
    let runs = doe::design_to_controls(&d, &factors, &Control::defaults()).unwrap();
    for r in &runs {
        assert!(ds.validate(r).unwrap().is_empty(), "{r:?}");
    }
    let trajs = doe::simulate_design(&runs, &VirtualReactorConfig::default(), 7).unwrap();
    assert_eq!(trajs.len(), 12);
    // an invalid run is reported, naming the control
    let mut bad = runs.clone();
    bad[3][Control::Agitation.index()] = 1100.0;
    let e = doe::simulate_design(&bad, &VirtualReactorConfig::default(), 7).unwrap_err();
    assert!(
        e.to_string().contains("agitation = 1100 rpm is above 1050"),
        "{e}"
    );
}
