//! Calibration of the mechanism (issue 13): recovery of perturbed parameters, standard
//! errors on noisy runs, identifiability flags, the Jacobian against an independent
//! computation, the online schedule, persistence and typed errors.

use approx::assert_relative_eq;
use perfusio_core::{Control, N_SPECIES, Trajectory};
use perfusio_hybrid::{
    CalibrationConfig, CalibrationData, Calibrator, Dataset, HybridConfig, HybridError,
    HybridModel, InputSource, LogTransform, VANISHING_FACTOR, calibrate::residual_sd,
};
use perfusio_mechanistic::ode::{Dopri5Options, PLANT_ODE_OPTIONS};
use perfusio_mechanistic::{
    CloneKind, KineticParams, NoiseModel, PlantModel, VirtualReactorConfig, doe,
};

/// The prior (clone X) with the five default parameters perturbed by ×1.3 / ×0.8.
fn perturbed() -> KineticParams {
    let mut p = KineticParams::clone_x();
    p.mu_max *= 1.3;
    p.q_glc_max *= 0.8;
    p.q_gln_max *= 1.2;
    p.k_d *= 0.8;
    p.beta_p *= 1.3;
    p
}

/// The first `n` runs of the 27-run design, `days` days, plant `truth`.
fn design(truth: KineticParams, noise: bool, seed: u64, n: usize, days: u32) -> Vec<Trajectory> {
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneX,
        params: Some(truth),
        noise: if noise {
            NoiseModel::default()
        } else {
            NoiseModel::none()
        },
        seed,
        ..VirtualReactorConfig::default()
    };
    doe::simulate_design(&doe::training_design()[..n], &cfg, days).unwrap()
}

fn dataset(runs: &[Trajectory]) -> Dataset {
    let mut d = Dataset::default();
    for t in runs {
        d.add_trajectory(t, None).unwrap();
    }
    d
}

/// `model` written to a model file and read back: the mechanism, the calibration report
/// and the fingerprint are the same.
fn saved_and_loaded(model: &HybridModel) -> HybridModel {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    model.save(&path).unwrap();
    let loaded = HybridModel::load(&path).unwrap();
    assert_eq!(loaded.mechanism_params(), model.mechanism_params());
    assert_eq!(loaded.calibration(), model.calibration());
    assert_eq!(loaded.fingerprint(), model.fingerprint());
    loaded
}

fn with_calibration(c: CalibrationConfig) -> HybridConfig {
    HybridConfig {
        calibrate: Some(c),
        ..HybridConfig::default()
    }
}

#[test]
fn recovers_perturbed_parameters_on_clean_runs_to_2_percent() {
    let truth = perturbed();
    let runs = design(truth, false, 1, 27, 28);
    // clean data: the inputs are exact, so no input noise is carried
    let cal = CalibrationConfig {
        input_noise: false,
        ..CalibrationConfig::default()
    };
    let mut m = HybridModel::with_dataset(with_calibration(cal), dataset(&runs)).unwrap();
    let r = m.calibrate_offline().unwrap().unwrap();
    eprintln!("{}", r.table());
    assert!(r.converged, "{}", r.termination);
    assert_eq!(r.transitions, 27 * 28);
    for p in &r.parameters {
        let want = truth.get(&p.name).unwrap();
        let err = (p.estimate / want - 1.0).abs();
        eprintln!("{}: relative error {:.4} %", p.name, 100.0 * err);
        assert!(
            err < 0.02,
            "{}: {} vs {want} ({:.2} %)",
            p.name,
            p.estimate,
            100.0 * err
        );
        // from the prior: each moved by its perturbation
        assert!((p.prior / want - 1.0).abs() > 0.15);
    }
    assert_eq!(
        m.mechanism_params().mu_max.to_bits(),
        r.parameters[0].estimate.to_bits()
    );
}

/// The acceptance test (about 20 s in a test build). Measured: 9 of 10 seeds, the
/// largest |z| 2.10, 2.74, 1.44, 2.41, 4.46 (seed 5, q_glc_max), 2.23, 1.33, 2.17, 2.75,
/// 2.24; μ_max and K_d sit above the truth on every seed (by 3.0 and 8.6 % on average), and
/// the standard errors cover it only with the residual variance the lactate days near the
/// switch add (s² 2.0–3.8; see the module documentation of `calibrate` for the species
/// weights, which shrink it).
#[test]
fn noisy_runs_estimates_within_3_se_in_at_least_9_of_10_seeds() {
    let truth = perturbed();
    let mut within = 0;
    let mut worst = Vec::new();
    for seed in 1..=10u64 {
        let runs = design(truth, true, seed, 27, 28);
        let mut m = HybridModel::with_dataset(HybridConfig::default(), dataset(&runs)).unwrap();
        let r = m.calibrate_offline().unwrap().unwrap();
        let z: Vec<f64> = r
            .parameters
            .iter()
            .map(|p| (p.estimate - truth.get(&p.name).unwrap()) / p.std_error.unwrap())
            .collect();
        let max = z.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        eprintln!(
            "seed {seed}: z = {:?}, s^2 {:.2}, {} rounds, {:.1} s",
            z.iter().map(|v| format!("{v:+.2}")).collect::<Vec<_>>(),
            r.residual_variance,
            r.rounds,
            r.wall_time.as_secs_f64()
        );
        worst.push(max);
        if max <= 3.0 {
            within += 1;
        }
    }
    eprintln!("seeds with every estimate within 3 SE: {within} of 10");
    assert!(
        within >= 9,
        "only {within} of 10 seeds within 3 SE: {worst:?}"
    );
}

#[test]
fn a_parameter_the_data_cannot_see_is_flagged() {
    // agitation stays at 850 rpm in the design, below the 1050 rpm shear limit: the shear
    // death rate has no effect on any prediction
    let runs = design(KineticParams::clone_x(), true, 2, 9, 14);
    let cal = CalibrationConfig::with_parameters(&["mu_max", "shear_death_per_100rpm"]).unwrap();
    let mut m = HybridModel::with_dataset(with_calibration(cal), dataset(&runs)).unwrap();
    let r = m.calibrate_offline().unwrap().unwrap();
    eprintln!("{}", r.table());
    let shear = &r.parameters[1];
    assert!(shear.not_identifiable, "{shear:?}");
    assert!(shear.std_error.is_none());
    assert!(
        shear
            .reason
            .as_deref()
            .unwrap()
            .contains("do not constrain")
    );
    let mu = &r.parameters[0];
    assert!(!mu.not_identifiable, "{mu:?}");
    assert!(mu.std_error.unwrap() < 0.05 * mu.estimate);
    assert_eq!(r.not_identifiable(), ["shear_death_per_100rpm"]);
}

#[test]
fn two_correlated_parameters_are_flagged_naming_each_other() {
    // at constant controls the growth rate settles, and the growth-coupled glucose uptake
    // (q_glc,max) and the maintenance uptake (m_glc) can hardly be told apart
    let mut d = Dataset::default();
    let cfg = VirtualReactorConfig {
        noise: NoiseModel::default(),
        seed: 9,
        ..VirtualReactorConfig::default()
    };
    let runs = doe::simulate_design(&[Control::defaults()], &cfg, 28).unwrap();
    d.add_trajectory(&runs[0], None).unwrap();
    let cal = CalibrationConfig::with_parameters(&["q_glc_max", "m_glc"]).unwrap();
    let mut m = HybridModel::with_dataset(with_calibration(cal), d).unwrap();
    let r = m.calibrate_offline().unwrap().unwrap();
    eprintln!("{}", r.table());
    let c = r.correlation[0][1].unwrap();
    assert!(c.abs() > 0.95, "correlation {c}");
    for (p, other) in r.parameters.iter().zip(["m_glc", "q_glc_max"]) {
        assert!(p.not_identifiable, "{p:?}");
        assert_eq!(p.most_correlated.as_ref().unwrap().0, other);
        let why = p.reason.as_deref().unwrap();
        assert!(
            why.starts_with("correlation -0.99") && why.ends_with(other),
            "{why}"
        );
    }
}

#[test]
fn jacobian_matches_an_independent_central_difference_computation() {
    let truth = perturbed();
    let runs = design(truth, true, 4, 4, 10);
    let model_cfg = HybridConfig::default();
    let cal_cfg = CalibrationConfig {
        input_noise: false,
        ..CalibrationConfig::default()
    };
    let cal = Calibrator::new(&model_cfg, &cal_cfg).unwrap();
    let mut m = HybridModel::with_dataset(model_cfg.clone(), dataset(&runs)).unwrap();
    m.estimate_states().unwrap();
    let data = CalibrationData::from_dataset(
        m.dataset(),
        &model_cfg.transform,
        &model_cfg.observation_cv,
        InputSource::Measured,
    );
    let at = KineticParams::clone_x();
    let jac = cal.jacobian(&data, &at).unwrap();
    assert_eq!(jac.len(), data.residuals());

    // independent: the plant model itself with a much tighter integrator, central
    // differences in ln p, residuals built here from the dataset
    let tr = LogTransform::default();
    let cv = model_cfg.observation_cv;
    let residuals = |p: &KineticParams| -> Vec<f64> {
        let plant = PlantModel::new(*p).with_options(Dopri5Options {
            rtol: 1e-11,
            atol: 1e-13,
            ..PLANT_ODE_OPTIONS
        });
        let mut out = Vec::new();
        for run in m.dataset().runs() {
            for (&day, rec) in &run.days {
                let (Some(next), Some(u)) = (run.days.get(&(day + 1)), rec.applied) else {
                    continue;
                };
                let est = rec.estimate.unwrap();
                let s: [f64; N_SPECIES] =
                    std::array::from_fn(|k| rec.measured[k].unwrap_or(est[k]));
                // the model's coordinates: the state goes through z and back
                let s = tr.to_species(&tr.to_z(&s));
                let y = plant.step(&s, &u, 24.0).unwrap();
                for k in 0..N_SPECIES {
                    if let Some(obs) = next.measured[k] {
                        out.push((tr.z(k, obs) - tr.z(k, y[k])) / residual_sd(&tr, k, obs, cv[k]));
                    }
                }
            }
        }
        out
    };
    let names = ["mu_max", "q_glc_max", "q_gln_max", "k_d", "beta_p"];
    let h: f64 = 1e-3;
    let mut checked = 0;
    for (j, n) in names.iter().enumerate() {
        let (mut pp, mut pm) = (at, at);
        pp.set(n, at.get(n).unwrap() * h.exp()).unwrap();
        pm.set(n, at.get(n).unwrap() * (-h).exp()).unwrap();
        let (rp, rm) = (residuals(&pp), residuals(&pm));
        assert_eq!(rp.len(), jac.len());
        let scale = (0..jac.len())
            .map(|i| ((rp[i] - rm[i]) / (2.0 * h)).abs())
            .fold(0.0, f64::max);
        for i in 0..jac.len() {
            let want = (rp[i] - rm[i]) / (2.0 * h);
            let got = jac[i][j];
            assert!(
                (got - want).abs() <= 0.02 * want.abs() + 1e-3 * scale,
                "d r{i} / d ln {n}: {got} vs {want} (column scale {scale})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * data.residuals());
}

#[test]
fn calibrated_parameters_travel_in_the_model_file() {
    let runs: Vec<_> = design(perturbed(), true, 6, 8, 14)
        .into_iter()
        .map(|t| (t, None))
        .collect();
    let (model, report) = HybridModel::fit_runs(HybridConfig::default(), &runs).unwrap();
    let cal = report
        .calibration
        .as_ref()
        .expect("the offline fit calibrates by default");
    assert!(model.is_calibrated());
    assert_eq!(report.calibrated.len(), 5);
    for p in &cal.parameters {
        assert_eq!(report.calibrated[&p.name].to_bits(), p.estimate.to_bits());
    }
    // the mechanism moved from the prior towards the truth
    assert!(model.mechanism_params().mu_max > 1.1 * KineticParams::clone_x().mu_max);

    let loaded = saved_and_loaded(&model);
    assert_eq!(loaded.calibrated_values(), model.calibrated_values());
    let s = [8.0, 96.0, 2.5, 1.5, 1.2, 12.0, 2.5, 0.3, 200.0];
    let a = model
        .predict_next_state(&s, &Control::defaults(), 5)
        .unwrap();
    let b = loaded
        .predict_next_state(&s, &Control::defaults(), 5)
        .unwrap();
    for k in 0..N_SPECIES {
        assert_eq!(a.species[k].mean.to_bits(), b.species[k].mean.to_bits());
        assert_eq!(a.species[k].sd.to_bits(), b.species[k].sd.to_bits());
    }
    // the uncalibrated model differs: calibration is part of the fingerprint
    let off = HybridConfig {
        calibrate: None,
        ..HybridConfig::default()
    };
    let (plain, rep) = HybridModel::fit_runs(off, &runs).unwrap();
    assert!(rep.calibration.is_none() && rep.calibrated.is_empty());
    assert_ne!(plain.fingerprint(), model.fingerprint());
}

#[test]
fn online_recalibration_runs_every_k_retrains_warm_started() {
    let run = &design(perturbed(), true, 8, 1, 20)[0];
    let cal = CalibrationConfig {
        every_retrains: 3,
        ..CalibrationConfig::default()
    };
    let mut m = HybridModel::new(with_calibration(cal)).unwrap();
    let mut ran = Vec::new();
    for row in run.rows() {
        m.record_day("r1", None, row.day, row.species).unwrap();
        m.record_applied("r1", row.day, row.controls).unwrap();
        if row.day < 3 {
            continue;
        }
        // a cold start keeps its prior online; the offline fit of day 10 calibrates, and
        // the warm retrains after it re-calibrate on their schedule
        let rep = match m.retrain(row.day != 10) {
            Ok(r) => r,
            Err(HybridError::TooFewTransitions { .. }) => continue,
            Err(e) => panic!("{e}"),
        };
        if let Some(c) = &rep.calibration {
            ran.push((row.day, c.warm_start, c.transitions));
        } else if m.is_calibrated() {
            // the parameters in force are named in every report
            assert_eq!(rep.calibrated.len(), 5);
        }
    }
    eprintln!("calibrations (day, warm, transitions): {ran:?}");
    // first offline with 10 transitions (day 10), then every 3 warm retrains, warm-started
    assert_eq!(ran.first().map(|r| (r.0, r.1)), Some((10, false)));
    let days: Vec<u32> = ran.iter().map(|r| r.0).collect();
    assert_eq!(days, [10, 13, 16, 19]);
    assert!(ran[1..].iter().all(|r| r.1));
}

#[test]
fn a_cold_start_calibrates_online_from_the_prior_when_asked() {
    let run = &design(perturbed(), true, 8, 1, 20)[0];
    let calibrations = |online_from_prior: bool| {
        let cal = CalibrationConfig {
            every_retrains: 3,
            online_from_prior,
            ..CalibrationConfig::default()
        };
        let mut m = HybridModel::new(with_calibration(cal)).unwrap();
        let mut ran = Vec::new();
        let mut first_mu = None;
        for row in run.rows() {
            m.record_day("r1", None, row.day, row.species).unwrap();
            m.record_applied("r1", row.day, row.controls).unwrap();
            if row.day < 3 {
                continue;
            }
            // every retrain warm: the twin's schedule, no offline fit
            let rep = match m.retrain(true) {
                Ok(r) => r,
                Err(HybridError::TooFewTransitions { .. }) => continue,
                Err(e) => panic!("{e}"),
            };
            if let Some(c) = &rep.calibration {
                ran.push((row.day, c.warm_start, c.transitions));
                first_mu.get_or_insert(c.parameters[0].estimate);
            }
        }
        (ran, first_mu, *m.mechanism_params())
    };
    // off (the default): the prior stays
    let (ran, _, params) = calibrations(false);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(params, KineticParams::clone_x());
    // on: the first retrain with 10 transitions (day 10) calibrates from the prior, then
    // every 3 warm retrains, warm-started
    let (ran, first_mu, params) = calibrations(true);
    eprintln!("calibrations (day, warm, transitions): {ran:?}");
    let days: Vec<u32> = ran.iter().map(|r| r.0).collect();
    assert_eq!(days, [10, 13, 16, 19]);
    assert_eq!((ran[0].1, ran[0].2), (false, 10));
    assert!(ran[1..].iter().all(|r| r.1));
    // the perturbed plant grows 30 % faster than the prior: the first estimate moves
    // μ_max most of the way there, and the parameters in force are the last estimate's
    let mu0 = KineticParams::clone_x().mu_max;
    let mu = first_mu.unwrap();
    eprintln!(
        "mu_max: first {mu:e}, last {:e}, true {:e}",
        params.mu_max,
        perturbed().mu_max
    );
    assert!(mu > 1.15 * mu0 && mu < 1.45 * mu0, "{mu} vs prior {mu0}");
    assert!(
        (params.mu_max / perturbed().mu_max - 1.0).abs() < 0.1,
        "{params:?}"
    );
}

#[test]
fn typed_errors_for_unknown_names_empty_data_and_bad_settings() {
    let e = CalibrationConfig::with_parameters(&["mu_max", "growth"]).unwrap_err();
    match &e {
        HybridError::UnknownParameter { name, valid } => {
            assert_eq!(name, "growth");
            assert!(
                valid.starts_with("mu_max, k_glc, k_gln, q_glc_max"),
                "{valid}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(
        e.to_string()
            .contains("unknown kinetic parameter \"growth\"; valid names: mu_max")
    );
    let e = CalibrationConfig::with_parameters(&["k_d", "K_D"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid hybrid-model configuration: calibration parameter k_d is named twice"
    );
    let none: [&str; 0] = [];
    assert!(CalibrationConfig::with_parameters(&none).is_err());
    // empty data: a typed error, no panic
    let cfg = HybridConfig::default();
    let cal = Calibrator::new(&cfg, &CalibrationConfig::default()).unwrap();
    let empty = CalibrationData::from_dataset(
        &Dataset::default(),
        &cfg.transform,
        &cfg.observation_cv,
        InputSource::Measured,
    );
    assert!(matches!(
        cal.run(&empty, &cfg.prior, false),
        Err(HybridError::TooFewTransitions { got: 0, need: 10 })
    ));
    let mut m = HybridModel::new(cfg.clone()).unwrap();
    assert!(m.calibrate_offline().unwrap().is_none());
    // a prior value of 0 cannot be log-parametrised
    let mut prior = KineticParams::clone_x();
    prior.k_t = 0.0;
    let e = Calibrator::new(
        &HybridConfig::with_prior(prior, "no k_t"),
        &CalibrationConfig::with_parameters(&["k_t"]).unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("k_t is 0 in the prior"), "{e}");
    // bad settings name the field
    let bad = CalibrationConfig {
        lower_factor: 2.0,
        ..CalibrationConfig::default()
    };
    assert!(
        bad.check()
            .unwrap_err()
            .to_string()
            .contains("lower_factor 2")
    );
    assert!(HybridModel::new(with_calibration(bad)).is_err());
    // the floor of a parameter that may be zero lies in (0, lower_factor]
    for v in [0.0, 0.5, f64::NAN] {
        let bad = CalibrationConfig {
            vanishing_factor: v,
            ..CalibrationConfig::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("vanishing_factor"), "{v}: {e}");
    }
}

#[test]
fn a_pathway_the_cell_line_lacks_calibrates_down_to_its_vanishing_floor() {
    // clone Y never consumes lactate; the prior (clone X) does whenever glucose is below
    // 2 g/L, which most days of the design are
    let runs = design(KineticParams::clone_y(), false, 3, 9, 28);
    let x = KineticParams::clone_x();
    // (weighted SSEs of two fits are compared below: both weigh by the noise model alone)
    let cal = CalibrationConfig {
        input_noise: false,
        species_weights: false,
        ..CalibrationConfig::with_parameters(&["mu_max", "lac_consump_rate"]).unwrap()
    };
    let fit = |c: &CalibrationConfig| {
        let mut m = HybridModel::with_dataset(with_calibration(c.clone()), dataset(&runs)).unwrap();
        let r = m.calibrate_offline().unwrap().unwrap();
        eprintln!("{}", r.table());
        r
    };
    let r = fit(&cal);
    let (mu, lac) = (&r.parameters[0], &r.parameters[1]);
    // mu_max must stay positive: it keeps the 0.2 × prior floor; the lactate uptake
    // rate may vanish: its floor is VANISHING_FACTOR × prior
    assert_relative_eq!(mu.lower, 0.2 * x.mu_max, max_relative = 1e-12);
    assert_relative_eq!(
        lac.lower,
        VANISHING_FACTOR * x.lac_consump_rate,
        max_relative = 1e-12
    );
    assert!(lac.at_bound, "{lac:?}");
    assert_relative_eq!(lac.estimate, lac.lower, max_relative = 1e-9);
    // with the pathway gone, the growth rate is clone Y's (clone X's value) to 2 %
    assert!((mu.estimate / x.mu_max - 1.0).abs() < 0.02, "{mu:?}");
    // the same fit with the old floor stops at a fifth of the prior's uptake rate
    let old = fit(&CalibrationConfig {
        vanishing_factor: cal.lower_factor,
        ..cal.clone()
    });
    let lac_old = &old.parameters[1];
    assert!(lac_old.at_bound, "{lac_old:?}");
    assert_relative_eq!(
        lac_old.estimate,
        0.2 * x.lac_consump_rate,
        max_relative = 1e-9
    );
    assert!(old.sse > r.sse * 2.0, "{} vs {}", old.sse, r.sse);
}

#[test]
fn a_species_the_mechanism_cannot_describe_loses_its_weight() {
    // clone Y's lactate under clone X's lactate switch: the five default parameters are the
    // same in both clones, so the right estimates are clone X's values (the pathway test,
    // which would turn the switch off, is left out here)
    let runs = design(KineticParams::clone_y(), true, 5, 27, 28);
    let x = KineticParams::clone_x();
    let fit = |species_weights: bool| {
        let cal = CalibrationConfig {
            species_weights,
            pathways: Vec::new(),
            ..CalibrationConfig::default()
        };
        let mut m = HybridModel::with_dataset(with_calibration(cal), dataset(&runs)).unwrap();
        let r = m.calibrate_offline().unwrap().unwrap();
        eprintln!("species_weights {species_weights}\n{}", r.table());
        r
    };
    let weighted = fit(true);
    let plain = fit(false);
    let lac = perfusio_core::Species::Lac.index();
    // the lactate misfit is thousands of times its noise; the other species fit within
    // about their noise (factors measured 1.02-1.08 on this seed)
    assert!(
        weighted.species_factors[lac] > 100.0,
        "{:?}",
        weighted.species_factors
    );
    for (k, f) in weighted.species_factors.iter().enumerate() {
        if k != lac {
            assert!(*f < 1.5, "species {k}: {f}");
        }
    }
    assert!(
        plain
            .species_factors
            .iter()
            .all(|f| f.to_bits() == 1f64.to_bits())
    );
    // what is left is consistent with the noise model (s² measured 0.85), not 250 times it
    assert!(
        weighted.residual_variance < 2.0,
        "{}",
        weighted.residual_variance
    );
    assert!(
        plain.residual_variance > 50.0,
        "{}",
        plain.residual_variance
    );
    let err = |r: &perfusio_hybrid::CalibrationReport, name: &str| {
        let p = r.parameters.iter().find(|p| p.name == name).unwrap();
        (p.estimate / x.get(name).unwrap() - 1.0).abs()
    };
    // measured (weighted | plain): mu_max 3.59 | 3.63 %, q_glc_max 0.35 | 1.76 %,
    // q_gln_max 0.43 | 1.59 %, k_d 13.5 | 44.0 %, beta_p 0.43 | 1.08 %
    for name in ["mu_max", "q_glc_max", "q_gln_max", "k_d", "beta_p"] {
        let (w, p) = (err(&weighted, name), err(&plain, name));
        eprintln!("{name}: {:.2} % | {:.2} %", 100.0 * w, 100.0 * p);
        assert!(w <= p + 1e-3, "{name}: {w} vs {p}");
    }
    for name in ["q_glc_max", "q_gln_max", "beta_p"] {
        assert!(err(&weighted, name) < 0.01, "{name}");
    }
    assert!(err(&weighted, "k_d") < 0.5 * err(&plain, "k_d"));
}

#[test]
fn simex_removes_most_of_the_bias_the_noisy_inputs_leave() {
    // the five default parameters of a perturbed clone X on noisy runs: the naive estimates
    // of mu_max and k_d sit above the truth on every seed (noisy VCD inputs); SIMEX corrects
    let truth = perturbed();
    let names = ["mu_max", "q_glc_max", "q_gln_max", "k_d", "beta_p"];
    let (mut naive, mut corrected) = ([0.0; 5], [0.0; 5]);
    let seeds = 1..=3u64;
    let n = seeds.clone().count() as f64;
    for seed in seeds {
        let runs = design(truth, true, seed, 27, 28);
        let cal = CalibrationConfig {
            simex_replicates: 4,
            ..CalibrationConfig::default()
        };
        let mut m = HybridModel::with_dataset(with_calibration(cal), dataset(&runs)).unwrap();
        let r = m.calibrate_offline().unwrap().unwrap();
        eprintln!("seed {seed}\n{}", r.table());
        let x = r.simex.as_ref().expect("the SIMEX report");
        assert!(x.converged);
        for (j, name) in names.iter().enumerate() {
            let want = truth.get(name).unwrap();
            naive[j] += 100.0 * (x.naive[j] / want - 1.0) / n;
            corrected[j] += 100.0 * (r.parameters[j].estimate / want - 1.0) / n;
        }
        // the model's mechanism is the corrected one
        assert_eq!(
            m.mechanism_params().mu_max.to_bits(),
            r.parameters[0].estimate.to_bits()
        );
    }
    eprintln!("mean error %, naive {naive:.2?}, SIMEX {corrected:.2?}");
    // measured (mean over seeds 1-3, naive | SIMEX): mu_max +2.75 | +0.35 %, q_glc_max
    // -0.75 | -0.37 %, q_gln_max -0.28 | -0.04 %, k_d +7.20 | -4.71 %, beta_p +0.34 | +0.66 %
    // (with 8 refits per level k_d -2.97 %: the Monte Carlo error of the refits is
    // amplified by the extrapolation)
    assert!(naive[0] > 1.5 && naive[3] > 5.0, "{naive:?}");
    assert!(corrected[0].abs() < 1.0, "{corrected:?}");
    assert!(corrected[3].abs() < naive[3].abs(), "{corrected:?}");
    for j in [1, 2, 4] {
        assert!(corrected[j].abs() < 1.0, "{}: {corrected:?}", names[j]);
    }
}

/// The profile deviance of a calibration, computed independently of the solver: with the
/// input noise off the residual sds do not depend on the parameters.
fn deviance_at(cal: &Calibrator, data: &CalibrationData, params: &KineticParams) -> f64 {
    let (sd, _) = cal.residual_sd(data, params).unwrap();
    let r = cal.residuals(data, params).unwrap();
    let n = r.len() as f64;
    let sse: f64 = r.iter().map(|v| v * v).sum();
    n * (sse / n).ln() + 2.0 * sd.iter().map(|v| v.ln()).sum::<f64>()
}

#[test]
fn the_pathway_test_turns_off_a_switch_the_data_reject_and_keeps_one_they_support() {
    let x = KineticParams::clone_x();
    let y = KineticParams::clone_y();
    let y_runs = design(y, true, 4, 9, 28);
    let x_runs = design(x, true, 4, 9, 28);
    let cal_cfg = CalibrationConfig {
        input_noise: false,
        ..CalibrationConfig::default()
    };
    assert_eq!(cal_cfg.pathways, ["consumes_lactate"]);
    let check = |runs: &[Trajectory], prior: KineticParams| {
        let model = HybridConfig {
            prior,
            ..with_calibration(cal_cfg.clone())
        };
        let cal = Calibrator::new(&model, &cal_cfg).unwrap();
        let data = CalibrationData::from_dataset(
            &dataset(runs),
            &model.transform,
            &model.observation_cv,
            InputSource::Measured,
        );
        let c = cal.run_checked(&data, &prior, false).unwrap();
        eprintln!("{}", c.report.table());
        // the deviance the test compares is the formula's at the estimate
        let d = c.report.deviance.unwrap();
        assert_relative_eq!(d, deviance_at(&cal, &data, &c.params), max_relative = 1e-9);
        assert_eq!(c.report.pathways.len(), 1);
        let t = c.report.pathways[0].clone();
        assert_eq!(t.name, "consumes_lactate");
        assert_eq!(t.start, prior.consumes_lactate);
        assert_relative_eq!(
            t.penalty,
            (data.residuals() as f64).ln(),
            max_relative = 1e-12
        );
        // the kept calibration's deviance is the smaller by the rule
        let kept = if t.chosen == t.start {
            t.deviance_start
        } else {
            t.deviance_flipped.unwrap()
        };
        assert_eq!(kept.to_bits(), d.to_bits());
        assert_eq!(c.params.consumes_lactate, t.chosen);
        // a warm start keeps the switch it starts from and tests nothing
        let warm = cal.run_checked(&data, &c.params, true).unwrap();
        assert!(warm.report.pathways.is_empty());
        assert_eq!(warm.params.consumes_lactate, t.chosen);
        (t, c)
    };
    // clone Y's runs, clone X's prior: lactate uptake goes, and the five rates come out
    // within 3 standard errors of clone X's values, which clone Y shares (measured: μ_max
    // +3.7 %, K_d +10.1 %, the others within 0.2 %; K_d's standard error 9.1 %)
    let (t, c) = check(&y_runs, x);
    assert!(!t.chosen);
    assert!(
        t.deviance_flipped.unwrap() + t.penalty < t.deviance_start,
        "{t:?}"
    );
    for p in &c.report.parameters {
        let truth = x.get(&p.name).unwrap();
        let z = (p.estimate - truth) / p.std_error.unwrap();
        eprintln!(
            "{}: {:+.2} %, z {z:+.2}",
            p.name,
            100.0 * (p.estimate / truth - 1.0)
        );
        assert!(z.abs() < 3.0, "{}: z {z}", p.name);
    }
    // the same runs under clone Y's prior: kept off
    let (t, _) = check(&y_runs, y);
    assert!(!t.start && !t.chosen, "{t:?}");
    // clone X's runs: kept on under clone X's prior, turned on under clone Y's
    let (t, _) = check(&x_runs, x);
    assert!(t.start && t.chosen, "{t:?}");
    let (t, _) = check(&x_runs, y);
    assert!(!t.start && t.chosen, "{t:?}");
}

#[test]
fn a_flipped_switch_travels_in_the_model_file_and_the_fit_report() {
    let runs: Vec<_> = design(KineticParams::clone_y(), true, 6, 9, 28)
        .into_iter()
        .map(|t| (t, None))
        .collect();
    let (model, report) = HybridModel::fit_runs(HybridConfig::default(), &runs).unwrap();
    let cal = report.calibration.as_ref().unwrap();
    assert_eq!(cal.pathways.len(), 1);
    assert!(!cal.pathways[0].chosen);
    assert!(!model.mechanism_params().consumes_lactate);
    assert_eq!(
        report.pathways.get("consumes_lactate").copied(),
        Some(false)
    );
    let loaded = saved_and_loaded(&model);
    assert_eq!(loaded.calibrated_switches(), report.pathways);
    // an explicit list without a switch tests none
    let named = CalibrationConfig::with_parameters(&["mu_max", "k_d"]).unwrap();
    assert!(named.pathways.is_empty());
    let (m2, r2) = HybridModel::fit_runs(
        HybridConfig {
            calibrate: Some(named),
            ..HybridConfig::default()
        },
        &runs,
    )
    .unwrap();
    assert!(m2.mechanism_params().consumes_lactate);
    assert!(r2.calibration.unwrap().pathways.is_empty() && r2.pathways.is_empty());
}

#[test]
fn pathway_names_are_checked() {
    let c = CalibrationConfig::with_parameters(&["mu_max", "Consumes_Lactate"]).unwrap();
    assert_eq!(c.pathways, ["Consumes_Lactate"]);
    assert_eq!(c.canonical_pathways().unwrap(), ["consumes_lactate"]);
    let e = CalibrationConfig::with_parameters(&["consumes_lactate"]).unwrap_err();
    assert!(e.to_string().contains("at least one numeric"), "{e}");
    let bad = CalibrationConfig {
        pathways: vec!["mu_max".into()],
        ..CalibrationConfig::default()
    };
    assert!(
        bad.check()
            .unwrap_err()
            .to_string()
            .contains("not a pathway switch")
    );
    let twice = CalibrationConfig {
        pathways: vec!["consumes_lactate".into(), "CONSUMES_LACTATE".into()],
        ..CalibrationConfig::default()
    };
    assert!(
        twice
            .check()
            .unwrap_err()
            .to_string()
            .contains("named twice")
    );
    let misplaced = CalibrationConfig {
        parameters: vec!["consumes_lactate".into()],
        ..CalibrationConfig::default()
    };
    assert!(
        misplaced
            .check()
            .unwrap_err()
            .to_string()
            .contains("pathway switch")
    );
    // configurations written before the setting read as testing none
    let mut v = serde_json::to_value(CalibrationConfig::default()).unwrap();
    v.as_object_mut().unwrap().remove("pathways");
    let old: CalibrationConfig = serde_json::from_value(v).unwrap();
    assert!(old.pathways.is_empty());
}
