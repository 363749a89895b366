//! The state filter removes measurement noise.

use perfusio_core::{N_SPECIES, Species};
use perfusio_hybrid::{HybridConfig, HybridModel, MATCH_ROUNDS, MATCHED_SD_BOUNDS};
use perfusio_mechanistic::{CloneKind, KineticParams, NoiseModel};

use crate::common::{defaults, design_runs, run, unlabelled_design};

/// Over 12 seeds of a 21-day run (noise on, 5 % missing), the filtered state is closer to
/// the clean truth than the raw sample, for every species that has noise.
#[test]
fn filtered_state_is_closer_to_the_truth_than_the_raw_sample() {
    let model = HybridModel::new(HybridConfig::default()).unwrap();
    let tr = model.config().transform;
    let mut se_raw = [0.0; N_SPECIES];
    let mut se_filt = [0.0; N_SPECIES];
    let mut n = [0usize; N_SPECIES];
    for seed in 0..12 {
        let r = run(
            KineticParams::clone_x(),
            defaults(),
            21,
            100 + seed,
            NoiseModel::default(),
        );
        let est = model.filter_sequence(0, &r.measured, &r.controls).unwrap();
        for (day, e) in est.iter().enumerate().skip(1) {
            let f = e.mean_species(&tr);
            for k in 0..N_SPECIES {
                if let Some(y) = r.measured[day][k] {
                    let t = r.truth[day][k];
                    se_raw[k] += (y - t).powi(2);
                    se_filt[k] += (f[k] - t).powi(2);
                    n[k] += 1;
                }
            }
        }
    }
    for s in Species::ALL {
        let k = s.index();
        if s == Species::Pyr {
            // no pyruvate in the medium: truth and samples are exactly 0 (no noise)
            continue;
        }
        let raw = (se_raw[k] / n[k] as f64).sqrt();
        let filt = (se_filt[k] / n[k] as f64).sqrt();
        eprintln!(
            "{s}: RMSE raw {raw:.4}, filtered {filt:.4} ({} samples)",
            n[k]
        );
        assert!(
            filt < raw,
            "{s}: filtered {filt} is not closer than raw {raw}"
        );
    }
}

/// A species that is never measured is still estimated, with an sd that reflects it.
#[test]
fn missing_species_are_estimated_with_their_uncertainty() {
    let model = HybridModel::new(HybridConfig::default()).unwrap();
    let tr = model.config().transform;
    let mut r = run(
        KineticParams::clone_x(),
        defaults(),
        10,
        3,
        NoiseModel::default(),
    );
    for m in &mut r.measured {
        m[Species::Amm.index()] = None;
    }
    let est = model.filter_sequence(0, &r.measured, &r.controls).unwrap();
    let last = &est[10];
    let amm = last.mean_species(&tr)[Species::Amm.index()];
    let truth = r.truth[10][Species::Amm.index()];
    let sd = last.sd_z()[Species::Amm.index()];
    assert!(amm > 0.0 && amm.is_finite());
    assert!(!last.measured[Species::Amm.index()]);
    // the mechanism is the truth here: the estimate is within 3 sd (in z) of the truth
    assert!(
        (tr.z(6, amm) - tr.z(6, truth)).abs() < 3.0 * sd,
        "{amm} vs {truth}, sd {sd}"
    );
    assert!(
        sd > last.sd_z()[Species::VCD.index()],
        "unmeasured is less certain"
    );
}

/// Covariance matching on nine design runs of clone Y with clone X's mechanism: where the
/// mechanism is right (everything but lactate, which clone X consumes below the glucose
/// switch and clone Y does not) the one-day sd goes to its floor; lactate's, which the
/// mechanism drives to 0 while the plant holds ~50 mmol/L, goes to its ceiling.
#[test]
fn matched_mechanism_sd_is_small_where_the_mechanism_is_right_and_large_where_it_is_not() {
    let runs = unlabelled_design(9, 21, CloneKind::CloneY, 11);
    let mut model =
        HybridModel::new(HybridConfig::with_prior(KineticParams::clone_x(), "CloneX")).unwrap();
    model.add_runs(&runs).unwrap();
    let m = model.match_mechanism_sd().unwrap();
    eprintln!("{m:?}");
    assert!(m.converged && m.rounds < MATCH_ROUNDS, "{m:?}");
    assert_eq!(
        model.mechanism_sd().map(f64::to_bits),
        m.sd.map(f64::to_bits)
    );
    let (lo, hi) = MATCHED_SD_BOUNDS;
    for s in [
        Species::VCD,
        Species::Via,
        Species::Glc,
        Species::Gln,
        Species::Titer,
    ] {
        let sd = m.sd[s.index()];
        assert!(sd <= 1.5 * lo, "{s}: matched sd {sd}");
    }
    let lac = m.sd[Species::Lac.index()];
    assert!(lac > 0.5 * hi, "lactate: matched sd {lac}");
    assert!(m.innovations[Species::VCD.index()] > 150);

    // at the ceiling the mechanism misses by more than even a ±1 sd step allows
    let ratios = innovation_ratios(&model, &runs);
    assert!(ratios[Species::Lac.index()] > 1.0, "{ratios:?}");
}

/// A mechanism that is a little off (clone X with a 15 % faster growth than the plant's)
/// gets interior sds. At VCD's, the species the growth rate acts on directly, the filter's
/// innovations have the variance the filter predicts for them, recomputed here with the
/// public filter steps, independently of the matching's own sums. (Glucose's bracket
/// closes where the excess jumps rather than crosses zero: near depletion the innovations
/// in log units are large and the innovation gate re-weights later days as `q` moves.)
#[test]
fn at_the_matched_sd_the_innovations_have_their_predicted_variance() {
    let mut prior = KineticParams::clone_x();
    prior.mu_max *= 1.15;
    let runs = unlabelled_design(9, 21, CloneKind::CloneX, 12);
    let mut model = HybridModel::new(HybridConfig::with_prior(prior, "fast")).unwrap();
    model.add_runs(&runs).unwrap();
    let m = model.match_mechanism_sd().unwrap();
    eprintln!("{m:?}");
    assert!(m.converged && m.rounds <= 8, "{m:?}");
    let ratios = innovation_ratios(&model, &runs);
    for s in Species::ALL {
        let k = s.index();
        eprintln!(
            "{s}: sd {:.4}, mean innovation² / predicted {:.3}",
            m.sd[k], ratios[k]
        );
    }
    let (lo, _) = MATCHED_SD_BOUNDS;
    let vcd = Species::VCD.index();
    assert!(m.sd[vcd] > 1.2 * lo, "{m:?}");
    assert!(
        (ratios[vcd] - 1.0).abs() < 0.05,
        "VCD: ratio {}",
        ratios[vcd]
    );
    // the viability the mechanism gets right sits at the floor, its innovations smaller
    // than even the floor's prediction
    let via = Species::Via.index();
    assert!(
        m.sd[via] < 1.05 * lo && ratios[via] < 1.0,
        "{m:?} {ratios:?}"
    );
}

/// Per species, the mean squared innovation of the model's filter over `runs` divided by
/// the mean variance the filter predicted for it (`P⁻ + r²`).
fn innovation_ratios(
    model: &HybridModel,
    runs: &[(perfusio_core::Trajectory, Option<String>)],
) -> [f64; N_SPECIES] {
    let tr = model.config().transform;
    let mut nu2 = [0.0; N_SPECIES];
    let mut pred = [0.0; N_SPECIES];
    for (t, _) in runs {
        let rows = t.rows();
        let mut est = model
            .filter_update(None, rows[0].day, &rows[0].species)
            .unwrap();
        for w in rows.windows(2) {
            let p = model.filter_predict(&est, &w[0].controls).unwrap();
            for k in 0..N_SPECIES {
                if let Some(y) = w[1].species[k] {
                    nu2[k] += (tr.z(k, y) - p.z[k]).powi(2);
                    pred[k] += p.cov[k][k] + model.measurement_var_z(k, tr.s(k, p.z[k]));
                }
            }
            est = model
                .filter_update(Some(p), w[1].day, &w[1].species)
                .unwrap();
        }
    }
    std::array::from_fn(|k| nu2[k] / pred[k])
}

/// An offline fit with matching reports the matched sd, the model keeps it, and a saved
/// and loaded model has it bit for bit; a model file with an impossible value is refused.
/// A fit that calibrates the mechanism does not match (see
/// `HybridConfig::match_mechanism_sd`) and keeps the configured sd.
#[test]
fn the_matched_sd_travels_in_the_fit_report_and_the_model_file() {
    assert!(!HybridConfig::default().match_mechanism_sd);
    let cfg = HybridConfig::for_design(KineticParams::clone_x(), "CloneX");
    assert!(cfg.match_mechanism_sd);
    let runs = unlabelled_design(4, 12, CloneKind::CloneX, 3);
    let (model, report) = HybridModel::fit_runs(
        HybridConfig {
            calibrate: None,
            ..cfg.clone()
        },
        &runs,
    )
    .unwrap();
    let matched = report
        .mechanism_sd
        .clone()
        .expect("matched sd in the report");
    assert_eq!(
        model.mechanism_sd().map(f64::to_bits),
        matched.sd.map(f64::to_bits)
    );
    assert_eq!(
        model.last_fit().and_then(|r| r.mechanism_sd.clone()),
        Some(matched.clone())
    );
    let loaded = HybridModel::from_json(&model.to_json().unwrap()).unwrap();
    for (a, b) in loaded.mechanism_sd().iter().zip(&matched.sd) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    assert_eq!(loaded.fingerprint(), model.fingerprint());
    let text = model.to_json().unwrap();
    let mut bad: serde_json::Value = serde_json::from_str(&text).unwrap();
    bad["matched_sd"][0] = serde_json::json!(-0.5);
    let err = HybridModel::from_json(&bad.to_string()).unwrap_err();
    assert!(err.to_string().contains("matched mechanism sd"), "{err}");

    let (calibrated, report) = HybridModel::fit_runs(cfg_calibrated(), &runs).unwrap();
    assert!(report.calibration.is_some(), "{report:?}");
    assert!(report.mechanism_sd.is_none());
    assert_eq!(
        calibrated.mechanism_sd().map(f64::to_bits),
        calibrated.config().mechanism_sd.map(f64::to_bits)
    );
}

fn cfg_calibrated() -> HybridConfig {
    let cfg = HybridConfig::for_design(KineticParams::clone_x(), "CloneX");
    assert!(cfg.calibrate.is_some());
    cfg
}

/// A species no run ever measured keeps the configured sd and does not hold the matching
/// open: it ends after the 8 passes the others need, converged.
#[test]
fn a_species_never_measured_keeps_the_configured_sd() {
    let pyr = Species::Pyr.index();
    let runs: Vec<_> = design_runs(3, 14, CloneKind::CloneX, 4)
        .into_iter()
        .map(|t| {
            let mut cut = perfusio_core::Trajectory::new(t.run_id.clone());
            for row in t.rows() {
                let mut species = row.species;
                species[pyr] = None;
                cut.push(row.day, species, row.controls).unwrap();
            }
            (cut, None)
        })
        .collect();
    let cfg = HybridConfig::with_prior(KineticParams::clone_x(), "CloneX");
    let configured = cfg.mechanism_sd[pyr];
    let mut model = HybridModel::new(cfg).unwrap();
    model.add_runs(&runs).unwrap();
    let m = model.match_mechanism_sd().unwrap();
    assert_eq!(m.innovations[pyr], 0, "{m:?}");
    assert_eq!(m.sd[pyr].to_bits(), configured.to_bits(), "{m:?}");
    assert!(m.converged && m.rounds == 8, "{m:?}");
    assert!(m.innovations[Species::VCD.index()] > 30, "{m:?}");
}

/// The mechanism's weight in the GP's prior mean: off by default; on a design fit it is
/// near 0 for the pathway the prior's cell line has and the plant lacks (clone X's
/// lactate uptake on clone Y's runs), near 1 where the mechanism is right, and it travels
/// in the fit report and the model file.
#[test]
fn mechanism_weights_drop_the_pathway_the_plant_lacks_and_travel_with_the_model() {
    let runs = unlabelled_design(6, 16, CloneKind::CloneY, 8);
    let (plain, _) = HybridModel::fit_runs(
        HybridConfig {
            calibrate: None,
            max_day: 16,
            ..HybridConfig::with_prior(KineticParams::clone_x(), "CloneX")
        },
        &runs,
    )
    .unwrap();
    assert!(plain.mechanism_weights().is_none());
    let cfg = HybridConfig {
        calibrate: None,
        max_day: 16,
        ..HybridConfig::for_design(KineticParams::clone_x(), "CloneX")
    };
    let (model, report) = HybridModel::fit_runs(cfg, &runs).unwrap();
    assert!(report.converged, "{report:?}");
    let w = *model.mechanism_weights().expect("weights");
    assert_eq!(
        report.mechanism_weights.map(|a| a.map(f64::to_bits)),
        Some(w.map(f64::to_bits))
    );
    assert!(w[Species::Lac.index()] < 0.05, "{w:?}");
    for s in [Species::VCD, Species::Glc, Species::Gln, Species::Titer] {
        assert!(w[s.index()] > 0.9, "{s:?}: {w:?}");
    }
    let text = model.to_json().unwrap();
    let loaded = HybridModel::from_json(&text).unwrap();
    assert_eq!(loaded.fingerprint(), model.fingerprint());
    let state = [5.0, 97.0, 3.0, 2.0, 1.0, 30.0, 2.0, 0.0, 120.0];
    let a = model.predict_next_state(&state, &defaults(), 6).unwrap();
    let b = loaded.predict_next_state(&state, &defaults(), 6).unwrap();
    for k in 0..9 {
        assert_eq!(a.species[k].mean.to_bits(), b.species[k].mean.to_bits());
        assert_eq!(a.species[k].sd.to_bits(), b.species[k].sd.to_bits());
    }
    let mut bad: serde_json::Value = serde_json::from_str(&text).unwrap();
    bad["mechanism_weights"][5] = serde_json::json!(1.5);
    let err = HybridModel::from_json(&bad.to_string()).unwrap_err();
    assert!(err.to_string().contains("mechanism weight 1.5"), "{err}");
}
